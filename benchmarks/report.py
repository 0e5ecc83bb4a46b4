"""Per-codec summary tables of a finished benchmark run, regenerated from ``results.jsonl``.

No metric is recomputed from audio (only ``report.html``'s listening grid may re-encode a few
utterances when their reconstructions are no longer cached): the report reads the per-utterance rows written by
``benchmarks.run`` (schema in ``docs/results-format.md``) and writes, into the run directory,

* ``summary.csv`` -- every statistic, one row per codec (machine-readable, full precision);
* ``summary.md``  -- a condensed Markdown table for READMEs and issues;
* ``summary.tex`` -- the same condensed table as a LaTeX ``tabular`` (booktabs);
* ``codebook.csv`` / ``codebook.md`` -- codebook health of each token codec over the whole corpus
  (usage, entropy, entropy / log2 V, perplexity; per stream, pooled per vocabulary size and for
  the whole frame), counted from the token files ``tokens/<codec>/<utt>.npy`` with
  :class:`metrics.codebook.CodebookStats` (:mod:`benchmarks.codebook_report`);
* the rate-quality plots of :mod:`benchmarks.plots` (PNG + PDF);
* ``report.html`` with its ``listen/`` folder (:mod:`benchmarks.html_report`; ``--no-html`` skips it,
  ``--listen N`` sizes its listening grid).

With ``--html OUT.html RUN_DIR [RUN_DIR ...]`` it writes a leaderboard merging the runs instead
(:mod:`benchmarks.leaderboard`).

Tables are rendered by :mod:`benchmarks.tables`; the statistics (percentile bootstrap with
``scipy.stats.bootstrap``, corpus pooling) come from :mod:`metrics.stats`.

Statistics per codec (over rows with ``status == "ok"``):

* for every numeric metric column ``m``: ``m_mean`` with a 95 % percentile-bootstrap confidence
  interval ``m_ci_low`` / ``m_ci_high`` (resampling utterances, fixed seed), ``m_n`` (values that
  are not NaN) and ``m_nan_reasons`` (why the other values are NaN, counted from the ``m_error``
  column). Infinite values (SI-SDR of a bit-exact reconstruction) are kept: the mean is then
  +inf and the CI NaN;
* corpus-level rates pooled from count columns (``wer_errors / wer_words`` etc.) with a bootstrap
  CI over utterances: ``wer_corpus``, ``wer_corpus_ci_low``, ``wer_corpus_ci_high`` ..., and
  ``wer_corpus_n``, the pooled denominator (reference words; characters for CER). An utterance
  counts when its errors and reference length are finite and the length positive
  (:func:`metrics.stats.corpus_rate`, the rule ``metrics.asr.corpus_rates`` uses too);
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

    python -m benchmarks.report RUN_DIR [--n-boot 2000] [--seed 0] [--no-plots] [--listen 3] [--no-html]
    python -m benchmarks.report --html OUT.html RUN_DIR [RUN_DIR ...] [--allow-mixed]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from audiocore.atomic import atomic_write_text
from benchmarks.selfcheck import is_flagged, load_self_checks, status_of
from benchmarks.codebook_report import CODEBOOK_STEM, add_codebook_columns, write_codebook_reports
from benchmarks.tables import display_table, fmt_ci, to_latex, to_markdown
from metrics import stats
from metrics.stats import DEFAULT_CONFIDENCE, DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_ci, corpus_rate

RESULTS_FILE = "results.jsonl"
SUMMARY_STEM = "summary"

#: Columns that identify a row or describe the input, never summarised as metrics.
ID_COLUMNS = ("codec", "utt_id", "set", "path", "status", "error", "code_version", "weights_hash")
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
        # Rows in a canonical order (codecs as first listed, utterances by id): parallel workers
        # finish in any order, and bootstrap resamples must not depend on it.
        rank = {c: i for i, c in enumerate(_codec_order(path.parent, pd.unique(df["codec"])))}
        df = df.assign(_rank=df["codec"].map(rank), _utt=df["utt_id"].astype(str))
        df = df.sort_values(["_rank", "_utt"], kind="mergesort").drop(columns=["_rank", "_utt"])
    return _coerce_numeric(df).reset_index(drop=True)


def _codec_order(run_dir: Path, seen: Sequence[str]) -> list[str]:
    """Codecs in the order the run listed them (``manifest.json``), then any others as seen."""
    try:
        listed = [c["codec"] for c in json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["codecs"]]
    except (OSError, ValueError, KeyError, TypeError):
        listed = []
    return [*[c for c in listed if c in set(seen)], *[c for c in seen if c not in set(listed)]]


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
            rate = corpus_rate(ok[num_col].to_numpy(dtype=np.float64), ok[den_col].to_numpy(dtype=np.float64),
                               n_resamples=n_resamples, confidence=confidence, seed=seed)
            row[f"{name}_corpus"] = rate.rate
            row[f"{name}_corpus_n"] = rate.units  # reference words (chars for CER) pooled
            row[f"{name}_corpus_ci_low"], row[f"{name}_corpus_ci_high"] = rate.ci_low, rate.ci_high
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
        low, high = bootstrap_ci([finite], stats.mean, n_resamples, confidence, seed)
    return {f"{name}_mean": mean, f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_n": int(present.size)}


def _nominal(rows: pd.DataFrame) -> float:
    """The codec's claimed bitrate (bit/s): its median over rows, NaN when never stated."""
    if "bitrate_nominal" not in rows.columns:
        return math.nan
    values = pd.to_numeric(rows["bitrate_nominal"], errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


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


def _perceptual_note(summary: pd.DataFrame) -> str:
    """Sentences on the self-check flags and the original's perceptual level, for summary.md."""
    text = ""
    if "self_check" in summary.columns and summary["self_check"].map(is_flagged).any():
        text += (" ⚠: the codec failed a self-check (column self-check; details in selfcheck.json): its rows "
                 "are not to be trusted, and the plots leave it off the Pareto front.")
    refs = [(c, label) for c, label in (("dnsmos_ovrl", "DNSMOS OVRL"), ("dnsmos_p808", "DNSMOS P.808"),
                                        ("distillmos", "DistillMOS"), ("utmos", "UTMOS"))
            if f"{c}_ref_mean" in summary.columns and summary[f"{c}_ref_mean"].notna().any()]
    if refs:
        best = summary.loc[summary["n_ok"].idxmax()]
        parts = [f"{label} {fmt_ci(best, c + '_ref', 2, 1.0)}" for c, label in refs]
        text += f" The uncompressed originals of {best['codec']}'s {int(best['n_ok'])} utterances score " + ", ".join(parts) + "."
    return text


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
    checks = load_self_checks(run_dir)
    if len(summary):
        summary.insert(1, "self_check", [status_of(checks, c) for c in summary["codec"]])
    atomic_write_text(run_dir / f"{SUMMARY_STEM}.csv", summary.to_csv(index=False))
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
    note += _perceptual_note(summary)
    md = [f"# Summary of {run_dir.name}", "", to_markdown(table), note, "", f"Provenance: {_provenance(run_dir)}", ""]
    atomic_write_text(run_dir / f"{SUMMARY_STEM}.md", "\n".join(md))
    atomic_write_text(run_dir / f"{SUMMARY_STEM}.tex",
                      to_latex(table, caption=f"Codec benchmark ({run_dir.name}). {note}", label="tab:codec-summary"))
    if plots and len(summary):
        from benchmarks.plots import write_plots

        write_plots(summary, run_dir)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0],
        epilog="python -m benchmarks.report --html OUT.html RUN_DIR [RUN_DIR ...] merges runs into a leaderboard page")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="run directory holding results.jsonl (several only with --html)")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples (default 2000)")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE, help="CI coverage (default 0.95)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default 0)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF figures")
    parser.add_argument("--no-html", action="store_true", help="skip report.html")
    parser.add_argument("--listen", type=int, default=3, metavar="N",
                        help="utterances in report.html's listening grid (default 3; 0: none)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache the listening grid reads reconstructions from (default: the run's --cache-dir)")
    parser.add_argument("--html", type=Path, default=None, metavar="OUT.html",
                        help="write a leaderboard of the RUN_DIRs (newest run wins per codec) to OUT.html")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="with --html: merge runs made on different data or protocols (the page says so)")
    args = parser.parse_args(argv)
    from benchmarks import html_report, leaderboard

    try:
        if args.html is not None:
            page = leaderboard.write_leaderboard(args.html, args.run_dirs, allow_mixed=args.allow_mixed)
            print(f"wrote {page}")
            return 0
        if len(args.run_dirs) != 1:
            raise ValueError(f"one RUN_DIR at a time, got {len(args.run_dirs)} (several only with --html OUT.html)")
        if args.listen < 0:
            raise ValueError(f"--listen must be 0 or more utterances, got {args.listen}")
        run_dir = args.run_dirs[0]
        summary = write_reports(run_dir, args.n_boot, args.confidence, args.seed, plots=not args.no_plots)
        print(to_markdown(display_table(summary)) if len(summary) else "no rows in results.jsonl")
        print(f"wrote {run_dir / (SUMMARY_STEM + '.csv')}, .md, .tex")
        if not args.no_html:
            page = html_report.write_run_report(run_dir, summary, listen=args.listen, cache_dir=args.cache_dir)
            listen_bytes = html_report.page_bytes(run_dir) - page.stat().st_size
            print(f"wrote {page} ({html_report.format_size(page.stat().st_size)} page + "
                  f"{html_report.format_size(listen_bytes)} audio and spectrograms)")
    except (FileNotFoundError, ValueError) as exc:  # leaderboard.MergeRefused is a ValueError
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
