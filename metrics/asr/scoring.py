"""Scoring: WER and CER against the manifest transcript, dWER against the ASR transcript of the
uncompressed original, and their corpus-level pooling.

:func:`edit_counts` counts word and character edit operations (via jiwer) on normalised text;
:func:`utterance_asr_metrics` gives one results row's ``wer``, ``cer``, ``dwer`` with the raw
counts for pooling; :func:`corpus_rates` pools the counts of many rows into corpus rates (summed
errors / summed reference lengths, never a mean of per-utterance rates) with
:func:`metrics.stats.corpus_rate`, the one pooling rule of every table.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from metrics.asr.normalise import normalize_text
from metrics.stats import corpus_rate

METRIC_KEYS = ("wer", "cer", "dwer")
"""Per-utterance rate keys written by :func:`utterance_asr_metrics`."""

COUNT_KEYS = ("wer_errors", "wer_words", "cer_errors", "cer_chars", "dwer_errors", "dwer_words")
"""Per-utterance raw count keys, pooled by :func:`corpus_rates`."""

# (rate key, errors key, reference-length key) for corpus pooling.
_POOLING = (("wer", "wer_errors", "wer_words"), ("cer", "cer_errors", "cer_chars"),
            ("dwer", "dwer_errors", "dwer_words"))


def edit_counts(reference: str, hypothesis: str, *, normalise: bool = True) -> dict[str, int]:
    """Word- and character-level edit operations of ``hypothesis`` against ``reference``.

    Both sides are normalised with :func:`normalize_text` first (unless ``normalise=False``);
    words are whitespace-separated tokens, characters include the single spaces between words.

    Args:
        reference: the reference text (must be non-empty after normalisation).
        hypothesis: the recognised text (may be empty: every reference word is then a deletion).
        normalise: apply :func:`normalize_text` to both sides.

    Returns:
        ``word_errors`` (S+D+I), ``word_substitutions``, ``word_deletions``, ``word_insertions``,
        ``ref_words``, ``char_errors``, ``ref_chars``. WER = word_errors / ref_words.

    Raises:
        ValueError: the reference is empty after normalisation (no rate is defined).
    """
    import jiwer

    ref = normalize_text(reference) if normalise else reference.strip()
    hyp = normalize_text(hypothesis) if normalise else hypothesis.strip()
    if not ref:
        raise ValueError(f"reference {reference!r} is empty after normalisation; WER is undefined")
    ref_words = len(ref.split())
    if not hyp:  # jiwer needs a non-empty hypothesis alignment; all reference tokens are deleted
        return {"word_errors": ref_words, "word_substitutions": 0, "word_deletions": ref_words,
                "word_insertions": 0, "ref_words": ref_words, "char_errors": len(ref),
                "ref_chars": len(ref)}
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    char_errors = chars.substitutions + chars.deletions + chars.insertions
    return {
        "word_errors": words.substitutions + words.deletions + words.insertions,
        "word_substitutions": words.substitutions,
        "word_deletions": words.deletions,
        "word_insertions": words.insertions,
        "ref_words": words.substitutions + words.deletions + words.hits,
        "char_errors": char_errors,
        "ref_chars": chars.substitutions + chars.deletions + chars.hits,
    }


def unavailable_asr_metrics(reason: str) -> dict[str, float | str]:
    """The ASR columns of a results row when they cannot be computed at all (e.g. no backend).

    Returns:
        ``wer``, ``cer``, ``dwer`` and every count key set to NaN, and ``<metric>_error = reason``.
    """
    row: dict[str, float | str] = {key: math.nan for key in (*METRIC_KEYS, *COUNT_KEYS)}
    row.update({f"{key}_error": reason for key in METRIC_KEYS})
    return row


def _rate_against(reference: str | None, hypothesis: str, what: str) -> tuple[dict[str, int] | None, str | None]:
    """Edit counts of ``hypothesis`` against ``reference`` or (None, reason it is undefined)."""
    if reference is None:
        return None, f"no {what} for this utterance"
    try:
        return edit_counts(reference, hypothesis), None
    except ValueError:
        return None, f"the {what} is empty after text normalisation"


def utterance_asr_metrics(reference: str | None, hypothesis: str,
                          original_hypothesis: str) -> dict[str, float | str]:
    """WER and CER against the manifest transcript, dWER against the ASR transcript of the original.

    Args:
        reference: manifest transcript, or ``None`` / ``""`` when the utterance has none.
        hypothesis: ASR transcript of the codec's output (raw; normalised here).
        original_hypothesis: ASR transcript of the uncompressed original, by the same backend.

    Returns:
        Flat dict: ``wer``, ``cer``, ``dwer`` (fractions, 0.0 = perfect; may exceed 1 with
        insertions), the pooling counts ``wer_errors, wer_words, cer_errors, cer_chars,
        dwer_errors, dwer_words`` (floats, NaN where undefined) and ``<metric>_error`` for each
        NaN metric (no transcript, or a reference that is empty after normalisation, e.g. the ASR
        heard nothing in the original).
    """
    row: dict[str, float | str] = {}
    targets = (("wer", "cer", reference or None, "manifest transcript"),
               ("dwer", None, original_hypothesis, "ASR transcript of the original"))
    for word_key, char_key, ref, what in targets:
        counts, reason = _rate_against(ref, hypothesis, what)
        keys = [(word_key, "word_errors", "ref_words", f"{word_key}_words")]
        if char_key:
            keys.append((char_key, "char_errors", "ref_chars", f"{char_key}_chars"))
        for key, err_key, len_key, out_len_key in keys:
            if counts is None:
                row.update({key: math.nan, f"{key}_errors": math.nan, out_len_key: math.nan,
                            f"{key}_error": str(reason)})
            else:
                row.update({key: counts[err_key] / counts[len_key],
                            f"{key}_errors": float(counts[err_key]),
                            out_len_key: float(counts[len_key])})
    return row


def corpus_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | int | str]:
    """Pool per-utterance counts into corpus-level WER, CER and dWER.

    Corpus rate = sum of errors / sum of reference lengths over the rows where the metric is
    defined (:func:`metrics.stats.corpus_rate`: rows whose counts are missing, NaN or infinite,
    or whose reference length is not positive, are left out and not counted). Compare codecs
    over the same utterances: pool only rows that every compared codec has.

    Args:
        rows: results rows (mappings holding the keys of :data:`COUNT_KEYS`).

    Returns:
        ``wer``, ``cer``, ``dwer``, ``wer_utterances``, ``cer_utterances``, ``dwer_utterances``
        (how many rows were pooled) and ``<metric>_error`` for a metric no row defines.
    """
    rows = list(rows)
    out: dict[str, float | int | str] = {}
    for key, err_key, len_key in _POOLING:
        errors = [_count(row.get(err_key)) for row in rows]
        lengths = [_count(row.get(len_key)) for row in rows]
        pooled = corpus_rate(errors, lengths)
        out[f"{key}_utterances"] = pooled.n
        out[key] = pooled.rate
        if pooled.n == 0:
            out[f"{key}_error"] = f"no utterance has a defined {key}"
    return out


def _count(value: Any) -> float:
    """A count column's value as a float (NaN when absent)."""
    return math.nan if value is None else float(value)
