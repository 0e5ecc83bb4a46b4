"""Intelligibility metrics: offline ASR backends, one text normaliser, WER / CER / dWER.

From audio to numbers, one module per job:

* :mod:`~metrics.asr.backends` -- :func:`load_asr` turns ``family[:model]`` into an
  :class:`AsrBackend` (faster-whisper tiny.en by default, openai-whisper from a local checkpoint;
  nothing is ever downloaded); CTranslate2's CPU kernels are pinned to one instruction-set path
  (:mod:`~metrics.asr.isa`), so transcripts do not depend on the machine;
* :mod:`~metrics.asr.hubert` -- ``hubert-ctc``: HuBERT-large greedy CTC (protocol A), weights
  through :mod:`audiocore.weights`;
* :mod:`~metrics.asr.normalise` -- :func:`normalize_text`, Whisper's ``EnglishTextNormalizer``,
  on reference and hypothesis alike;
* :mod:`~metrics.asr.scoring` -- :func:`edit_counts`, :func:`utterance_asr_metrics` (``wer``,
  ``cer`` against the manifest transcript, ``dwer`` against the ASR transcript of the original,
  with the raw counts) and :func:`corpus_rates` (summed errors / summed reference lengths,
  :func:`metrics.stats.corpus_rate`);
* :mod:`~metrics.asr.cache` -- transcripts of originals on disk, keyed by the backend's identity
  and the SHA-256 of the samples;
* :mod:`~metrics.asr.scorer` -- :class:`AsrScorer`, the columns of one results row.
"""
from __future__ import annotations

from metrics.asr.backends import (
    BackendFactory,
    FasterWhisperBackend,
    OpenAIWhisperBackend,
    backend_families,
    load_asr,
    register_backend,
)
from metrics.asr.base import DEFAULT_SPEC, LANGUAGE, SAMPLE_RATE, AsrBackend, AsrUnavailable
from metrics.asr import hubert  # registers the "hubert-ctc" backend (transformers imported lazily)
from metrics.asr.cache import TranscriptCache, audio_sha256, cache_key, transcribe_cached
from metrics.asr.normalise import NORMALISER_NAME, normaliser_info, normalize_text
from metrics.asr.scorer import AsrScorer
from metrics.asr.scoring import (
    COUNT_KEYS,
    METRIC_KEYS,
    corpus_rates,
    edit_counts,
    unavailable_asr_metrics,
    utterance_asr_metrics,
)

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_SPEC",
    "LANGUAGE",
    "METRIC_KEYS",
    "NORMALISER_NAME",
    "SAMPLE_RATE",
    "AsrBackend",
    "AsrScorer",
    "AsrUnavailable",
    "BackendFactory",
    "FasterWhisperBackend",
    "OpenAIWhisperBackend",
    "TranscriptCache",
    "audio_sha256",
    "backend_families",
    "cache_key",
    "corpus_rates",
    "edit_counts",
    "load_asr",
    "normaliser_info",
    "normalize_text",
    "register_backend",
    "transcribe_cached",
    "unavailable_asr_metrics",
    "utterance_asr_metrics",
]
