"""WER / CER / dWER columns of one reconstruction: the single place a benchmark calls the ASR.

:class:`AsrScorer` loads a backend once, keeps the transcripts of the uncompressed originals in a
:class:`~metrics.asr.cache.TranscriptCache` (shared by every codec and run), and turns (reference
transcript, original, reconstruction) into the columns of a results row. A backend whose package
or model is missing does not stop a run: :attr:`AsrScorer.reason` says why, and every row gets
the ASR metrics as NaN with ``<metric>_error`` = that reason.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from metrics.asr.backends import load_asr
from metrics.asr.base import AsrBackend, AsrUnavailable
from metrics.asr.cache import TranscriptCache, transcribe_cached
from metrics.asr.scoring import METRIC_KEYS, utterance_asr_metrics


class AsrScorer:
    """ASR columns for reconstructions, with the originals' transcripts cached on disk.

    Args:
        spec: backend spec, e.g. ``faster-whisper:tiny.en``.
        device: device for the ASR model (``cpu``, ``cuda``, ``cuda:N``, ``auto``).
        cache_dir: folder of the transcript cache (created on first write).
        **options: passed to :func:`~metrics.asr.backends.load_asr` (e.g. ``weights_dir``,
            ``download``, ``offline`` for ``hubert-ctc``).

    Raises:
        ValueError: unknown backend family or bad option (a typo, not a missing package).
    """

    def __init__(self, spec: str, device: str, cache_dir: Path | str, **options: Any) -> None:
        self.spec = spec
        self.backend: AsrBackend | None = None
        self.reason: str | None = None
        self.info: dict[str, Any] = {"spec": spec}
        self.transcripts = TranscriptCache(cache_dir)
        try:
            self.backend = load_asr(spec, device=device, **options)
        except AsrUnavailable as exc:
            self.reason = f"ASR unavailable ({spec}): {' '.join(str(exc).split())}"
            return
        self.info = {"spec": spec, **self.backend.info()}

    @property
    def available(self) -> bool:
        """True when a backend was loaded."""
        return self.backend is not None

    def columns(self, reference: str | None, ref16: np.ndarray, est16: np.ndarray) -> dict[str, Any]:
        """WER/CER against ``reference``, dWER against the transcript of the original ``ref16``,
        the raw counts for corpus pooling and the hypothesis text. A reconstruction equal to the
        original sample for sample is not transcribed again: its hypothesis is the original's.

        Args:
            reference: manifest transcript, or None when the utterance has none.
            ref16: the original, float32 [T] at 16 kHz.
            est16: the reconstruction, float32 [T'] at 16 kHz.
        """
        if self.backend is None:
            return {**{k: math.nan for k in METRIC_KEYS}, **{f"{k}_error": str(self.reason) for k in METRIC_KEYS}}
        original = transcribe_cached(self.backend, [ref16], self.transcripts)[0]
        if est16.shape == ref16.shape and np.array_equal(est16, ref16):
            hypothesis = original  # a bit-exact reconstruction (PCM, a lossless codec) is the original
        else:
            hypothesis = self.backend.transcribe([est16])[0]
        return {**utterance_asr_metrics(reference, hypothesis, original), "asr_hypothesis": hypothesis,
                "asr": self.spec}
