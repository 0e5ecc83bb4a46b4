"""Non-intrusive speech quality: DNSMOS (P.835 and P.808), DistillMOS and UTMOS22-strong.

Each model scores one 16 kHz mono waveform on a MOS-like 1..5 scale without a reference, so a
table can show the level of the uncompressed original beside that of each reconstruction.

| model | columns | weights | package |
|---|---|---|---|
| DNSMOS P.835 + P.808 (Reddy et al. 2021/22) | ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``dnsmos_p808`` | ONNX files inside the ``speechmos`` wheel | speechmos (+ onnxruntime, librosa) |
| DistillMOS v7 (Stahl & Gamper 2025) | ``distillmos`` | inside the ``distillmos`` wheel | distillmos, xls-r-sqa (both ``--no-deps``) |
| UTMOS22 strong learner (Saeki et al. 2022) | ``utmos`` | ``Blinorot/UTMOS-PyTorch`` (fairseq-free conversion), via :mod:`audiocore.weights` | utmos-pytorch |

Loaders (:func:`load_quality_model`) raise :class:`MetricUnavailable` with one line saying what
is missing and how to install it. A model's :meth:`QualityModel.score` never raises for bad
audio: a value that cannot be computed is ``MetricValue(nan, reason)``.

Input conventions: ``wav`` is a 1-D float array at :data:`SAMPLE_RATE` (16 kHz), nominally in
[-1, 1]. Samples outside [-1, 1] are clipped first (DNSMOS refuses them; playback would clip).
Audio shorter than :data:`MIN_SECONDS` or containing NaN/Inf scores NaN with the reason.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiocore.device import resolve_device
from audiocore.hashing import file_sha256
from audiocore.weights import ResolvedWeights, WeightsSource, WeightsUnavailable, resolve_weights
from metrics.signal import LONG_AUDIO_S, MetricValue, segment_bounds

__all__ = [
    "MIN_SECONDS",
    "SAMPLE_RATE",
    "QUALITY_MODELS",
    "UTMOS_SOURCE",
    "MetricUnavailable",
    "QualityModel",
    "DnsmosModel",
    "DistillMosModel",
    "UtmosModel",
    "check_input",
    "load_quality_model",
]

SAMPLE_RATE = 16000
"""Sample rate (Hz) every model here takes."""

MIN_SECONDS = 0.5
"""Shorter inputs are refused: every model here pools over frames of at least 20 ms, and DNSMOS
repeats a short clip up to 9 s, which turns a few samples into a tone."""

PERCEPTUAL_HINT = ('pip install -e ".[perceptual]" && pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0 '
                   'resemblyzer==0.1.4 (README, "Set up and run")')

UTMOS_SOURCE = WeightsSource(
    repo_id="Blinorot/UTMOS-PyTorch",
    revision="4f2447e519df3b88567b45583d3500006729502b",
    required=(("utmos_state_dict.pt",),),
)
"""UTMOS22-strong weights converted from the sarulab-speech checkpoint (MIT), pinned commit."""

UTMOS_SHA256 = "21b98001a7d5164d562a40d76aff80ae996deeabe4473c3a6786d1c591c2cc47"
"""SHA-256 of ``utmos_state_dict.pt`` at the pinned commit (checked for hub / cache copies)."""

UTMOS_DOMAIN, UTMOS_JUDGE = 0, 288
"""UTMOS22-strong's conditioning for scoring: the main-track domain and its mean listener id."""


class MetricUnavailable(RuntimeError):
    """A metric model (package, weights, device) cannot be used; the message is one line saying
    what is missing and what to install or where to put which file."""


def check_input(wav: np.ndarray, name: str = "wav") -> tuple[np.ndarray | None, str | None]:
    """Validate one waveform: (float32 copy clipped to [-1, 1], None) or (None, reason).

    Raises:
        ValueError: ``wav`` is not 1-D (a programming error, not bad audio).
    """
    x = np.array(wav, dtype=np.float32, copy=True)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D waveform [T] at {SAMPLE_RATE} Hz, got shape {x.shape}")
    if x.shape[0] < MIN_SECONDS * SAMPLE_RATE:
        return None, f"too short: {x.shape[0] / SAMPLE_RATE:.3f} s < {MIN_SECONDS} s"
    if not np.isfinite(x).all():
        return None, "contains NaN or Inf"
    return np.clip(x, -1.0, 1.0), None


def _require(module: str, what: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MetricUnavailable(f"{what} needs the '{module.split('.')[0]}' package "
                                f"({type(exc).__name__}: {exc}); {PERCEPTUAL_HINT}") from exc


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class QualityModel(ABC):
    """A non-intrusive quality model.

    Attributes:
        name: registry name ("dnsmos").
        columns: the result columns :meth:`score` fills, in order.
    """

    name: str = ""
    columns: tuple[str, ...] = ()

    def score(self, wav: np.ndarray) -> dict[str, MetricValue]:
        """Score one 16 kHz waveform [T]: one :class:`MetricValue` per column (NaN + reason when
        the input cannot be scored or the model fails on it)."""
        x, reason = check_input(wav)
        if reason is None:
            try:
                if x.shape[0] > LONG_AUDIO_S * SAMPLE_RATE:
                    return self._score_segments(x)
                return self._score(x)
            except Exception as exc:  # a model failing on one input is a NaN with its reason
                reason = f"{self.name} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return {c: MetricValue(math.nan, reason) for c in self.columns}

    def _score_segments(self, x: np.ndarray) -> dict[str, MetricValue]:
        """A long input (over ``metrics.signal.LONG_AUDIO_S``): the length-weighted mean of the scores
        of its ``metrics.signal.segment_bounds`` segments, so memory stays that of one segment
        (a transformer over a 10-minute input needs tens of GB)."""
        bounds = segment_bounds(x.shape[0], SAMPLE_RATE)
        scores = [self._score(x[a:b]) for a, b in bounds]
        weights = np.array([b - a for a, b in bounds], dtype=np.float64)
        out = {}
        for c in self.columns:
            value = float(np.sum(weights * [s[c].value for s in scores]) / weights.sum())
            out[c] = MetricValue(value, None if math.isfinite(value) else f"{self.name}: no score on some segment")
        return out

    @abstractmethod
    def _score(self, x: np.ndarray) -> dict[str, MetricValue]:
        """Score a validated float32 waveform in [-1, 1]."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Identity for manifests and cache keys (model, package version, weights)."""


class DnsmosModel(QualityModel):
    """DNSMOS P.835 (SIG, BAK, OVRL; non-personalised polynomial mapping) and P.808 MOS.

    The official scoring of the ``speechmos`` package: 9.01 s windows hopped by 1 s (a shorter
    clip is repeated to 9.01 s), scores averaged over windows. Cost grows with duration: one
    window per second beyond 9 s.
    """

    name = "dnsmos"
    columns = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")

    def __init__(self) -> None:
        dnsmos = _require("speechmos.dnsmos", "DNSMOS")
        ort = _require("onnxruntime", "DNSMOS")
        folder = Path(dnsmos.__file__).parent / "dnsmos_models"
        self._primary, self._p808 = folder / "sig_bak_ovr.onnx", folder / "model_v8.onnx"
        for f in (self._primary, self._p808):
            if not f.is_file():
                raise MetricUnavailable(f"DNSMOS: {f} is missing from the speechmos package; reinstall speechmos==0.0.1.1")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        self._model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        self._model.primary_model_path = str(self._primary)
        self._model.onnx_sess = ort.InferenceSession(str(self._primary), opts, providers=["CPUExecutionProvider"])
        self._model.p808_onnx_sess = ort.InferenceSession(str(self._p808), opts, providers=["CPUExecutionProvider"])

    def _score(self, x: np.ndarray) -> dict[str, MetricValue]:
        out = self._model(x, SAMPLE_RATE, False)
        keys = {"dnsmos_sig": "sig_mos", "dnsmos_bak": "bak_mos", "dnsmos_ovrl": "ovrl_mos", "dnsmos_p808": "p808_mos"}
        return {col: MetricValue(float(out[k])) for col, k in keys.items()}

    def info(self) -> dict[str, Any]:
        return {"model": "dnsmos-p835+p808", "package": f"speechmos=={_version('speechmos')}",
                "onnxruntime": _version("onnxruntime"), "librosa": _version("librosa"),
                "weights": {p.name: file_sha256(p)[:16] for p in (self._primary, self._p808)}}


def _import_distillmos() -> types.ModuleType:
    """Import ``distillmos`` although torchaudio is absent.

    ``distillmos/sqa.py`` imports torchaudio at the top but uses it only in its command-line
    file reader, never in the model. Installed with ``--no-deps`` (its torchaudio requirement
    has no build for our torch), the import would fail; an empty placeholder module stands in
    for torchaudio during that one import and is removed right after, so nothing else sees it.
    """
    if "distillmos" in sys.modules:
        return sys.modules["distillmos"]
    placeholder = None
    if importlib.util.find_spec("torchaudio") is None:
        placeholder = types.ModuleType("torchaudio")
        placeholder.__doc__ = "placeholder: torchaudio is not installed (metrics.perceptual)"
        sys.modules["torchaudio"] = placeholder
    try:
        return _require("distillmos", "DistillMOS")
    finally:
        if placeholder is not None and sys.modules.get("torchaudio") is placeholder:
            del sys.modules["torchaudio"]


class DistillMosModel(QualityModel):
    """DistillMOS (variant 7, the package's default weights): a CNN + transformer distilled from
    an XLS-R MOS model. Inputs are cut into 7.68 s segments hopped by at most 1 s and averaged."""

    name = "distillmos"
    columns = ("distillmos",)

    def __init__(self, device: str = "cpu") -> None:
        distillmos = _import_distillmos()
        sqa = sys.modules.get("distillmos.sqa")
        weights = Path(getattr(sqa, "DEFAULT_WEIGHTS_CHKPT", "")) if sqa else None
        if weights is None or not weights.is_file():
            raise MetricUnavailable(f"DistillMOS: weights file {weights} missing from the distillmos package; "
                                    "reinstall distillmos==0.9.1")
        self.device = resolve_device(device)
        model = distillmos.ConvTransformerSQAModel(load_weights=False)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        self._model = model.to(self.device).eval()
        self._weights = weights

    def _score(self, x: np.ndarray) -> dict[str, MetricValue]:
        with torch.inference_mode():
            y = self._model(torch.from_numpy(x)[None].to(self.device))
        return {"distillmos": MetricValue(float(y.reshape(-1)[0]))}

    def info(self) -> dict[str, Any]:
        return {"model": "distillmos-v7", "package": f"distillmos=={_version('distillmos')}",
                "xls-r-sqa": _version("xls-r-sqa"), "weights": file_sha256(self._weights)[:16],
                "device": str(self.device)}


class UtmosModel(QualityModel):
    """UTMOS22 strong learner (wav2vec 2.0 base SSL + domain and listener embeddings + BLSTM),
    as used by the codec papers' "UTMOS" column, in the fairseq-free implementation of
    ``utmos-pytorch``. Scored with batch size 1, domain 0, listener 288 (the reference scoring).

    Args:
        weights: resolved weights (a folder with ``utmos_state_dict.pt``).
        device: where the model runs.
    """

    name = "utmos"
    columns = ("utmos",)

    def __init__(self, weights: ResolvedWeights, device: str = "cpu") -> None:
        module = _require("utmos_pytorch.utmos_torch", "UTMOS")
        self.weights = weights
        self.device = resolve_device(device)
        path = weights.folder / "utmos_state_dict.pt"
        self.sha256 = file_sha256(path)
        if weights.origin in ("download", "hf-cache") and weights.commit == UTMOS_SOURCE.revision \
                and self.sha256 != UTMOS_SHA256:
            raise MetricUnavailable(f"UTMOS: {path} has SHA-256 {self.sha256[:16]}..., not the pinned file's "
                                    f"{UTMOS_SHA256[:16]}...; delete it and download again")
        model = module.UTMOSModel()
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise MetricUnavailable(f"UTMOS: {path} is not a UTMOS22-strong state dict "
                                    f"({len(missing)} weights missing, e.g. {missing[0]})")
        model.eval()
        module.remove_weight_norm_for_jit(model)
        self._model = model.to(self.device)

    def _score(self, x: np.ndarray) -> dict[str, MetricValue]:
        wav = torch.from_numpy(x).to(self.device)[None, None]
        with torch.inference_mode():
            out = self._model(wav=wav, domains=torch.full((1,), UTMOS_DOMAIN, dtype=torch.int, device=self.device),
                              judge_id=torch.full((1,), UTMOS_JUDGE, dtype=torch.int, device=self.device))
        return {"utmos": MetricValue(float(out.mean(dim=1).reshape(-1)[0]) * 2 + 3)}

    def info(self) -> dict[str, Any]:
        return {"model": "utmos22-strong", "package": f"utmos-pytorch=={_version('utmos-pytorch')}",
                "weights": {**self.weights.as_manifest(), "sha256": self.sha256[:16]}, "device": str(self.device)}


def _load_utmos(device: str, weights_dir: str | os.PathLike[str] | None, download: bool,
                offline: bool | None) -> QualityModel:
    _require("utmos_pytorch.utmos_torch", "UTMOS")
    try:
        weights = resolve_weights("utmos22-strong", UTMOS_SOURCE, weights_dir, download=download, offline=offline)
    except WeightsUnavailable as exc:
        raise MetricUnavailable(str(exc)) from exc
    return UtmosModel(weights, device)


QUALITY_MODELS: Mapping[str, str] = {
    "dnsmos": "DNSMOS P.835 SIG/BAK/OVRL + P.808 (speechmos wheel, offline)",
    "distillmos": "DistillMOS v7 (distillmos wheel, offline)",
    "utmos": "UTMOS22-strong (Blinorot/UTMOS-PyTorch weights: --weights-dir, cache or download)",
}
"""Names :func:`load_quality_model` accepts, with what each is."""


def load_quality_model(name: str, device: str = "cpu", weights_dir: str | os.PathLike[str] | None = None, *,
                       download: bool = False, offline: bool | None = None) -> QualityModel:
    """Build a quality model by name.

    Args:
        name: one of :data:`QUALITY_MODELS`.
        device: device for the torch models (DNSMOS runs on ONNX Runtime's CPU provider).
        weights_dir: searched first for downloadable weights (UTMOS).
        download: allow a Hugging Face download of missing weights (when online, not offline).
        offline: ``--offline``: never touch the network.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        MetricUnavailable: package or weights missing (one line, with the fix).
    """
    if name == "dnsmos":
        return DnsmosModel()
    if name == "distillmos":
        return DistillMosModel(device)
    if name == "utmos":
        return _load_utmos(device, weights_dir, download, offline)
    raise ValueError(f"unknown quality model {name!r}; valid: {', '.join(QUALITY_MODELS)}")


def audio_digest(wav: np.ndarray) -> str:
    """SHA-256 (16 hex digits) of a waveform's float32 samples: a key for per-input caches."""
    return hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()[:16]
