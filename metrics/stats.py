"""Statistics over utterances: percentile-bootstrap confidence intervals and corpus-level rates.

Used by the summary tables (``benchmarks.report``), and through them the regression check, and
by the ASR metrics (``metrics.asr.corpus_rates``, ``benchmarks.bench_asr``), so that every table
pools and resamples the same way.

* :func:`bootstrap_ci` -- ``scipy.stats.bootstrap`` with ``method="percentile"``, resampling
  utterances with replacement; several arrays are resampled together (``paired=True``), so
  quantities of one utterance (its errors and its reference words) stay together. The seed is
  fixed, so a report is reproducible to the last digit.
* :func:`corpus_rate` -- a corpus rate is the sum of errors over the sum of reference lengths,
  never a mean of per-utterance rates. An utterance counts when both its error count and its
  reference length are finite and the length is positive; any other utterance has no defined
  rate (no transcript, a reference empty after normalisation, ASR unavailable) and is left out
  of both sums.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_N_BOOT",
    "DEFAULT_SEED",
    "CorpusRate",
    "bootstrap_ci",
    "corpus_rate",
    "defined_counts",
    "mean",
    "ratio_of_sums",
]

DEFAULT_N_BOOT = 2000
"""Bootstrap resamples of the summary tables."""
DEFAULT_CONFIDENCE = 0.95
"""Two-sided coverage of every confidence interval."""
DEFAULT_SEED = 0
"""Seed of the bootstrap's random generator (each statistic restarts from it)."""

#: Upper bound on resample-index matrix elements held at once (memory stays ~ 32 MB).
_MAX_CHUNK_ELEMENTS = 4_000_000


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean along ``axis`` (the per-resample statistic of a metric's mean)."""
    return x.mean(axis=axis)


def ratio_of_sums(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    """sum(num) / sum(den) along ``axis`` (the per-resample statistic of a corpus rate)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(axis=axis) / den.sum(axis=axis)


def bootstrap_ci(
    arrays: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    n_resamples: int = DEFAULT_N_BOOT,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of a statistic over utterances.

    ``scipy.stats.bootstrap(method="percentile", paired=True)`` with a ``numpy`` Generator
    seeded with ``seed``: each resample draws n utterance indices with replacement and applies
    them to every array; resamples are drawn in batches that bound memory.

    Args:
        arrays: 1-D arrays of equal length n (one value per utterance, all finite).
        statistic: vectorised statistic ``statistic(*resampled, axis=-1)``; each resampled
            array is ``[b, n]`` and the result one value per resample ``[b]`` (see :func:`mean`,
            :func:`ratio_of_sums`).
        n_resamples: number of bootstrap resamples B.
        confidence: two-sided coverage, e.g. 0.95.
        seed: seed of the random generator (fixed so reports are reproducible).

    Returns:
        (low, high); (NaN, NaN) when n < 2 (no spread to estimate).

    Raises:
        ValueError: ``confidence`` outside (0, 1), ``n_resamples`` < 1, arrays not 1-D of equal
            length.
    """
    from scipy.stats import bootstrap

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must lie strictly between 0 and 1")
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples} must be >= 1")
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    n = arrays[0].size
    if any(a.shape != (n,) for a in arrays):
        raise ValueError(f"bootstrap arrays must be 1-D of equal length, got shapes {[a.shape for a in arrays]}")
    if n < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # scipy warns (with a BCa message) whenever an end of the interval is NaN, e.g. a ratio
        # whose denominators sum to 0 in some resample; the NaN itself is the answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(
            arrays, statistic, n_resamples=n_resamples, batch=max(1, _MAX_CHUNK_ELEMENTS // n),
            vectorized=True, paired=True, confidence_level=confidence, method="percentile",
            rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def defined_counts(errors: Sequence[float] | np.ndarray,
                   lengths: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean mask of the utterances that take part in a corpus rate: error count and reference
    length both finite, and the length positive."""
    errors = np.asarray(errors, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(errors) & np.isfinite(lengths) & (lengths > 0)


class CorpusRate(NamedTuple):
    """A corpus-level rate and what it was pooled from.

    Attributes:
        rate: sum of errors / sum of reference lengths (NaN when no utterance counts).
        units: the pooled reference length (words, or characters for CER).
        n: how many utterances were pooled.
        ci_low, ci_high: percentile-bootstrap interval over utterances (NaN when not asked for
            or when n < 2).
    """

    rate: float
    units: float
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan


def corpus_rate(errors: Sequence[float] | np.ndarray, lengths: Sequence[float] | np.ndarray, *,
                n_resamples: int = 0, confidence: float = DEFAULT_CONFIDENCE,
                seed: int = DEFAULT_SEED) -> CorpusRate:
    """Pool per-utterance counts into one corpus rate (see the module docstring for which
    utterances count).

    Args:
        errors: per-utterance error counts (NaN where undefined).
        lengths: per-utterance reference lengths, same order.
        n_resamples: bootstrap resamples for the CI; 0 computes no CI.
        confidence, seed: bootstrap settings.
    """
    errors = np.asarray(errors, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    if errors.shape != lengths.shape or errors.ndim != 1:
        raise ValueError(f"errors and lengths must be 1-D of equal length, got {errors.shape} and {lengths.shape}")
    keep = defined_counts(errors, lengths)
    num, den = errors[keep], lengths[keep]
    units = float(den.sum())
    rate = float(num.sum() / units) if units > 0 else math.nan
    low = high = math.nan
    if n_resamples > 0:
        low, high = bootstrap_ci([num, den], ratio_of_sums, n_resamples, confidence, seed)
    return CorpusRate(rate=rate, units=units, n=int(keep.sum()), ci_low=low, ci_high=high)
