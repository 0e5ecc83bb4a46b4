"""Codebook health of token codecs over a whole run, counted from the saved token files.

For each token codec, every ok row's ``tokens/<codec>/<utt>.npy`` (payload frames only) is added
to one :class:`metrics.codebook.CodebookStats`; :func:`write_codebook_reports` writes
``codebook.csv`` (one row per codec, level and streams) and ``codebook.md``, and returns the
per-codec ``codebook_*`` columns that :mod:`benchmarks.report` joins into the summary.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from audiocore.atomic import atomic_write_text
from benchmarks.tables import fmt, fmt_sig, to_markdown
from metrics.codebook import CodebookStats

CODEBOOK_STEM = "codebook"

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
    padding frames excluded) to one :class:`metrics.codebook.CodebookStats` per codec, with the
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
            "V": [fmt(v, 0) for v in group["vocab_size"]],
            "tokens": [fmt(v, 0) for v in group["n_tokens"]],
            "used": [fmt(v, 0) for v in group["used"]],
            "usage %": [fmt_sig(v, 1, 100.0) for v in group["usage"]],
            "H (bits)": [fmt(v, 3) for v in group["entropy_bits"]],
            "log2 V (bits)": [fmt(v, 1) for v in group["capacity_bits"]],
            "H / log2 V": [fmt(v, 3) for v in group["normalized_entropy"]],
            "perplexity": [fmt(v, 1) for v in group["perplexity"]],
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
    atomic_write_text(run_dir / f"{CODEBOOK_STEM}.csv", table.to_csv(index=False))
    atomic_write_text(run_dir / f"{CODEBOOK_STEM}.md", codebook_markdown(table))
    return codebook_summary_columns(stats, errors)
