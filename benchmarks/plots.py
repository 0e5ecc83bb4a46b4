"""Rate-quality figures from a per-codec summary (:func:`benchmarks.report.summarize`).

Two figures, each saved as PNG (150 dpi) and PDF:

* ``quality_vs_bitrate`` -- PESQ-WB, STOI and corpus WER (whichever the run has) against the
  *measured* bitrate in kbit/s on a log axis; error bars are the 95 % bootstrap CIs of the summary;
  codecs on the Pareto front (no other codec is at most as expensive and strictly better) are
  ringed and joined by a dashed step line.
* ``quality_vs_tokens`` -- the same panels against tokens/s, for token codecs only.

Codecs are grouped by family (the spec before ``@`` or ``:``): one Okabe-Ito colour and one marker
per family, the points of a family joined in rate order and labelled with their setting. A single
figure legend lists the families and the Pareto marker.

Codecs whose self-check failed (a ``self_check`` column other than ``ok`` / ``not run``, see
:mod:`benchmarks.selfcheck`) are drawn as hollow grey points labelled "⚠ self-check failed",
never joined to their family's line, and left off the Pareto front.

Usage: called by ``benchmarks.report.write_reports``; or ``write_plots(summary, out_dir)``;
``render_svgs(summary)`` gives the same figures as SVG for ``report.html``.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

#: Okabe & Ito (2008) colour-blind-safe palette; yellow last (weak on white).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")


@dataclass(frozen=True)
class Panel:
    """One quality axis: summary key (``<key>_mean`` or a ``*_corpus`` rate), label, direction."""

    key: str
    label: str
    higher_is_better: bool
    scale: float = 1.0

    @property
    def value_column(self) -> str:
        return self.key if self.key.endswith("_corpus") else f"{self.key}_mean"


PANELS = (
    Panel("pesq_wb", "PESQ-WB (MOS-LQO) ↑", True),
    Panel("stoi", "STOI ↑", True),
    Panel("wer_corpus", "WER % (corpus) ↓", False, 100.0),
)


def family_of(spec: str) -> str:
    """Codec family of a spec: ``opus@6k`` -> ``opus``; ``jepa-daam:/x.safetensors`` -> ``jepa-daam``."""
    return str(spec).split("@", 1)[0].split(":", 1)[0]


def setting_of(spec: str) -> str:
    """Setting part of a spec (``opus@6k`` -> ``6k``), or '' when it has none."""
    spec = str(spec)
    return spec.split("@", 1)[1] if "@" in spec else ""


def pareto_mask(cost: np.ndarray, quality: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Boolean mask of Pareto-optimal points (minimise cost, optimise quality).

    A point is on the front when no other point is at least as good in both (cost <= and
    quality >=) and strictly better in one; exact ties in both keep the first. NaN points are never on the front.

    Args:
        cost: [N] e.g. bitrate; quality: [N]; higher_is_better: quality direction.
    """
    cost = np.asarray(cost, dtype=float)
    q = np.asarray(quality, dtype=float) * (1.0 if higher_is_better else -1.0)
    valid = np.isfinite(cost) & np.isfinite(q)
    # dominated[i] = exists j: cost_j <= cost_i, q_j >= q_i, one of them strict (pairwise, N is small)
    no_worse = (cost[None, :] <= cost[:, None]) & (q[None, :] >= q[:, None])
    strictly = (cost[None, :] < cost[:, None]) | (q[None, :] > q[:, None])
    dominated = (no_worse & strictly & valid[None, :]).any(axis=1)
    # exact duplicates: keep the first occurrence only
    same = (cost[None, :] == cost[:, None]) & (q[None, :] == q[:, None]) & valid[None, :]
    duplicate_later = np.tril(same, k=-1).any(axis=1)
    return valid & ~dominated & ~duplicate_later


def _styles(families: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per family, stable in order of appearance; combinations stay unique."""
    styles = {}
    for i, fam in enumerate(dict.fromkeys(families)):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        marker = MARKERS[(i + i // len(OKABE_ITO)) % len(MARKERS)]
        styles[fam] = (colour, marker)
    return styles


def flagged_mask(summary: pd.DataFrame) -> np.ndarray:
    """Boolean [K]: the codecs whose self-check failed (``self_check`` column; none without it)."""
    from benchmarks.selfcheck import is_flagged

    if "self_check" not in summary.columns:
        return np.zeros(len(summary), dtype=bool)
    return np.array([is_flagged(v) for v in summary["self_check"]], dtype=bool)


def _col(summary: pd.DataFrame, name: str) -> np.ndarray:
    return summary[name].to_numpy(dtype=float) if name in summary.columns else np.full(len(summary), np.nan)


def _draw_panel(ax, summary: pd.DataFrame, x: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray,
                panel: Panel, styles: dict[str, tuple[str, str]]) -> None:
    y = _col(summary, panel.value_column) * panel.scale
    y_lo = _col(summary, f"{panel.key}_ci_low") * panel.scale
    y_hi = _col(summary, f"{panel.key}_ci_high") * panel.scale
    fams = [family_of(c) for c in summary["codec"]]
    flagged = flagged_mask(summary)
    for i in np.flatnonzero(flagged & np.isfinite(x) & np.isfinite(y)):
        ax.scatter([x[i]], [y[i]], s=40, facecolors="none", edgecolors="#888888", marker="o", zorder=3)
        ax.annotate(f"⚠ {family_of(summary['codec'].iloc[i])}", (x[i], y[i]), textcoords="offset points",
                    xytext=(4, -9), fontsize=6, color="#888888", zorder=4)
    for fam, (colour, marker) in styles.items():
        idx = np.array([i for i, f in enumerate(fams) if f == fam and not flagged[i] and np.isfinite(x[i])
                        and np.isfinite(y[i])], dtype=int)
        if idx.size == 0:
            continue
        idx = idx[np.argsort(x[idx])]
        yerr = np.vstack([np.nan_to_num(y[idx] - y_lo[idx]), np.nan_to_num(y_hi[idx] - y[idx])]).clip(min=0)
        xerr = np.vstack([np.nan_to_num(x[idx] - x_lo[idx]), np.nan_to_num(x_hi[idx] - x[idx])]).clip(min=0)
        ax.errorbar(x[idx], y[idx], yerr=yerr, xerr=xerr, color=colour, marker=marker, markersize=6,
                    linestyle="-", linewidth=1.0, alpha=0.95, capsize=2.5, elinewidth=0.9, zorder=3)
        for i in idx:
            label = setting_of(summary["codec"].iloc[i])
            if label:
                ax.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color="#333333", zorder=4)
    front = pareto_mask(x, np.where(flagged, np.nan, y), panel.higher_is_better)
    if front.any():
        order = np.argsort(x[front])
        fx, fy = x[front][order], y[front][order]
        ax.step(fx, fy, where="post", color="#555555", linestyle="--", linewidth=1.0, zorder=2)
        ax.scatter(fx, fy, s=150, facecolors="none", edgecolors="#222222", linewidths=1.2, zorder=5)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(panel.label)
    ax.grid(True, which="both", linewidth=0.4, alpha=0.5)


def _build_figure(summary: pd.DataFrame, x_key: str, x_label: str, x_scale: float, title: str,
                  styles: dict[str, tuple[str, str]]):
    """One figure (a panel per quality metric the summary has), or None when nothing is plottable."""
    panels = [p for p in PANELS if p.value_column in summary.columns and summary[p.value_column].notna().any()]
    x = _col(summary, f"{x_key}_mean") * x_scale
    if not panels or not np.isfinite(x).any():
        return None
    x_lo = _col(summary, f"{x_key}_ci_low") * x_scale
    x_hi = _col(summary, f"{x_key}_ci_high") * x_scale
    present = {family_of(c) for c in summary["codec"]}
    styles = {fam: style for fam, style in styles.items() if fam in present}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw_panel(ax, summary, x, x_lo, x_hi, panel, styles)
        ax.set_xlabel(x_label)
    handles = [Line2D([], [], color=c, marker=m, linestyle="-", markersize=6, label=f) for f, (c, m) in styles.items()]
    handles.append(Line2D([], [], color="#555555", linestyle="--", marker="o", markerfacecolor="none",
                          markeredgecolor="#222222", markersize=9, label="Pareto front"))
    if flagged_mask(summary).any():
        handles.append(Line2D([], [], color="none", marker="o", markerfacecolor="none", markeredgecolor="#888888",
                              markersize=6, label="⚠ self-check failed (not on the front)"))
    fig.suptitle(title, fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, fontsize=9)
    n_rows = math.ceil(len(handles) / 6)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * n_rows, 1, 0.95))
    return fig


def _figures(summary: pd.DataFrame) -> dict[str, object]:
    """``quality_vs_bitrate`` and (if any token codec) ``quality_vs_tokens`` figures, by file stem."""
    styles = _styles([family_of(c) for c in summary["codec"]])  # same family style in every figure
    figures = {"quality_vs_bitrate": _build_figure(
        summary, "bitrate_measured", "measured bitrate (kbit/s, log)", 1e-3,
        "Quality vs measured bitrate (mean, 95% bootstrap CI)", styles)}
    if "tokens_per_s_mean" in summary.columns:
        tokens = summary[summary["tokens_per_s_mean"].to_numpy(dtype=float) > 0]
        if len(tokens):
            figures["quality_vs_tokens"] = _build_figure(
                tokens.reset_index(drop=True), "tokens_per_s", "tokens per second (log)", 1.0,
                "Quality vs token rate, token codecs (mean, 95% bootstrap CI)", styles)
    return {stem: fig for stem, fig in figures.items() if fig is not None}


def render_svgs(summary: pd.DataFrame) -> dict[str, bytes]:
    """The same figures as :func:`write_plots`, as SVG documents in memory (for ``report.html``).

    Returns:
        ``{"quality_vs_bitrate": b"<svg ...", ...}``; empty when nothing is plottable.
    """
    out = {}
    for stem, fig in _figures(summary).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})  # no date: the same summary gives the same bytes
        plt.close(fig)
        out[stem] = buf.getvalue()
    return out


def write_plots(summary: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``quality_vs_bitrate`` and (if any token codec) ``quality_vs_tokens`` as PNG + PDF.

    Args:
        summary: per-codec frame from :func:`benchmarks.report.summarize`.
        out_dir: folder to write into (created if missing).

    Returns:
        Paths written; a figure with no plottable data (no quality metric, or no token codec)
        is skipped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in _figures(summary).items():
        for ext in ("png", "pdf"):
            path = out_dir / f"{stem}.{ext}"
            fig.savefig(path, dpi=150)
            paths.append(path)
        plt.close(fig)
    return paths
