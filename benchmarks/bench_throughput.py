"""Throughput of the benchmark runner: seconds of audio evaluated per wall-second, for 1..N workers.

    python -m benchmarks.bench_throughput                                  # 20 eval utterances, 3 classical codecs, jobs 1 and 2
    python -m benchmarks.bench_throughput --jobs 1 2 4 --limit 40 --perceptual
    python -m benchmarks.bench_throughput --executor ray --jobs 2

For each worker count the same job runs as a user would run it, ``python -m benchmarks.run ...
--jobs N`` in a fresh process with a fresh cache (nothing comes from a previous run), and the
wall time of the whole command is measured, start-up and report included. Printed per worker
count (and written to ``OUT/throughput.json`` and ``OUT/throughput.md``):

* **audio s / wall s**: (sum of utterance durations x codecs) / wall time of the command, the
  figure of merit of issue 19 (``--jobs 1`` of this job, 4 codecs with ASR: 4.1 before the runner
  ran anything in parallel);
* the split of the evaluation phase's worker time (``evaluate_s`` x workers) into codecs
  (``encode_s`` + ``decode_s``), signal metrics (``signal_s``), ASR (``asr_s``), perceptual and
  speaker models (``perceptual_s``), reading files, **worker start-up** (workers still loading
  their models after the evaluation began: a fixed cost per run) and the **runner** itself (the
  rest: resampling, cache, dispatch, writing rows, workers idle at the end);
* the fixed costs outside the evaluation: Python start-up and imports, setup (data, codec and
  model loading, checksums), self-checks, summary tables, ``report.html``;
* peak memory of the driver and of the largest worker (RSS, MiB);
* whether the metric values equal those of the first worker count (timing columns excluded;
  ESTOI may differ in the last bits: docs/performance.md says why).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from audiocore.atomic import atomic_write_text
from audiocore.machine import cpu_model
from benchmarks.runconfig import TIMING_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_EVAL = REPO_ROOT.parent / "shared" / "data" / "eval" / "manifest.tsv"

#: Row columns that hold per-row stage times (seconds), by stage name.
STAGE_COLUMNS = {"codecs": ("encode_s", "decode_s"), "signal metrics": ("signal_s",), "ASR": ("asr_s",),
                 "perceptual + speaker": ("perceptual_s",)}
#: Columns that may differ between runs without the metric values differing.
VOLATILE = (*TIMING_COLUMNS, "from_cache")
#: Columns allowed to differ in the last bits: numpy's reductions inside pystoi's ESTOI depend
#: on memory alignment (docs/performance.md); compared with this absolute tolerance.
ULP_COLUMNS = {"estoi": 1e-12}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_throughput", description=__doc__.split("\n")[0])
    p.add_argument("--codecs", default="pcm,opus@6k,codec2@1200", help="codec specs (default: %(default)s)")
    p.add_argument("--data", default=str(SHARED_EVAL) if SHARED_EVAL.exists() else "default",
                   help="manifest or folder (default: ../shared/data/eval if present, else 'default')")
    p.add_argument("--limit", type=int, default=20, help="utterances (default: %(default)s)")
    p.add_argument("--jobs", type=int, nargs="+", default=None,
                   help="worker counts to measure (default: 1 and the usable cores)")
    p.add_argument("--perceptual", action="store_true", help="include the perceptual and speaker models")
    p.add_argument("--no-asr", action="store_true", help="without ASR")
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--out", type=Path, default=Path("runs") / "throughput", help="output folder (default: %(default)s)")
    return p.parse_args(argv)


def run_once(args: argparse.Namespace, jobs: int, out: Path) -> dict[str, Any]:
    """One ``python -m benchmarks.run`` in a fresh process and cache; its timings and rows."""
    cache = Path(tempfile.mkdtemp(prefix="throughput-cache-"))
    cmd = [sys.executable, "-m", "benchmarks.run", "--codecs", args.codecs, "--data", args.data,
           "--limit", str(args.limit), "--out", str(out), "--cache-dir", str(cache), "--force",
           "--jobs", str(jobs), "--executor", args.executor, "--offline"]
    cmd += [] if args.perceptual else ["--no-perceptual"]
    cmd += ["--no-asr"] if args.no_asr else []
    env = dict(os.environ, TQDM_DISABLE="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.run --jobs {jobs} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    return {"jobs": jobs, "wall_s": wall, "manifest": manifest, "rows": rows, "command": " ".join(cmd[1:]),
            "out": str(out)}


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Throughput, the split of worker time and the fixed costs of one run."""
    rows, manifest, wall = run["rows"], run["manifest"], run["wall_s"]
    ok = [r for r in rows if r.get("status") == "ok"]
    audio_s = sum(float(r["duration_s"]) for r in ok)
    execution = manifest["execution"]
    phases = execution["phases_s"]
    workers = int(execution["workers"])
    worker_time = phases["evaluate_s"] * workers
    split = {name: sum(float(r.get(c) or 0.0) for r in ok for c in cols) for name, cols in STAGE_COLUMNS.items()}
    split["reading files"] = float(execution.get("load_s", 0.0))
    split["worker start-up"] = float(execution.get("worker_start_wait_s", 0.0))
    split["runner"] = max(0.0, worker_time - sum(split.values()))
    fixed_start = split["worker start-up"] / workers
    fixed = {"start-up and imports": wall - float(manifest["wall_s"]) - _report_s(run),
             "setup": phases.get("setup_s", 0.0), "self-checks": phases.get("self_check_s", 0.0),
             "worker start-up": fixed_start, "summary tables": phases.get("summary_s", 0.0),
             "report.html": _report_s(run)}
    return {
        "jobs": run["jobs"], "workers": workers, "wall_s": wall, "rows_ok": len(ok), "rows": len(rows),
        "audio_s": audio_s, "audio_s_per_wall_s": audio_s / wall, "evaluate_s": phases["evaluate_s"],
        "audio_s_per_evaluate_s": audio_s / phases["evaluate_s"],
        "worker_time_share": {k: v / worker_time for k, v in split.items()},
        "runner_share_of_wall": split["runner"] / workers / wall,
        "fixed_s": fixed, "fixed_share_of_wall": sum(fixed.values()) / wall,
        "peak_rss_driver_mb": manifest.get("peak_memory_mb"),
        "peak_rss_worker_mb": manifest.get("peak_memory_workers_mb"),
        "command": run["command"],
    }


def _report_s(run: dict[str, Any]) -> float:
    """Seconds spent after the final manifest (report.html): the page's mtime minus the manifest's."""
    out = Path(run["out"])
    page, manifest = out / "report.html", out / "manifest.json"
    if not (page.exists() and manifest.exists()):
        return 0.0
    return max(0.0, page.stat().st_mtime - manifest.stat().st_mtime)


def value_differences(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """Columns whose values differ between two runs' rows (by codec and utterance), timing
    columns excluded and :data:`ULP_COLUMNS` compared with their tolerance."""
    def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["codec"], r["utt_id"]): r for r in rows}

    ka, kb = keyed(a), keyed(b)
    if ka.keys() != kb.keys():
        return [f"different (codec, utterance) pairs: {sorted(set(ka) ^ set(kb))[:3]}"]
    out = []
    for key, ra in ka.items():
        rb = kb[key]
        for col in sorted(set(ra) | set(rb)):
            if col in VOLATILE:
                continue
            x, y = ra.get(col), rb.get(col)
            if x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
                continue
            tol = ULP_COLUMNS.get(col)
            if tol is not None and isinstance(x, float) and isinstance(y, float) and abs(x - y) <= tol:
                continue
            out.append(f"{key[0]} {key[1]} {col}: {x!r} != {y!r}")
    return out


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The table of docs/performance.md for these results."""
    base = results[0]
    lines = [f"Job: `{base['command']}` (worker count varied), {base['rows_ok']} rows, "
             f"{base['audio_s'] / max(1, len(args.codecs.split(','))):.1f} s of speech per codec; "
             f"machine: {cpu_model()}, {os.cpu_count()} cores.", "",
             "| workers | wall s | audio s / wall s | speed-up | evaluation: audio s / s | runner share of wall | "
             "fixed costs share | peak RSS driver / worker MiB | values equal |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        worker_mb = r["peak_rss_worker_mb"]
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.1f} | {r['audio_s_per_wall_s']:.1f} | "
            f"{base['wall_s'] / r['wall_s']:.2f}x | {r['audio_s_per_evaluate_s']:.1f} | "
            f"{100 * r['runner_share_of_wall']:.1f} % | {100 * r['fixed_share_of_wall']:.1f} % | "
            f"{r['peak_rss_driver_mb']:.0f} / {'-' if worker_mb is None else f'{worker_mb:.0f}'} | "
            f"{r.get('values_equal', '-')} |")
    lines += ["", "Split of the evaluation phase's worker time (evaluate_s x workers):", "",
              "| workers | " + " | ".join(base["worker_time_share"]) + " |",
              "|---|" + "---|" * len(base["worker_time_share"])]
    for r in results:
        lines.append(f"| {r['workers']} | " + " | ".join(f"{100 * v:.1f} %" for v in r["worker_time_share"].values()) + " |")
    lines += ["", "Fixed costs (s):", "", "| workers | " + " | ".join(base["fixed_s"]) + " |",
              "|---|" + "---|" * len(base["fixed_s"])]
    for r in results:
        lines.append(f"| {r['workers']} | " + " | ".join(f"{v:.1f}" for v in r["fixed_s"].values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from benchmarks.components import usable_cores

    jobs = args.jobs or sorted({1, usable_cores()})
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# load average before: {os.getloadavg()[0]:.2f} (a busy machine moves these numbers)", flush=True)
    runs, results = [], []
    for n in jobs:
        run = run_once(args, n, args.out / f"jobs{n}")
        summary = summarise(run)
        if runs:
            diffs = value_differences(runs[0]["rows"], run["rows"])
            summary["values_equal"] = "yes" if not diffs else f"no ({len(diffs)})"
            summary["value_differences"] = diffs[:20]
        runs.append(run)
        results.append(summary)
        print(f"jobs {n}: {summary['wall_s']:.1f} s wall, {summary['audio_s_per_wall_s']:.1f} s of audio per wall-s, "
              f"runner {100 * summary['runner_share_of_wall']:.1f} % of wall", flush=True)
    table = markdown(results, args)
    atomic_write_text(args.out / "throughput.json", json.dumps(results, indent=2))
    atomic_write_text(args.out / "throughput.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
