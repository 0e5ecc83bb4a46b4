"""The run's CSV log (``OUT/log.csv``) and its plot (``OUT/loss.png``)."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

LOG_NAME = "log.csv"
PLOT_NAME = "loss.png"


class CsvLog:
    """Append-only CSV of per-step values; on resume, rows after the checkpoint step are dropped
    so that the log matches the restored state exactly. Columns missing from a row are left
    empty (read back as NaN), e.g. the monitor's columns between monitor steps."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_step: int | None) -> None:
        self.path, self.columns = Path(path), columns
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                kept = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(columns))
            w.writeheader()
            w.writerows({c: r.get(c, "") for c in columns} for r in kept)
        self._f = open(self.path, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, fieldnames=list(columns))

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({c: _fmt(row.get(c, "")) for c in self.columns})
        self._f.flush()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a training CSV log as float arrays (empty cells -> NaN)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows]) for k in rows[0]}


def plot_log(csv_path: str | Path, png_path: str | Path, columns: tuple[str, ...], title: str) -> None:
    """Plot the given columns against step (log y axis when positive, moving average over ~1/50
    of the run). Columns logged only on some steps (the monitor's) are drawn as points joined
    by lines; columns with no finite value are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_log(csv_path)
    if not data or len(data["step"]) == 0:
        return
    cols = [c for c in columns if c in data and np.isfinite(data[c]).any()]
    fig, axes = plt.subplots(len(cols), 1, figsize=(7, 2.2 * len(cols)), sharex=True, squeeze=False)
    for ax, c in zip(axes[:, 0], cols):
        y, x = data[c], data["step"]
        ok = np.isfinite(y)
        sparse = ok.sum() < 0.5 * len(y)
        ax.plot(x[ok], y[ok], lw=1.0 if sparse else 0.5, alpha=1.0 if sparse else 0.4, color="C1" if sparse else "C0",
                marker="o" if sparse else None, ms=3)
        k = max(1, int(ok.sum()) // 50)
        if k > 1 and not sparse:
            smooth = np.convolve(y[ok], np.ones(k) / k, mode="valid")
            ax.plot(x[ok][k - 1:], smooth, lw=1.5, color="C0")
        ax.set_ylabel(c)
        if (y[ok] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
