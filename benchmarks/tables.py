"""Formatting summary tables: numbers with CIs as text, Markdown pipe tables and LaTeX (booktabs).

:func:`display_table` condenses a per-codec summary (``benchmarks.report.summarize``) into the
columns readers compare (bitrate, tokens/s, codebook health, quality with 95 % CIs, corpus WER,
RTF); :func:`to_markdown` and :func:`to_latex` render any string table. The ``fmt*`` helpers are
shared with ``benchmarks.paper_table``.
"""
from __future__ import annotations

import math

import pandas as pd

__all__ = ["DISPLAY_COLUMNS", "display_table", "fmt", "fmt_ci", "fmt_sig", "latex_escape", "to_latex", "to_markdown"]

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
    ("dnsmos_ovrl", "DNSMOS OVRL", 2, 1.0),
    ("dnsmos_p808", "DNSMOS P.808", 2, 1.0),
    ("distillmos", "DistillMOS", 2, 1.0),
    ("utmos", "UTMOS", 2, 1.0),
    ("spk_sim", "SIM (Resemblyzer)", 3, 1.0),
    ("spk_sim_wavlm", "SIM (WavLM-SV)", 3, 1.0),
)


def fmt(value: object, decimals: int, scale: float = 1.0) -> str:
    """``value * scale`` with ``decimals`` decimals; ``–`` for None/NaN/NA, ``∞`` / ``−∞`` for infinities."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    x = float(value) * scale
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{decimals}f}"


def fmt_sig(value: object, decimals: int, scale: float = 1.0, digits: int = 2) -> str:
    """Like :func:`fmt`, with more decimals where needed to show ``digits`` significant digits.

    For quantities spanning decades (RTF 0.00007 ... 2, codebook usage 0.03 % ... 100 %), where a
    fixed number of decimals would print small values as 0.000: ``fmt_sig(7.4e-05, 3)`` is
    ``0.000074``, ``fmt_sig(0.187, 3)`` is ``0.187``.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return fmt(value, 0, scale)
    x = float(value) * scale
    if x == 0:
        return f"{0:.{decimals}f}"
    decimals = max(decimals, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_ci(summary_row: pd.Series, key: str, decimals: int, scale: float) -> str:
    base = key if key.endswith("_corpus") else f"{key}_mean"
    mean = summary_row.get(base, math.nan)
    low, high = summary_row.get(f"{key}_ci_low", math.nan), summary_row.get(f"{key}_ci_high", math.nan)
    text = fmt(mean, decimals, scale)
    if text != "–" and fmt(low, decimals) != "–":
        text += f" [{fmt(low, decimals, scale)}, {fmt(high, decimals, scale)}]"
    return text


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Condensed, formatted table (strings) for Markdown / LaTeX; empty metric columns dropped."""
    from benchmarks.selfcheck import is_flagged

    checks = summary["self_check"] if "self_check" in summary.columns else pd.Series([None] * len(summary))
    out = pd.DataFrame({"Codec": [f"⚠ {c}" if is_flagged(s) else c for c, s in zip(summary["codec"], checks)]})
    if "self_check" in summary.columns:
        out["self-check"] = [str(s) for s in checks]
    out["n ok / failed"] = [f"{r.n_ok} / {r.n_failed}" for r in summary.itertuples()]
    rate = []
    for _, r in summary.iterrows():
        measured = fmt(r.get("bitrate_measured_mean", math.nan), 2, 1e-3)
        nominal = fmt(r.get("bitrate_nominal", math.nan), 2, 1e-3)
        rate.append(measured if nominal == "–" else f"{measured} ({nominal})")
    out["kbit/s measured (nominal)"] = rate
    if "tokens_per_s_mean" in summary.columns and summary["tokens_per_s_mean"].notna().any():
        out["tokens/s"] = [fmt(v, 1) for v in summary["tokens_per_s_mean"]]
    if "codebook_usage" in summary.columns and summary["codebook_usage"].notna().any():
        out["codebook usage %"] = [fmt_sig(v, 1, 100.0) for v in summary["codebook_usage"]]
    for col, header, decimals in (("codebook_normalized_entropy", "H / log2 V", 3),
                                  ("codebook_perplexity_mean", "perplexity (mean per stream)", 1)):
        if col in summary.columns and summary[col].notna().any():
            out[header] = [fmt(v, decimals) for v in summary[col]]
    for key, header, decimals, scale in DISPLAY_COLUMNS:
        base = key if key.endswith("_corpus") else f"{key}_mean"
        if base in summary.columns and summary[base].notna().any():
            out[header] = [fmt_ci(r, key, decimals, scale) for _, r in summary.iterrows()]
    for col, header in (("encode_rtf_median", "enc. RTF (median)"), ("decode_rtf_median", "dec. RTF (median)")):
        if col in summary.columns and summary[col].notna().any():
            out[header] = [fmt_sig(v, 3) for v in summary[col]]
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
    "<": r"\textless{}", ">": r"\textgreater{}", "∞": r"$\infty$", "−": "$-$", "⚠": r"(!)",
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
