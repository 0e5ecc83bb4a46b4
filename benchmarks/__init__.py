"""The benchmark: run codecs over speech, store per-utterance rows, summarise, check against the reference.

    python -m benchmarks.run --codecs all --limit 5      # the main job (benchmarks.run)
    python -m benchmarks.report RUN_DIR                  # summary tables and plots of a run
    python -m benchmarks.regress                         # CI: compare with results/reference

From Python: ``run_benchmark(RunConfig(...))`` runs, ``summarize(load_results(run_dir))`` gives the
per-codec table, ``write_reports(run_dir)`` writes it. Orchestration and I/O only: metric maths
lives in ``metrics``, codecs in ``baselines``, data loading in ``audiocore``.
"""
from __future__ import annotations

from metrics.asr.isa import pin_cpu_isa

# Before anything in this process runs a model: ONEDNN_MAX_CPU_ISA caps PyTorch's oneDNN
# convolutions (codecs, perceptual models) as well as CTranslate2's GEMMs, and is read once, at the
# first oneDNN call. Pinned here, every process of a run (driver, workers, Ray actors: they all
# import this package) computes on the same path, whatever ran before in it.
pin_cpu_isa()

from benchmarks.report import load_results, summarize, write_reports
from benchmarks.runconfig import RunConfig, UserError
from benchmarks.runner import run_benchmark

__all__ = ["RunConfig", "UserError", "load_results", "run_benchmark", "summarize", "write_reports"]
