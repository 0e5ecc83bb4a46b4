"""Perceptual and speaker columns of a run: the models of a protocol, loaded once.

:class:`QualityStage` loads the quality (:mod:`metrics.perceptual`) and speaker
(:mod:`metrics.speaker`) models that a :class:`~benchmarks.protocols.Protocol` asks for. A model
that cannot be loaded never stops a run: an *optional* one (default protocol, weights not on
disk) is left out with a one-line note; a required one gets NaN columns with the reason
(``<column>_error``), and a stated substitute runs for the speaker model where the protocol has
one.

Columns of one row (see docs/metrics-perceptual.md):

* ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``dnsmos_p808``, ``distillmos``, ``utmos``: of
  the reconstruction; the same names with ``_ref``: of the uncompressed original (computed once
  per utterance, cached by content);
* ``spk_sim`` (Resemblyzer), ``spk_sim_wavlm`` (WavLM-base-sv): cosine similarity of the
  original's and the reconstruction's speaker embeddings;
* ``perceptual_s``: wall seconds spent on these columns for the row (the cost of the metrics).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.protocols import Protocol
from metrics.perceptual import MetricUnavailable, QualityModel, audio_digest, load_quality_model
from metrics.speaker import SpeakerModel, load_speaker_model

__all__ = ["QualityStage", "REF_SUFFIX", "TIMING_COLUMN"]

REF_SUFFIX = "_ref"
"""Suffix of the columns scored on the original."""
TIMING_COLUMN = "perceptual_s"
"""Wall seconds spent on the perceptual and speaker columns of one row."""


class QualityStage:
    """The protocol's perceptual and speaker models.

    Args:
        protocol: the metric set.
        device: device for the torch models.
        weights_dir: ``--weights-dir`` (searched first for downloadable weights).
        offline: ``--offline``: never touch the network.
        enabled: False for ``--no-perceptual``: no model is loaded and no column written.
        log: where one-line notes go (skipped or substituted models).
    """

    def __init__(self, protocol: Protocol, device: str = "cpu", weights_dir: str | Path | None = None, *,
                 offline: bool = False, enabled: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.protocol = protocol
        self.quality: list[QualityModel] = []
        self.speaker: list[SpeakerModel] = []
        self.missing: dict[str, str] = {}  # required model -> reason (NaN columns)
        self.left_out: dict[str, str] = {}  # optional model -> reason (no columns)
        self.substitutions: list[str] = []
        self._ref_cache: dict[str, dict[str, Any]] = {}
        self._log = log or (lambda msg: None)
        if not enabled:
            return
        kw = dict(device=device, weights_dir=weights_dir, download=protocol.download, offline=offline)
        for name in protocol.quality:
            model = self._load(name, load_quality_model, kw)
            if model is not None:
                self.quality.append(model)
        for name in protocol.speaker:
            model = self._load(name, load_speaker_model, kw)
            if model is not None:
                self.speaker.append(model)
        if protocol.speaker and not self.speaker and protocol.speaker_fallback:
            model = self._load(protocol.speaker_fallback, load_speaker_model, kw)
            if model is not None:
                self.speaker.append(model)
                wanted = ", ".join(protocol.speaker)
                self.substitutions.append(f"speaker similarity: {model.name} in place of {wanted}")
                for name in protocol.speaker:
                    self.missing.pop(name, None)
        for line in self.notes():
            self._log(line)

    def _load(self, name: str, loader: Callable[..., Any], kw: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return loader(name, **kw)
        except MetricUnavailable as exc:
            reason = " ".join(str(exc).split())
            (self.left_out if name in self.protocol.optional else self.missing)[name] = reason
            return None
        finally:
            self.load_s = getattr(self, "load_s", 0.0) + time.perf_counter() - t0

    # ---- what the run records --------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Every column this stage writes (besides ``*_error`` and the timing)."""
        cols = [c for m in self.quality for c in m.columns]
        return [*cols, *(c + REF_SUFFIX for c in cols), *(m.column for m in self.speaker)]

    def notes(self) -> list[str]:
        """One line per model left out, missing or substituted (printed at the start of a run)."""
        out = [f"perceptual: {name} not used (optional; {reason})" for name, reason in self.left_out.items()]
        out += [f"perceptual: {name} unavailable, its columns are NaN: {reason}" for name, reason in self.missing.items()]
        out += [f"perceptual: substitution: {s}" for s in self.substitutions]
        return out

    def info(self) -> dict[str, Any]:
        """For manifest.json and the cache key: protocol, each model's identity, what is missing."""
        return {"protocol": self.protocol.name,
                "quality": {m.name: m.info() for m in self.quality},
                "speaker": {m.name: m.info() for m in self.speaker},
                "missing": dict(self.missing), "left_out": dict(self.left_out),
                "substitutions": list(self.substitutions)}

    @property
    def active(self) -> bool:
        """True when at least one model runs or a required one is missing (NaN columns)."""
        return bool(self.quality or self.speaker or self.missing)

    # ---- columns ---------------------------------------------------------------------------

    def _missing_columns(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = {"utmos": ("utmos",), "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"),
                 "distillmos": ("distillmos",), "resemblyzer": ("spk_sim",), "wavlm-sv": ("spk_sim_wavlm",)}
        for name, reason in self.missing.items():
            for col in names.get(name, (name,)):
                out[col], out[f"{col}_error"] = math.nan, reason
                if name in self.protocol.quality:
                    out[col + REF_SUFFIX], out[f"{col}{REF_SUFFIX}_error"] = math.nan, reason
        return out

    def reference_columns(self, ref16: np.ndarray) -> dict[str, Any]:
        """Quality of the original (``*_ref`` columns), computed once per distinct waveform."""
        key = audio_digest(ref16)
        hit = self._ref_cache.get(key)
        if hit is None:
            hit = {}
            for model in self.quality:
                for col, value in model.score(ref16).items():
                    hit[col + REF_SUFFIX] = value.value
                    if value.error:
                        hit[f"{col}{REF_SUFFIX}_error"] = value.error
            if len(self._ref_cache) > 4:
                self._ref_cache.pop(next(iter(self._ref_cache)))
            self._ref_cache[key] = hit
        return dict(hit)

    def row_columns(self, ref16: np.ndarray, est16: np.ndarray, reference: dict[str, Any] | None = None) -> dict[str, Any]:
        """All columns of one reconstruction.

        Args:
            ref16: the original, float32 [T] at 16 kHz.
            est16: the reconstruction, float32 [T'] at 16 kHz (not trimmed: these models need
                no alignment).
            reference: the ``*_ref`` columns when already known (cache), else computed here.

        Returns:
            the columns, ``*_error`` for every NaN, and :data:`TIMING_COLUMN`.
        """
        t0 = time.perf_counter()
        out = self._missing_columns()
        out.update(reference if reference is not None else self.reference_columns(ref16))
        for model in self.quality:
            for col, value in model.score(est16).items():
                out[col] = value.value
                if value.error:
                    out[f"{col}_error"] = value.error
        for model in self.speaker:
            value = model.similarity(ref16, est16)
            out[model.column] = value.value
            if value.error:
                out[f"{model.column}_error"] = value.error
        out[TIMING_COLUMN] = time.perf_counter() - t0
        return out
