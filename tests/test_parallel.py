"""Parallel execution (``--jobs N``, ``--executor ray``): the same rows whatever executes them,
one writer, resume, and a worker that dies does not take the run with it.

Values compared bit for bit, except ESTOI within 1e-12: numpy's reductions inside pystoi depend on
memory alignment, so even one process gives ESTOI values that differ in the last bits for the
same samples (docs/performance.md).
"""
from __future__ import annotations

import importlib.util
import json
import math

import pytest

from benchmarks import store
from benchmarks.bench_throughput import value_differences
from benchmarks.executor import ProcessExecutor, WorkerSetup, unit_plan
from benchmarks.provenance import code_version
from benchmarks.runconfig import RunConfig
from helpers import CrashingUtterance
from test_run_cli import call_main, write_manifest

IDS = ("ps_cards_001", "ps_cards_003", "1089-134691-0000")
CODECS = "pcm,opus@6k,jepa-daam@small-50hz"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, eval_rows):
    return write_manifest(tmp_path_factory.mktemp("parallel"), eval_rows, IDS)


def _run(manifest, out, cache, *flags: str) -> list[dict]:
    code, stdout, stderr = call_main(["--codecs", CODECS, "--data", str(manifest), "--out", str(out),
                                      "--cache-dir", str(cache), "--no-perceptual", "--no-report", *flags])
    assert code == 0, stderr
    return store.load_rows(out)


@pytest.fixture(scope="module")
def serial_rows(manifest, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    return _run(manifest, tmp / "run", tmp / "cache", "--jobs", "1")


def test_two_workers_give_the_same_values_as_one(manifest, serial_rows, tmp_path) -> None:
    rows = _run(manifest, tmp_path / "run", tmp_path / "cache", "--jobs", "2")
    assert len(rows) == len(serial_rows) == 9 and all(r["status"] == "ok" for r in rows)
    assert all(math.isfinite(r["wer"]) for r in rows)  # ASR ran in the workers
    assert value_differences(serial_rows, rows) == []
    manifest_json = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest_json["execution"]["workers"] == 2 and manifest_json["peak_memory_workers_mb"] > 0


def test_the_comparison_sees_a_changed_value(serial_rows) -> None:
    """value_differences must be able to fail: one changed WER is reported."""
    changed = [dict(r) for r in serial_rows]
    changed[4]["wer"] = changed[4]["wer"] + 0.01
    changed[5]["estoi"] = changed[5]["estoi"] + 1e-6  # beyond the ESTOI tolerance
    assert len(value_differences(serial_rows, changed)) == 2


def test_resume_with_workers_redoes_only_missing_rows(manifest, serial_rows, tmp_path) -> None:
    """A run cut short (two rows lost) resumed with --jobs 2 computes exactly those rows."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    _run(manifest, out, cache, "--jobs", "2")
    lines = (out / store.RESULTS_FILE).read_text().splitlines()
    (out / store.RESULTS_FILE).write_text("\n".join(lines[:-2]) + "\n")
    code, stdout, _ = call_main(["--codecs", CODECS, "--data", str(manifest), "--out", str(out),
                                 "--cache-dir", str(cache), "--no-perceptual", "--no-report", "--jobs", "2"])
    assert code == 0 and "0 rows computed, 2 from cache, 7 already done" in stdout
    assert value_differences(serial_rows, store.load_rows(out)) == []


def test_a_worker_that_dies_costs_only_its_utterance(manifest, tmp_path) -> None:
    """A unit that kills its worker process (SIGKILL, as a segfault would) gets worker_crash rows
    after being retried alone; the other units' rows are normal."""
    from audiocore.datasets import load_dataset

    utts = load_dataset(str(manifest))
    utts[1] = CrashingUtterance(utts[1])
    cfg = RunConfig(codecs="pcm", data=str(manifest), limit=None, out=tmp_path / "run", device="cpu",
                    resume=False, force=False, asr=None, cache_dir=tmp_path / "cache", perceptual=False, jobs=2)
    units, _ = unit_plan(utts, ["pcm"], {}, set())
    executor = ProcessExecutor(WorkerSetup(cfg=cfg, version=code_version()), jobs=2)
    try:
        rows = {r["utt_id"]: r for result in executor.map_units(units) for r in result.rows}
    finally:
        executor.close()
    assert set(rows) == set(IDS)
    crashed = rows[IDS[1]]
    assert crashed["status"] == "error" and crashed["error_reason"] == "worker_crash"
    assert crashed["error_transient"] is False and "died" in crashed["error"]
    assert all(rows[i]["status"] == "ok" for i in (IDS[0], IDS[2]))


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (pip install -e '.[ray]')")
def test_ray_executor_gives_the_rows_of_the_local_one(manifest, serial_rows, tmp_path) -> None:
    """A local Ray instance with 2 CPUs (two actors) produces the same rows as --jobs 1."""
    rows = _run(manifest, tmp_path / "run", tmp_path / "cache", "--executor", "ray", "--jobs", "2")
    assert value_differences(serial_rows, rows) == []
    execution = json.loads((tmp_path / "run" / "manifest.json").read_text())["execution"]
    assert execution["executor"] == "ray" and execution["workers"] == 2


def test_bad_jobs_and_ray_address_are_user_errors(manifest) -> None:
    code, _, stderr = call_main(["--codecs", "pcm", "--data", str(manifest), "--jobs", "0"])
    assert code == 2 and "--jobs must be 1 or more" in stderr
    code, _, stderr = call_main(["--codecs", "pcm", "--data", str(manifest), "--ray-address", "auto"])
    assert code == 2 and "--ray-address needs --executor ray" in stderr


def test_summary_does_not_depend_on_row_order(serial_rows, tmp_path) -> None:
    """Workers finish in any order; the summary (bootstrap CIs included) is computed on rows in a
    canonical order (codecs as the manifest lists them, utterances by id), so a shuffled results
    file gives the same summary.csv."""
    import random

    from benchmarks.report import write_reports

    shuffled = list(serial_rows)
    random.Random(1).shuffle(shuffled)
    texts = []
    run = tmp_path / "run"
    run.mkdir()
    for rows in (serial_rows, shuffled):
        (run / store.RESULTS_FILE).write_text("".join(store.dumps_row(r) + "\n" for r in rows))
        (run / store.MANIFEST_FILE).write_text(json.dumps({"codecs": [{"codec": c} for c in CODECS.split(",")]}))
        write_reports(run)
        texts.append((run / "summary.csv").read_text())
    assert texts[0] == texts[1]
