"""HuBERT-large CTC (``facebook/hubert-large-ls960-ft``): the ASR of protocol A (BigCodec, X-codec2).

Greedy CTC decoding of the fine-tuned HuBERT-large through transformers (``HubertForCTC`` with
its ``Wav2Vec2FeatureExtractor`` and ``Wav2Vec2CTCTokenizer``), one utterance at a time (no
padding, so a transcript does not depend on its batch). Weights come through
:mod:`audiocore.weights`: ``--weights-dir``, ``$JEPA_DAAM_WEIGHTS``, the Hugging Face cache, or a
download at the pinned revision when allowed and online.

Spec: ``hubert-ctc`` or ``hubert-ctc:REPO_OR_FOLDER`` (a folder holding the files below).
"""
from __future__ import annotations

import importlib
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np

from audiocore.device import resolve_device
from audiocore.weights import ResolvedWeights, WeightsSource, WeightsUnavailable, resolve_weights
from metrics.asr.backends import register_backend
from metrics.asr.base import AsrBackend, AsrUnavailable, package_version
from metrics.asr.normalise import normaliser_info

__all__ = ["HUBERT_SOURCE", "HubertCtcBackend", "ctc_greedy_text"]

HUBERT_SOURCE = WeightsSource(
    repo_id="facebook/hubert-large-ls960-ft",
    revision=None,  # commit not resolvable from this offline machine; the resolved one is recorded
    required=(("config.json",), ("preprocessor_config.json",), ("vocab.json",),
              ("model.safetensors", "pytorch_model.bin")),
    optional=("tokenizer_config.json", "special_tokens_map.json"),
)
"""HuBERT-large fine-tuned on LibriSpeech 960 h (Apache-2.0)."""


class HubertCtcBackend(AsrBackend):
    """Greedy-CTC HuBERT recogniser.

    Args:
        weights: resolved weights folder (config, preprocessor config, vocab, model weights).
        device: where the model runs.
    """

    def __init__(self, weights: ResolvedWeights, device: str = "cpu") -> None:
        try:
            transformers = importlib.import_module("transformers")
        except ImportError as exc:
            raise AsrUnavailable(f"hubert-ctc needs transformers: pip install -e '.[neural]' ({exc})") from exc
        import torch

        self._torch = torch
        self.weights = weights
        self.device = resolve_device(device)
        folder = weights.folder
        try:
            self._features = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(folder), local_files_only=True)
            self._vocab = self._read_vocab(folder)
            model = transformers.HubertForCTC.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:
            raise AsrUnavailable(f"hubert-ctc: loading {folder} failed: {type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:200]}") from exc
        self._model = model.to(self.device).eval()

    @staticmethod
    def _read_vocab(folder: Path) -> dict[str, Any]:
        """id -> token from ``vocab.json``, with the blank (pad), word delimiter and the tokens
        never written (``<s>``, ``</s>``, ``<unk>``) from ``tokenizer_config.json`` when present."""
        import json

        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}

        def tok(key: str, default: str) -> str:
            value = cfg.get(key, default)
            return value if isinstance(value, str) else value.get("content", default) if isinstance(value, dict) else default

        silent = {tok(k, d) for k, d in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))}
        return {"tokens": {int(i): t for t, i in vocab.items()}, "blank": vocab[tok("pad_token", "<pad>")],
                "delimiter": tok("word_delimiter_token", "|"), "silent": silent}

    def logits(self, wav: np.ndarray) -> Any:
        """CTC logits [frames, vocab] of one 16 kHz float32 waveform [T]."""
        inputs = self._features(wav, sampling_rate=self.sample_rate, return_tensors="pt")
        with self._torch.inference_mode():
            out = self._model(input_values=inputs["input_values"].to(self.device))
        return out.logits[0].float().cpu()

    def _transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        v = self._vocab
        return [ctc_greedy_text(self.logits(w).argmax(dim=-1).tolist(), v["tokens"], v["blank"], v["delimiter"], v["silent"])
                for w in wavs]

    def info(self) -> dict[str, Any]:
        return {"backend": "hubert-ctc", "model": self.weights.repo_id, "version": package_version("transformers"),
                "weights": self.weights.as_manifest(), "decoding": "greedy CTC", "device": str(self.device),
                "normaliser": normaliser_info()}


def ctc_greedy_text(ids: list[int], tokens: dict[int, str], blank: int, delimiter: str = "|",
                    silent: set[str] | frozenset[str] = frozenset()) -> str:
    """Greedy CTC: merge runs of the same id, drop the blank, map ids to characters, the word
    delimiter to a space, and drop ``silent`` tokens (``<s>``, ``</s>``, ``<unk>``).

    >>> ctc_greedy_text([1, 1, 0, 1, 2, 3], {0: "<pad>", 1: "L", 2: "|", 3: "A"}, 0)
    'LL A'
    """
    out = []
    for i, _ in itertools.groupby(ids):
        if i == blank:
            continue
        t = tokens.get(int(i), "")
        if t in silent:
            continue
        out.append(" " if t == delimiter else t)
    return " ".join("".join(out).split())


def _hubert_factory(model: str | None, device: str, *, weights_dir: str | os.PathLike[str] | None = None,
                    download: bool = False, offline: bool | None = None, **options: Any) -> AsrBackend:
    if options:
        raise ValueError(f"hubert-ctc takes no options {sorted(options)}")
    source = HUBERT_SOURCE
    if model and Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
        lacking = source.missing(folder)
        if lacking:
            raise AsrUnavailable(f"hubert-ctc: {folder} lacks {', '.join(lacking)}")
        return HubertCtcBackend(ResolvedWeights(folder, "path", source.repo_id, None, None,
                                                tuple(p.name for p in source.files_in(folder))), device)
    if model and model != source.repo_id:
        raise ValueError(f"hubert-ctc:{model}: give a folder holding the model, or {source.repo_id}")
    try:
        weights = resolve_weights("hubert-ctc", source, weights_dir, download=download, offline=offline)
    except WeightsUnavailable as exc:
        raise AsrUnavailable(str(exc)) from exc
    return HubertCtcBackend(weights, device)


register_backend("hubert-ctc", _hubert_factory)
