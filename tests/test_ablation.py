"""`python -m benchmarks.ablation` end to end on a tiny configuration: two 3-step stage-1 runs (DAAM
on and off) on three real training utterances, two stage-2 steps of each, both exported codecs
through the benchmark runner on two eval utterances, then the table, the Markdown copy and the plots.

The measured numbers in the table are checked against the runs' own per-step logs (read here
with the csv module, independently of jepa.train.read_log); the paper's values must appear only
in rows labelled `published`.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from benchmarks import ablation
from jepa.config import config_to_dict
from helpers import manifest_subset
from test_train import TINY

STEPS, LAST_K, STAGE2_STEPS = 3, 2, 2


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ablation_out(eval_manifest, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ablation")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(config_to_dict(TINY)), encoding="utf-8")
    train = manifest_subset(eval_manifest.parent.parent / "train" / "manifest.tsv", root / "train.tsv", slice(3))
    held_out = manifest_subset(eval_manifest, root / "eval.tsv", slice(3))
    out, runs = root / "out", root / "runs"
    assert ablation.main(["--steps", str(STEPS), "--config", str(cfg), "--data", str(train), "--eval-data",
                          str(held_out), "--eval-clips", "3", "--runs", str(runs), "--out", str(out), "--seed", "0",
                          "--batch-size", "2", "--crop-seconds", "1.6", "--threads", "1", "--jobs", "2",
                          "--device", "cpu", "--save-every", "2", "--last-k", str(LAST_K),
                          "--stage2-steps", str(STAGE2_STEPS), "--eval-limit", "2", "--no-asr"]) == 0
    return out, runs


def test_measured_rows_come_from_the_run_logs(ablation_out):
    out, runs = ablation_out
    rows = _csv_rows(out / "ablation.csv")
    measured = {r["run"]: r for r in rows if r["source"] == "measured" and r["steps"] == str(STEPS)}
    assert set(measured) == {"JEPA + DAAM (TINY)", "JEPA without DAAM (TINY)"}
    for v in ablation.VARIANTS:
        row = measured[ablation.run_label(v, TINY)]
        log = _csv_rows(runs / v.name / "log.csv")
        assert [int(r["step"]) for r in log] == list(range(1, STEPS + 1))
        losses = [float(r["loss"]) for r in log]
        assert float(row["final_loss"]) == pytest.approx(losses[-1], rel=1e-3)
        assert float(row[f"mean_last_{LAST_K}"]) == pytest.approx(sum(losses[-LAST_K:]) / LAST_K, rel=1e-3)
        assert float(row["min_loss"]) == pytest.approx(min(losses), rel=1e-3)
        assert row["use_daam"] == str(v.use_daam)
        assert row["config"] == ("tiny" if v.use_daam else "tiny_no_daam")
        assert float(row["wall_minutes"]) > 0 and 0 < float(row["distinct_frames"]) <= 1
        # The published log copy is the run's log byte for byte.
        assert (out / f"{v.name}_log.csv").read_bytes() == (runs / v.name / "log.csv").read_bytes()
    # Same seed, data and masks: the arms differ in DAAM only, so their losses differ but not their masks.
    logs = [_csv_rows(runs / v.name / "log.csv") for v in ablation.VARIANTS]
    assert [r["n_masked"] for r in logs[0]] == [r["n_masked"] for r in logs[1]]
    assert [r["loss"] for r in logs[0]] != [r["loss"] for r in logs[1]]
    untrained = [r for r in rows if r["source"] == "measured" and r["steps"] == "0"]
    assert len(untrained) == 1 and math.isnan(float(untrained[0]["final_loss"]))


def test_published_rows_are_labelled_published(ablation_out):
    out, _ = ablation_out
    rows = _csv_rows(out / "ablation.csv")
    published = [r for r in rows if r["source"] == "published"]
    assert [(r["use_daam"], float(r["final_loss"]), r["steps"]) for r in published] == \
        [("True", 0.09, "24000"), ("False", 0.17, "24000")]
    assert all("paper" in r["run"] and r["config"] == "paper" for r in published)
    assert {r["source"] for r in rows} == {"measured", "published"} and len(rows) == 5
    md = (out / "ablation.md").read_text(encoding="utf-8").splitlines()
    assert sum("| published |" in line for line in md) == 2
    assert sum(line.startswith("| JEPA") for line in md) == 4 + 2  # 4 stage-1 rows, 2 codec-quality rows


def test_codec_quality_comes_from_the_benchmark_run(ablation_out):
    """Each arm's quality columns are its row in the evaluation run's summary.csv; only measured
    arms have them, and the stage-2 runs hold the requested steps."""
    out, runs = ablation_out
    rows = _csv_rows(out / "ablation.csv")
    summary = {r["codec"]: r for r in _csv_rows(runs / "eval" / "summary.csv")}
    for v in ablation.VARIANTS:
        row = next(r for r in rows if r["run"] == ablation.run_label(v, TINY))
        s = summary[f"jepa-daam:{runs / (v.name + '.safetensors')}"]
        assert float(row["stoi_mean"]) == pytest.approx(float(s["stoi_mean"]), rel=1e-3)
        assert float(row["pesq_wb_ci_high"]) == pytest.approx(float(s["pesq_wb_ci_high"]), rel=1e-3)
        assert float(row["n_utts"]) == 2 and int(float(row["stage2_steps"])) == STAGE2_STEPS
        assert math.isnan(float(row["wer_corpus"]))  # --no-asr: NaN, not a default
        log = _csv_rows(runs / f"{v.name}_stage2" / "log.csv")
        assert [int(r["step"]) for r in log] == list(range(1, STAGE2_STEPS + 1))
        assert all(r["gan_active"] == "0" for r in log)  # reconstruction losses only, same recipe for both arms
        assert (out / f"{v.name}_stage2_log.csv").read_bytes() == (runs / f"{v.name}_stage2" / "log.csv").read_bytes()
    for r in rows:
        if r["run"] not in {ablation.run_label(v, TINY) for v in ablation.VARIANTS}:
            assert math.isnan(float(r["stoi_mean"]))


def test_plots_are_nonempty_png_and_pdf(ablation_out):
    out, _ = ablation_out
    png, pdf = (out / "loss_curves.png").read_bytes(), (out / "loss_curves.pdf").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 2_000


def test_refuses_a_base_config_without_daam(tmp_path):
    with pytest.raises(ValueError, match="use_daam false"):
        ablation.main(["--steps", "1", "--config", "small_no_daam", "--runs", str(tmp_path / "runs"),
                       "--out", str(tmp_path / "out")])
    assert not (tmp_path / "runs").exists()
