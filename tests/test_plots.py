"""Tests of benchmarks.plots: Pareto front, family styles, and that the figures are written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from test_report import synthetic_rows, write_run

from benchmarks import plots, report


def test_pareto_mask_higher_and_lower_is_better():
    cost = np.array([1.0, 2.0, 3.0, 4.0, 2.0, np.nan])
    quality = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 9.0])
    # (3, 2) is dominated by (2, 3); the duplicate (2, 3) keeps only its first copy; NaN never on front
    assert plots.pareto_mask(cost, quality).tolist() == [True, True, False, True, False, False]
    wer = np.array([0.5, 0.2, 0.3, 0.2])
    # lower is better: (3, .3) dominated by (2, .2); (4, .2) ties quality at higher cost -> dominated
    assert plots.pareto_mask(np.array([1.0, 2.0, 3.0, 4.0]), wer, higher_is_better=False).tolist() == [
        True, True, False, False]


def test_family_and_setting_of_specs():
    assert plots.family_of("opus@6k") == "opus" and plots.setting_of("opus@6k") == "6k"
    assert plots.family_of("jepa-daam:/ckpt/a.safetensors") == "jepa-daam"
    assert plots.setting_of("pcm") == ""


def test_styles_unique_and_colour_blind_palette():
    fams = [f"f{i}" for i in range(12)]
    styles = plots._styles(fams)
    assert len(set(styles.values())) == 12
    assert all(colour in plots.OKABE_ITO for colour, _ in styles.values())


def test_write_plots_creates_png_and_pdf(tmp_path: Path):
    run = write_run(tmp_path / "run", synthetic_rows(n_utts=4))
    summary = report.summarize(report.load_results(run), n_resamples=100)
    paths = plots.write_plots(summary, run)
    names = sorted(p.name for p in paths)
    assert names == ["quality_vs_bitrate.pdf", "quality_vs_bitrate.png", "quality_vs_tokens.pdf", "quality_vs_tokens.png"]
    for p in paths:
        assert p.stat().st_size > 5000
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")


def test_write_plots_without_token_codecs_or_metrics(tmp_path: Path):
    rows = [r for r in synthetic_rows(n_utts=3) if not r["codec"].startswith(("encodec", "jepa"))]
    summary = report.summarize(report.load_results(write_run(tmp_path / "a", rows)), n_resamples=50)
    assert [p.name for p in plots.write_plots(summary, tmp_path / "a")] == ["quality_vs_bitrate.png", "quality_vs_bitrate.pdf"]
    bare = summary[["codec", "n_ok", "bitrate_measured_mean"]]
    assert plots.write_plots(bare, tmp_path / "b") == []
