"""Per-codec summary tables of a finished benchmark run, regenerated from ``results.jsonl``.

Nothing is recomputed from audio: the report reads the per-utterance rows written by
``benchmarks.run`` (schema in ``docs/results-format.md``) and writes, into the run directory,

* ``summary.csv`` -- every statistic, one row per codec (machine-readable, full precision);
* ``summary.md``  -- a condensed Markdown table for READMEs and issues;
* ``summary.tex`` -- the same condensed table as a LaTeX ``tabular`` (booktabs);
* ``codebook.csv`` / ``codebook.md`` -- codebook health of each token codec over the whole corpus
  (usage, entropy, entropy / log2 V, perplexity; per stream, pooled per vocabulary size and for
  the whole frame), counted from the token files ``tokens/<codec>/<utt>.npy`` with
  :class:`metrics.tokens.CodebookStats`;
* the rate-quality plots of :mod:`benchmarks.plots` (PNG + PDF).

Statistics per codec (over rows with ``status == "ok"``):

* for every numeric metric column ``m``: ``m_mean`` with a 95 % percentile-bootstrap confidence
  interval ``m_ci_low`` / ``m_ci_high`` (resampling utterances, fixed seed), ``m_n`` (values that
  are not NaN) and ``m_nan_reasons`` (why the other values are NaN, counted from the ``m_error``
  column). Infinite values (SI-SDR of a bit-exact reconstruction) are kept: the mean is then
  +inf and the CI NaN;
* corpus-level rates pooled from count columns (``wer_errors / wer_words`` etc.) with a bootstrap
  CI over utterances: ``wer_corpus``, ``wer_corpus_ci_low``, ``wer_corpus_ci_high`` ..., and
  ``wer_corpus_n``, the pooled denominator (reference words; characters for CER);
* ``bitrate_nominal`` and ``bitrate_ratio`` (mean measured / nominal);
* ``encode_rtf_median`` / ``decode_rtf_median`` (medians: timing distributions are skewed);
* ``n_utts``, ``n_ok``, ``n_failed`` and ``failures``: failed rows counted by their ``error_reason``
  (e.g. ``non_finite_samples (3), e.g. <file>: contains non-finite samples (...)``), one example
  message per reason with the file path and utterance id replaced by ``<file>`` / ``<utt>``; rows
  written before ``error_reason`` existed are grouped by that generalised message.
* token codecs (by :func:`write_reports`, from the token files): ``codebook_usage``,
  ``codebook_normalized_entropy``, ``codebook_perplexity_mean``, ``codebook_entropy_bits_per_frame``,
  ``codebook_capacity_bits_per_frame`` (the ``total`` of ``CodebookStats.summary``), with
  ``codebook_error`` when they are NaN.

Usage::

    python -m benchmarks.report RUN_DIR [--n-boot 2000] [--seed 0] [--no-plots]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS_FILE = "results.jsonl"
SUMMARY_STEM = "summary"
CODEBOOK_STEM = "codebook"

#: Columns that identify a row or describe the input, never summarised as metrics.
ID_COLUMNS = ("codec", "utt_id", "set", "path", "status", "error", "code_version")
#: Numeric columns that are not quality metrics: summarised in their own way or not at all.
NON_METRIC_NUMERIC = frozenset(
    {"duration_s", "codec_sample_rate", "source_sample_rate", "n_streams", "n_frames", "encode_s", "decode_s",
     "bitrate_nominal"}
)
#: Count-column suffixes used for corpus-level pooling (``wer_errors`` / ``wer_words`` ...).
COUNT_SUFFIXES = ("_errors", "_words", "_chars")
#: Preferred order of metric columns in the summary; others follow alphabetically.
METRIC_ORDER = (
    "pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_sdr_aligned", "delay_ms", "mel_distance",
    "wer", "cer", "dwer", "bitrate_measured", "tokens_per_s", "frames_per_s", "encode_rtf", "decode_rtf",
)
DEFAULT_N_BOOT = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
#: Upper bound on resample-index matrix elements held at once (memory stays ~ 32 MB).
_MAX_CHUNK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def load_results(run_dir_or_file: str | Path) -> pd.DataFrame:
    """Read ``results.jsonl`` into a frame, one row per (codec, utterance).

    A trailing partial line (a run killed mid-write) is skipped; a malformed line elsewhere is an
    error. When a resumed run appended a second row for the same (codec, utt_id), the last wins.
    Numeric-looking columns become floats (JSON ``null`` -> NaN).

    Args:
        run_dir_or_file: a run directory holding ``results.jsonl``, or the file itself.

    Returns:
        DataFrame with at least the columns ``codec`` and ``status``.

    Raises:
        FileNotFoundError: no results file at that path.
        ValueError: malformed JSON (file and line named), or rows without a ``codec`` key.
    """
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file; expected the {RESULTS_FILE} written by benchmarks.run")
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if lineno == len(lines):  # partial last line of an interrupted run
                print(f"warning: {path}:{lineno}: skipping partial last line", file=sys.stderr)
                continue
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return pd.DataFrame(columns=["codec", "status"])
    if "codec" not in df.columns or df["codec"].isna().any():
        raise ValueError(f"{path}: every row needs a 'codec' key (see docs/results-format.md)")
    if "status" not in df.columns:
        df["status"] = "ok"
    df["status"] = df["status"].fillna("ok")
    if "utt_id" in df.columns:
        df = df.drop_duplicates(subset=["codec", "utt_id"], keep="last")
    return _coerce_numeric(df).reset_index(drop=True)


def _coerce_numeric(df: pd.DataFrame) -> pd.DataFrame:
    """Turn columns whose non-null values are all numbers into float columns."""
    out = df.copy()
    for col in out.columns:
        if col in ID_COLUMNS or col.endswith("_error") or pd.api.types.is_numeric_dtype(out[col]):
            continue
        values = out[col]
        converted = pd.to_numeric(values, errors="coerce")
        if converted.notna().sum() == values.notna().sum():
            out[col] = converted.astype(float)
    return out


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------
def bootstrap_ci(
    arrays: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    n_resamples: int = DEFAULT_N_BOOT,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of a statistic over utterances.

    Utterances are resampled with replacement as a whole index matrix ``[B, n]`` (in chunks that
    bound memory); the same index matrix is applied to every array, so paired quantities (errors
    and words of one utterance) stay together.

    Args:
        arrays: 1-D arrays of equal length n (one value per utterance, all finite).
        statistic: maps the resampled arrays, each ``[b, n]``, to one value per resample ``[b]``.
        n_resamples: number of bootstrap resamples B.
        confidence: two-sided coverage, e.g. 0.95.
        seed: seed of the numpy Generator (fixed so reports are reproducible).

    Returns:
        (low, high); (NaN, NaN) when n < 2 (no spread to estimate).
    """
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
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples, dtype=np.float64)
    rows = max(1, _MAX_CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, rows):  # loop over memory chunks, not over resamples
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = statistic(*(a[idx] for a in arrays))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def _ratio_of_sums(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(axis=1) / den.sum(axis=1)


# ----------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------
def metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric per-utterance metric columns of a results frame, in a stable display order."""
    numeric = [
        c for c in df.columns
        if c not in ID_COLUMNS and c not in NON_METRIC_NUMERIC and not c.endswith(COUNT_SUFFIXES)
        and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    ordered = [c for c in METRIC_ORDER if c in numeric]
    return ordered + sorted(c for c in numeric if c not in ordered)


def pooled_rate_columns(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Corpus-level rates available from count columns: ``{"wer": ("wer_errors", "wer_words"), ...}``."""
    pairs: dict[str, tuple[str, str]] = {}
    for col in df.columns:
        if not col.endswith("_errors"):
            continue
        prefix = col[: -len("_errors")]
        for den in (f"{prefix}_words", f"{prefix}_chars"):
            if den in df.columns:
                pairs[prefix] = (col, den)
                break
    return pairs


def _generalise(reason: object, row: pd.Series, utt: bool = True) -> str:
    """A failure reason with this row's file path (and, with ``utt``, its utterance id) replaced by
    ``<file>`` / ``<utt>``, so that the same problem in different files reads the same.

    The utterance id is replaced only where it stands as a whole token, not inside a longer word
    or a path (id ``u1`` leaves ``u12`` and ``/data/u1.wav`` alone).
    """
    text = str(reason).strip() or "(no reason given)"
    path, utt_id = row.get("path"), row.get("utt_id")
    if isinstance(path, str) and path:
        text = text.replace(path, "<file>")
    if utt and isinstance(utt_id, str) and utt_id:
        text = re.sub(rf"(?<![\w.\-/]){re.escape(utt_id)}(?![\w.\-/])", "<utt>", text)
    return text


def _count_reasons(rows: pd.DataFrame, column: str) -> str:
    """'reason (count); ...' for the non-null values of ``column``, most frequent first."""
    if column not in rows.columns:
        return ""
    counts = Counter(_generalise(r[column], r) for _, r in rows.iterrows() if isinstance(r[column], str))
    return "; ".join(f"{reason} ({n})" for reason, n in counts.most_common())


def _count_failures(failed: pd.DataFrame) -> str:
    """'reason (count), e.g. message; ...' for the error rows of one codec, most frequent first.

    Rows are grouped by their ``error_reason`` category (``non_finite_samples``,
    ``encode:RuntimeError`` ...), so failures that differ only in per-file detail (sample counts,
    decoder text) count together; the first message of each group, with the file path replaced
    by ``<file>``, is shown as its example. Rows of older runs without ``error_reason`` are grouped
    by their message with the file path and utterance id replaced by ``<file>`` / ``<utt>``.
    """
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for _, r in failed.iterrows():
        error = r.get("error") if isinstance(r.get("error"), str) else ""
        reason = r.get("error_reason")
        if isinstance(reason, str) and reason.strip():
            key, message = reason.strip(), _generalise(error, r, utt=False)
        else:
            key = message = _generalise(error, r)
        counts[key] += 1
        examples.setdefault(key, message)
    return "; ".join(f"{key} ({n})" if examples[key] == key else f"{key} ({n}), e.g. {examples[key]}"
                     for key, n in counts.most_common())


def summarize(
    df: pd.DataFrame,
    n_resamples: int = DEFAULT_N_BOOT,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Per-codec summary of a results frame (see the module docstring for the columns).

    Args:
        df: frame from :func:`load_results`.
        n_resamples: bootstrap resamples per statistic.
        confidence: CI coverage.
        seed: bootstrap seed (each statistic restarts from it, so a value does not depend on
            which other columns exist).

    Returns:
        DataFrame indexed 0..K-1, one row per codec, codecs in order of first appearance.
    """
    metrics = metric_columns(df)
    pooled = pooled_rate_columns(df)
    rows: list[dict[str, object]] = []
    for codec, group in df.groupby("codec", sort=False):
        ok = group[group["status"] == "ok"]
        failed = group[group["status"] != "ok"]
        row: dict[str, object] = {
            "codec": codec,
            "n_utts": len(group),
            "n_ok": len(ok),
            "n_failed": len(failed),
            "failures": _count_failures(failed),
        }
        for m in metrics:
            values = ok[m].to_numpy(dtype=np.float64)
            row.update(_metric_stats(m, values, n_resamples, confidence, seed))
            row[f"{m}_nan_reasons"] = _count_reasons(ok[np.isnan(values)], f"{m}_error")
        for name, (num_col, den_col) in pooled.items():
            num = ok[num_col].to_numpy(dtype=np.float64)
            den = ok[den_col].to_numpy(dtype=np.float64)
            keep = np.isfinite(num) & np.isfinite(den)
            num, den = num[keep], den[keep]
            total = den.sum()
            row[f"{name}_corpus"] = float(num.sum() / total) if total > 0 else math.nan
            row[f"{name}_corpus_n"] = float(total)  # reference words (chars for CER) pooled
            row[f"{name}_corpus_ci_low"], row[f"{name}_corpus_ci_high"] = bootstrap_ci(
                [num, den], _ratio_of_sums, n_resamples, confidence, seed
            )
        row["bitrate_nominal"] = _nominal(ok if len(ok) else group)
        measured = row.get("bitrate_measured_mean", math.nan)
        nominal = row["bitrate_nominal"]
        row["bitrate_ratio"] = (
            float(measured) / nominal if isinstance(nominal, float) and nominal > 0 else math.nan
        )
        for col in ("encode_rtf", "decode_rtf"):
            row[f"{col}_median"] = float(ok[col].median()) if col in ok.columns and ok[col].notna().any() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _metric_stats(name: str, values: np.ndarray, n_resamples: int, confidence: float,
                  seed: int) -> dict[str, float | int]:
    """``<name>_mean``, ``_ci_low``, ``_ci_high`` and ``_n`` of one metric's per-utterance values.

    NaN values (metric not computable, reason in ``<name>_error``) are left out. Infinite values
    are real results, e.g. SI-SDR = +inf for a bit-exact reconstruction: they are kept, so the
    mean is +inf (-inf; NaN when both signs occur) and no CI is computed. ``_n`` counts the
    values that are not NaN.
    """
    present = values[~np.isnan(values)]
    finite = present[np.isfinite(present)]
    if finite.size < present.size:
        with np.errstate(invalid="ignore"):
            mean = float(present.mean())
        low, high = math.nan, math.nan
    else:
        mean = float(finite.mean()) if finite.size else math.nan
        low, high = bootstrap_ci([finite], _mean, n_resamples, confidence, seed)
    return {f"{name}_mean": mean, f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_n": int(present.size)}


def _nominal(rows: pd.DataFrame) -> float:
    """The codec's claimed bitrate (bit/s): its median over rows, NaN when never stated."""
    if "bitrate_nominal" not in rows.columns:
        return math.nan
    values = pd.to_numeric(rows["bitrate_nominal"], errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


# ----------------------------------------------------------------------------------------------
# Codebook health (from the saved token files)
# ----------------------------------------------------------------------------------------------
#: Columns of codebook.csv, one row per (codec, level, stream).
CODEBOOK_COLUMNS = ("codec", "level", "streams", "vocab_size", "n_tokens", "used", "usage", "entropy_bits",
                    "capacity_bits", "normalized_entropy", "perplexity", "error")

#: Per-codec summary columns (``CodebookStats.table_columns``; ``codebook_error`` when NaN).
CODEBOOK_SUMMARY_COLUMNS = ("codebook_usage", "codebook_entropy_bits_per_frame", "codebook_capacity_bits_per_frame",
                            "codebook_normalized_entropy", "codebook_perplexity_mean")


def _payload_codes(codes: np.ndarray, row: pd.Series, path: Path) -> np.ndarray:
    """The payload frames ``[S, N_payload]`` of a saved token block ``[S, N]`` (padding dropped)."""
    if codes.ndim != 2:
        raise ValueError(f"{path}: token ids must be [n_streams, n_frames], got shape {codes.shape}")
    n_payload = row.get("n_payload_frames", math.nan)
    if not _is_finite_number(n_payload):
        padded = row.get("padded_frames", 0)
        n_payload = codes.shape[1] - (int(padded) if _is_finite_number(padded) else 0)
    return codes[:, : int(n_payload)]


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))


def _as_int_list(value: object) -> list[int] | None:
    """A JSON list of ints from a results row (``vocab_sizes``, ``stream_groups``), else None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [int(v) for v in value]
    return None


def codebook_stats(df: pd.DataFrame, run_dir: str | Path) -> tuple[dict[str, object], dict[str, str]]:
    """Accumulate corpus-level codebook histograms of every token codec from its token files.

    Each ok row with a ``tokens_file`` contributes its payload frames (``n_payload_frames``;
    padding frames excluded) to one :class:`metrics.tokens.CodebookStats` per codec, with the
    row's ``vocab_sizes`` and ``stream_groups``.

    Args:
        df: frame from :func:`load_results`.
        run_dir: the run directory the ``tokens_file`` paths are relative to.

    Returns:
        (stats, errors): ``{codec: CodebookStats}`` for token codecs whose tokens could all be
        counted, and ``{codec: reason}`` for token codecs where they could not (missing or
        unreadable token file, rows without ``vocab_sizes``, ids outside the vocabulary).
        Codecs without token files appear in neither.
    """
    from metrics.tokens import CodebookStats

    run_dir = Path(run_dir)
    stats: dict[str, object] = {}
    errors: dict[str, str] = {}
    if "tokens_file" not in df.columns:
        return stats, errors
    ok = df[(df["status"] == "ok") & df["tokens_file"].map(lambda v: isinstance(v, str) and bool(v))]
    for codec, group in ok.groupby("codec", sort=False):
        acc = CodebookStats()
        try:
            for _, row in group.iterrows():
                vocab = _as_int_list(row.get("vocab_sizes"))
                if vocab is None:
                    raise ValueError(
                        f"row {row.get('utt_id')} has a tokens_file but no vocab_sizes (written by an older "
                        "benchmarks.run); rerun the same benchmarks.run command to add them from the cache")
                path = run_dir / str(row["tokens_file"])
                try:
                    codes = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as exc:
                    raise ValueError(f"{path}: token file unreadable ({type(exc).__name__}: {exc})") from exc
                if acc.vocab_sizes is None:
                    acc = CodebookStats(vocab, _as_int_list(row.get("stream_groups")) or None)
                acc.update(_payload_codes(codes, row, path), vocab)
        except ValueError as exc:
            errors[str(codec)] = " ".join(str(exc).split())
            continue
        stats[str(codec)] = acc
    return stats, errors


def _stream_label(streams: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (compact, for tables)."""
    parts: list[str] = []
    ids = sorted(int(s) for s in streams)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


def codebook_table(stats: dict[str, object], errors: dict[str, str]) -> pd.DataFrame:
    """Long table of codebook health (the content of codebook.csv).

    One row per (codec, level, streams): ``level`` is ``stream`` (one logical stream),
    ``pooled`` (every stream of one vocabulary size, ids counted as one alphabet) or ``total``
    (the whole frame: ``entropy_bits`` and ``capacity_bits`` are per frame, sums over streams;
    ``perplexity`` is the mean of the per-stream perplexities). ``capacity_bits`` is log2 V.
    A codec in ``errors`` gets one row with level ``none`` and the reason in ``error``.
    """
    rows: list[dict[str, object]] = []
    for codec, acc in stats.items():
        summary = acc.summary()  # type: ignore[attr-defined]
        for s in summary["streams"]:
            rows.append({"codec": codec, "level": "stream", "streams": str(s["stream"]), **s,
                         "capacity_bits": math.log2(s["vocab_size"])})
        for p in summary["pooled"]:
            rows.append({"codec": codec, "level": "pooled", **p, "streams": _stream_label(p["streams"]),
                         "capacity_bits": math.log2(p["vocab_size"])})
        t = summary["total"]
        rows.append({"codec": codec, "level": "total", "streams": "all", "n_tokens": t["n_tokens"],
                     "usage": t["usage"], "entropy_bits": t["entropy_bits_per_frame"],
                     "capacity_bits": t["capacity_bits_per_frame"], "normalized_entropy": t["normalized_entropy"],
                     "perplexity": t["perplexity_mean"]})
    for codec, reason in errors.items():
        rows.append({"codec": codec, "level": "none", "error": reason})
    table = pd.DataFrame(rows)
    for col in CODEBOOK_COLUMNS:
        if col not in table.columns:
            table[col] = math.nan if col != "error" else None
    for col in ("vocab_size", "n_tokens", "used"):  # counts: integers, empty where undefined
        table[col] = pd.to_numeric(table[col]).round().astype("Int64")
    return table[list(CODEBOOK_COLUMNS)]


def codebook_summary_columns(stats: dict[str, object], errors: dict[str, str]) -> pd.DataFrame:
    """Per-codec ``codebook_*`` summary columns (``CodebookStats.table_columns``), one row per codec."""
    rows = [{"codec": codec, **acc.table_columns()} for codec, acc in stats.items()]  # type: ignore[attr-defined]
    rows += [{"codec": codec, "codebook_error": reason} for codec, reason in errors.items()]
    out = pd.DataFrame(rows)
    for col in CODEBOOK_SUMMARY_COLUMNS:
        if col not in out.columns:
            out[col] = math.nan
    return out


def add_codebook_columns(summary: pd.DataFrame, codebook: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the ``codebook_*`` columns joined on ``codec``.

    Codecs without tokens get NaN with ``codebook_error = "not a token codec"``. When the run
    has no token codec at all, ``summary`` is returned unchanged.
    """
    if codebook.empty:
        return summary
    out = summary.merge(codebook, on="codec", how="left")
    if "codebook_error" not in out.columns:
        out["codebook_error"] = None
    untouched = ~out["codec"].isin(codebook["codec"])
    out.loc[untouched, "codebook_error"] = "not a token codec"
    return out


def codebook_markdown(table: pd.DataFrame) -> str:
    """codebook.md: one Markdown table per codec (streams, pooled, total)."""
    lines = ["# Codebook health", "",
             "Counted over every payload frame of the run's token files (padding excluded). "
             "`stream`: one logical stream; `pooled`: all streams of one vocabulary size V, ids counted as "
             "one alphabet; `total`: the whole frame. usage = used entries / V (`total`: sum used / sum V); "
             "H = entropy in bits (`total`: sum over streams, bits per frame); log2 V = capacity in bits "
             "(`total`: sum over streams); H / log2 V = normalised entropy; perplexity = 2^H "
             "(`total`: mean of the per-stream 2^H).", ""]
    for codec, group in table.groupby("codec", sort=False):
        lines += [f"## {codec}", ""]
        err = group[group["level"] == "none"]
        if len(err):
            lines += [f"Not computed: {err['error'].iloc[0]}", ""]
            continue
        shown = pd.DataFrame({
            "level": group["level"], "streams": group["streams"],
            "V": [_fmt(v, 0) for v in group["vocab_size"]],
            "tokens": [_fmt(v, 0) for v in group["n_tokens"]],
            "used": [_fmt(v, 0) for v in group["used"]],
            "usage %": [_fmt_sig(v, 1, 100.0) for v in group["usage"]],
            "H (bits)": [_fmt(v, 3) for v in group["entropy_bits"]],
            "log2 V (bits)": [_fmt(v, 1) for v in group["capacity_bits"]],
            "H / log2 V": [_fmt(v, 3) for v in group["normalized_entropy"]],
            "perplexity": [_fmt(v, 1) for v in group["perplexity"]],
        })
        lines += [to_markdown(shown)]
    return "\n".join(lines)


def write_codebook_reports(df: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Write codebook.csv / codebook.md (when the run has token codecs); return the summary columns."""
    stats, errors = codebook_stats(df, run_dir)
    if not stats and not errors:
        for stale in (run_dir / f"{CODEBOOK_STEM}.csv", run_dir / f"{CODEBOOK_STEM}.md"):
            stale.unlink(missing_ok=True)
        return pd.DataFrame()
    table = codebook_table(stats, errors)
    table.to_csv(run_dir / f"{CODEBOOK_STEM}.csv", index=False)
    (run_dir / f"{CODEBOOK_STEM}.md").write_text(codebook_markdown(table), encoding="utf-8")
    return codebook_summary_columns(stats, errors)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
#: Condensed display: (summary key, header, decimals, scale). ``key`` may be a ``*_corpus`` rate.
DISPLAY_COLUMNS: tuple[tuple[str, str, int, float], ...] = (
    ("pesq_wb", "PESQ-WB", 2, 1.0),
    ("pesq_nb", "PESQ-NB", 2, 1.0),
    ("stoi", "STOI", 3, 1.0),
    ("estoi", "ESTOI", 3, 1.0),
    ("si_sdr_aligned", "SI-SDR aligned (dB)", 1, 1.0),
    ("mel_distance", "Mel dist. (log10)", 2, 1.0),
    ("wer_corpus", "WER % (corpus)", 1, 100.0),
    ("cer_corpus", "CER % (corpus)", 1, 100.0),
    ("dwer_corpus", "dWER % (corpus)", 1, 100.0),
)


def _fmt(value: object, decimals: int, scale: float = 1.0) -> str:
    """``value * scale`` with ``decimals`` decimals; ``–`` for None/NaN/NA, ``∞`` / ``−∞`` for infinities."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    x = float(value) * scale
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{decimals}f}"


def _fmt_sig(value: object, decimals: int, scale: float = 1.0, digits: int = 2) -> str:
    """Like :func:`_fmt`, with more decimals where needed to show ``digits`` significant digits.

    For quantities spanning decades (RTF 0.00007 ... 2, codebook usage 0.03 % ... 100 %), where a
    fixed number of decimals would print small values as 0.000: ``_fmt_sig(7.4e-05, 3)`` is
    ``0.000074``, ``_fmt_sig(0.187, 3)`` is ``0.187``.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return _fmt(value, 0, scale)
    x = float(value) * scale
    if x == 0:
        return f"{0:.{decimals}f}"
    decimals = max(decimals, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _fmt_ci(summary_row: pd.Series, key: str, decimals: int, scale: float) -> str:
    base = key if key.endswith("_corpus") else f"{key}_mean"
    mean = summary_row.get(base, math.nan)
    low, high = summary_row.get(f"{key}_ci_low", math.nan), summary_row.get(f"{key}_ci_high", math.nan)
    text = _fmt(mean, decimals, scale)
    if text != "–" and _fmt(low, decimals) != "–":
        text += f" [{_fmt(low, decimals, scale)}, {_fmt(high, decimals, scale)}]"
    return text


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Condensed, formatted table (strings) for Markdown / LaTeX; empty metric columns dropped."""
    out = pd.DataFrame({"Codec": summary["codec"]})
    out["n ok / failed"] = [f"{r.n_ok} / {r.n_failed}" for r in summary.itertuples()]
    rate = []
    for _, r in summary.iterrows():
        measured = _fmt(r.get("bitrate_measured_mean", math.nan), 2, 1e-3)
        nominal = _fmt(r.get("bitrate_nominal", math.nan), 2, 1e-3)
        rate.append(measured if nominal == "–" else f"{measured} ({nominal})")
    out["kbit/s measured (nominal)"] = rate
    if "tokens_per_s_mean" in summary.columns and summary["tokens_per_s_mean"].notna().any():
        out["tokens/s"] = [_fmt(v, 1) for v in summary["tokens_per_s_mean"]]
    if "codebook_usage" in summary.columns and summary["codebook_usage"].notna().any():
        out["codebook usage %"] = [_fmt_sig(v, 1, 100.0) for v in summary["codebook_usage"]]
    for col, header, decimals in (("codebook_normalized_entropy", "H / log2 V", 3),
                                  ("codebook_perplexity_mean", "perplexity (mean per stream)", 1)):
        if col in summary.columns and summary[col].notna().any():
            out[header] = [_fmt(v, decimals) for v in summary[col]]
    for key, header, decimals, scale in DISPLAY_COLUMNS:
        base = key if key.endswith("_corpus") else f"{key}_mean"
        if base in summary.columns and summary[base].notna().any():
            out[header] = [_fmt_ci(r, key, decimals, scale) for _, r in summary.iterrows()]
    for col, header in (("encode_rtf_median", "enc. RTF (median)"), ("decode_rtf_median", "dec. RTF (median)")):
        if col in summary.columns and summary[col].notna().any():
            out[header] = [_fmt_sig(v, 3) for v in summary[col]]
    if (summary["n_failed"] > 0).any():
        out["failures"] = summary["failures"].fillna("")
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown pipe table (cells with '|' escaped)."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--",
    "<": r"\textless{}", ">": r"\textgreater{}", "∞": r"$\infty$", "−": "$-$",
}


def latex_escape(text: object) -> str:
    """Escape LaTeX special characters (underscores in codec specs, % in headers ...)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs ``table`` environment with a left-aligned first column."""
    cols = "l" + "r" * (len(table.columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _provenance(run_dir: Path) -> str:
    """One line naming the run's revision, ASR model, normaliser and resampler from manifest.json."""
    path = run_dir / "manifest.json"
    if not path.is_file():
        return "No manifest.json in the run directory: provenance unknown."
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return f"manifest.json unreadable ({exc})."
    parts = []
    for key in ("git_revision", "git_rev", "revision", "resampler", "device"):
        if manifest.get(key):
            parts.append(f"{key}: {manifest[key]}")
    asr = manifest.get("asr")
    if "asr" in manifest and asr is None:
        parts.append("ASR: off (--no-asr)")
    if isinstance(asr, dict):
        parts += [f"ASR {k}: {v}" for k, v in asr.items() if k in ("backend", "model", "normaliser", "normalizer")]
    elif asr:
        parts.append(f"ASR: {asr}")
    return "; ".join(parts) if parts else "manifest.json has no revision/ASR/resampler fields."


def write_reports(
    run_dir: str | Path,
    n_resamples: int = DEFAULT_N_BOOT,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    plots: bool = True,
) -> pd.DataFrame:
    """Write summary.csv / summary.md / summary.tex (and the plots) into ``run_dir``.

    Args:
        run_dir: run directory holding ``results.jsonl``.
        n_resamples, confidence, seed: bootstrap settings (recorded in summary.md).
        plots: also write the rate-quality figures of :mod:`benchmarks.plots`.

    Returns:
        The per-codec summary frame (as written to summary.csv).
    """
    run_dir = Path(run_dir)
    df = load_results(run_dir)
    summary = summarize(df, n_resamples, confidence, seed)
    summary = add_codebook_columns(summary, write_codebook_reports(df, run_dir))
    summary.to_csv(run_dir / f"{SUMMARY_STEM}.csv", index=False)
    table = display_table(summary) if len(summary) else pd.DataFrame({"Codec": []})
    note = f"Mean over utterances [{confidence:.0%} percentile-bootstrap CI, {n_resamples} resamples, seed {seed}]"
    if any(col.endswith("_corpus") for col in summary.columns):
        note += ("; WER/CER/dWER pooled over the corpus (errors / reference words or characters), "
                 "CI by resampling utterances")
    note += ("; RTF is the median wall time / audio duration. – = not computed or not applicable "
             f"(reasons in {SUMMARY_STEM}.csv: `*_nan_reasons`, `codebook_error`).")
    if table.map(lambda v: "∞" in str(v)).to_numpy().any():
        note += " ∞: infinite for at least one utterance (SI-SDR of a bit-exact reconstruction); no CI."
    if "codebook_usage" in summary.columns:
        note += (" Codebook usage, H / log2 V and perplexity over the whole corpus, all streams of the frame "
                 f"(per-stream values in {CODEBOOK_STEM}.md).")
    md = [f"# Summary of {run_dir.name}", "", to_markdown(table), note, "", f"Provenance: {_provenance(run_dir)}", ""]
    (run_dir / f"{SUMMARY_STEM}.md").write_text("\n".join(md), encoding="utf-8")
    (run_dir / f"{SUMMARY_STEM}.tex").write_text(
        to_latex(table, caption=f"Codec benchmark ({run_dir.name}). {note}", label="tab:codec-summary"),
        encoding="utf-8",
    )
    if plots and len(summary):
        from benchmarks.plots import write_plots

        write_plots(summary, run_dir)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="run directory holding results.jsonl")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples (default 2000)")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE, help="CI coverage (default 0.95)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default 0)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF figures")
    args = parser.parse_args(argv)
    try:
        summary = write_reports(args.run_dir, args.n_boot, args.confidence, args.seed, plots=not args.no_plots)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_markdown(display_table(summary)) if len(summary) else "no rows in results.jsonl")
    print(f"wrote {args.run_dir / (SUMMARY_STEM + '.csv')}, .md, .tex")
    return 0


if __name__ == "__main__":
    sys.exit(main())
