"""Speaker similarity: cosine similarity of speaker embeddings of the original and the reconstruction.

| model | column | weights | package |
|---|---|---|---|
| Resemblyzer GE2E (LSTM d-vector, 256-d) | ``spk_sim`` | inside the ``resemblyzer`` wheel (offline) | resemblyzer (``--no-deps``) + librosa, webrtcvad-wheels |
| WavLM-base-sv x-vector (512-d) | ``spk_sim_wavlm`` | ``microsoft/wavlm-base-sv`` via :mod:`audiocore.weights` | transformers |

The two are different scales: Resemblyzer's embeddings are non-negative (ReLU) so unrelated
speakers already score about 0.5-0.7, while WavLM-base-sv's cosine is about 0.86 at its
verification threshold. Compare codecs within one column, never across columns.

:meth:`SpeakerModel.similarity` never raises for bad audio: it returns ``MetricValue(nan,
reason)``. Input conventions as in :mod:`metrics.perceptual` (1-D float, 16 kHz, >= 0.5 s).
"""
from __future__ import annotations

import importlib
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiocore.device import resolve_device
from audiocore.hashing import file_sha256
from audiocore.weights import ResolvedWeights, WeightsSource, WeightsUnavailable, resolve_weights
from metrics.perceptual import PERCEPTUAL_HINT, SAMPLE_RATE, MetricUnavailable, _version, audio_digest, check_input
from metrics.signal import LONG_AUDIO_S, MetricValue, segment_bounds

__all__ = ["SPEAKER_MODELS", "WAVLM_SV_SOURCE", "SpeakerModel", "ResemblyzerModel", "WavLMSpeakerModel",
           "load_speaker_model"]

WAVLM_SV_SOURCE = WeightsSource(
    repo_id="microsoft/wavlm-base-sv",
    revision=None,  # commit not resolvable from this offline machine; the resolved one is recorded
    required=(("config.json",), ("preprocessor_config.json",), ("model.safetensors", "pytorch_model.bin")),
)
"""WavLM-base fine-tuned for speaker verification on VoxCeleb1 (x-vector head), MIT licence."""

MIN_VOICED_SECONDS = 0.3
"""Resemblyzer: fewer voiced seconds after its VAD trimming give NaN ("no speech found")."""


class SpeakerModel(ABC):
    """A speaker-embedding model; :meth:`similarity` is the cosine of two embeddings.

    Embeddings of recently seen inputs are kept (by content hash), so the original of an
    utterance is embedded once however many codecs are compared with it.
    """

    name: str = ""
    column: str = ""
    _CACHE_SIZE = 8

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding [D] of a validated 16 kHz waveform (float32 in [-1, 1])."""
        key = audio_digest(wav)
        hit = self._cache.get(key)
        if hit is None:
            if wav.shape[0] > LONG_AUDIO_S * SAMPLE_RATE:  # long input: mean of segment embeddings (bounded memory)
                hit = np.mean([self._embed(wav[a:b]) for a, b in segment_bounds(wav.shape[0], SAMPLE_RATE)], axis=0)
            else:
                hit = self._embed(wav)
            norm = float(np.linalg.norm(hit))
            if not math.isfinite(norm) or norm == 0.0:
                raise ValueError("embedding is zero or non-finite")
            hit = (hit / norm).astype(np.float32)
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = hit
        return hit

    def similarity(self, ref: np.ndarray, est: np.ndarray) -> MetricValue:
        """Cosine similarity of the embeddings of ``ref`` and ``est`` (16 kHz [T] each); NaN with
        the reason when either cannot be embedded."""
        r, why_r = check_input(ref, "reference")
        e, why_e = check_input(est, "estimate")
        if why_r or why_e:
            return MetricValue(math.nan, f"reference {why_r}" if why_r else f"estimate {why_e}")
        try:
            return MetricValue(float(np.dot(self.embed(r), self.embed(e))))
        except Exception as exc:
            return MetricValue(math.nan, f"{self.name} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")

    @abstractmethod
    def _embed(self, wav: np.ndarray) -> np.ndarray:
        """Unnormalised embedding [D] of a validated waveform."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Identity for manifests and cache keys."""


class ResemblyzerModel(SpeakerModel):
    """Resemblyzer's GE2E voice encoder with its own preprocessing (volume normalisation to
    -30 dBFS, WebRTC VAD trimming of long silences, 1.6 s partials averaged)."""

    name = "resemblyzer"
    column = "spk_sim"

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        try:
            resemblyzer = importlib.import_module("resemblyzer")
        except ImportError as exc:  # resemblyzer itself, or webrtcvad / librosa under it
            raise MetricUnavailable(f"Resemblyzer needs resemblyzer, webrtcvad (webrtcvad-wheels) and librosa "
                                    f"({type(exc).__name__}: {exc}); {PERCEPTUAL_HINT}") from exc
        self._pre = resemblyzer.preprocess_wav
        self.device = resolve_device(device)
        self._encoder = resemblyzer.VoiceEncoder(str(self.device), verbose=False)
        self._weights = Path(resemblyzer.__file__).parent / "pretrained.pt"

    def _embed(self, wav: np.ndarray) -> np.ndarray:
        if not np.any(wav):
            raise ValueError("no speech found: the input is silent (all zeros)")
        x = self._pre(wav)  # no source_sr: already at 16 kHz, Resemblyzer's rate
        if x.shape[0] < MIN_VOICED_SECONDS * SAMPLE_RATE:
            raise ValueError(f"no speech found: {x.shape[0] / SAMPLE_RATE:.2f} s voiced after VAD trimming")
        with torch.inference_mode():
            return np.asarray(self._encoder.embed_utterance(x), dtype=np.float32)

    def info(self) -> dict[str, Any]:
        return {"model": "resemblyzer-ge2e", "package": f"resemblyzer=={_version('resemblyzer')}",
                "webrtcvad": _version("webrtcvad-wheels") or _version("webrtcvad"),
                "weights": file_sha256(self._weights)[:16] if self._weights.is_file() else None}


class WavLMSpeakerModel(SpeakerModel):
    """``microsoft/wavlm-base-sv`` through transformers (``WavLMForXVector``): x-vector embeddings.

    Args:
        weights: resolved weights (config.json, preprocessor_config.json, model weights).
        device: where the model runs.
    """

    name = "wavlm-base-sv"
    column = "spk_sim_wavlm"

    def __init__(self, weights: ResolvedWeights, device: str = "cpu") -> None:
        super().__init__()
        try:
            transformers = importlib.import_module("transformers")
        except ImportError as exc:
            raise MetricUnavailable(f"WavLM-SV needs transformers: pip install -e '.[neural]' ({exc})") from exc
        self.weights = weights
        self.device = resolve_device(device)
        folder = str(weights.folder)
        try:
            self._features = transformers.Wav2Vec2FeatureExtractor.from_pretrained(folder, local_files_only=True)
            model = transformers.WavLMForXVector.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise MetricUnavailable(f"WavLM-SV: loading {folder} failed: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:200]}") from exc
        self._model = model.to(self.device).eval()

    def _embed(self, wav: np.ndarray) -> np.ndarray:
        inputs = self._features(wav, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            out = self._model(input_values=inputs["input_values"].to(self.device))
        return out.embeddings[0].float().cpu().numpy()

    def info(self) -> dict[str, Any]:
        return {"model": "wavlm-base-sv", "transformers": _version("transformers"),
                "weights": self.weights.as_manifest(), "device": str(self.device)}


SPEAKER_MODELS = {
    "resemblyzer": "Resemblyzer GE2E (wheel, offline) -> spk_sim",
    "wavlm-sv": "microsoft/wavlm-base-sv (--weights-dir, cache or download) -> spk_sim_wavlm",
}
"""Names :func:`load_speaker_model` accepts."""


def load_speaker_model(name: str, device: str = "cpu", weights_dir: str | os.PathLike[str] | None = None, *,
                       download: bool = False, offline: bool | None = None) -> SpeakerModel:
    """Build a speaker model by name (see :func:`metrics.perceptual.load_quality_model` for the
    arguments).

    Raises:
        ValueError: unknown name (lists the valid ones).
        MetricUnavailable: package or weights missing (one line with the fix).
    """
    if name == "resemblyzer":
        return ResemblyzerModel(device)
    if name == "wavlm-sv":
        try:
            weights = resolve_weights("wavlm-base-sv", WAVLM_SV_SOURCE, weights_dir, download=download, offline=offline)
        except WeightsUnavailable as exc:
            raise MetricUnavailable(str(exc)) from exc
        return WavLMSpeakerModel(weights, device)
    raise ValueError(f"unknown speaker model {name!r}; valid: {', '.join(SPEAKER_MODELS)}")
