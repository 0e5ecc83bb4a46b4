"""Execution of a run: data and codecs in, every (codec, utterance) row out, resumable.

:func:`run_benchmark` loads the utterances (``audiocore.datasets``) and the codecs
(``baselines.registry``), writes ``manifest.json`` (``benchmarks.provenance``), skips the pairs a
previous run of the same code version finished, evaluates the others as units of one utterance
each (``benchmarks.executor``: in this process, in ``--jobs N`` worker processes or on Ray actors;
each unit goes through :class:`benchmarks.evaluate.Runner`: load, resample, encode, decode,
metrics, ASR) and appends each row to ``results.jsonl`` as it comes back (``benchmarks.store``;
this process is the only writer), then writes the summary
tables (``benchmarks.report``) and ``report.html`` (``benchmarks.html_report``). Any exception for one pair becomes an error row; the run goes on.
"""
from __future__ import annotations

import datetime as _dt
from contextlib import ExitStack, closing
import importlib
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiocore.atomic import atomic_write_text
from audiocore.codec import Codec
from audiocore.hashing import file_sha256
from benchmarks import provenance, store
from benchmarks.components import RunParts, build_parts, load_utterances, log_stderr
from benchmarks.evaluate import load_source
from benchmarks.executor import Executor, ProcessExecutor, SerialExecutor, UnitResult, Worker, WorkerSetup, in_driver, unit_plan
from benchmarks.lock import RunLock, describe
from benchmarks.provenance import CodeVersion
from benchmarks.quality import QualityStage
from benchmarks.runconfig import EVAL_THREADS, SEED, RunConfig, UserError
from benchmarks.selfcheck import run_self_checks
from metrics import speed
from metrics.asr import AsrScorer


# --------------------------------------------------------------------------------------------
# Inputs


def self_check_waves(utts: Sequence[Any], checksums: dict[str, str | None]) -> list[tuple[str, Any, int]]:
    """(id, waveform, rate) of the first two readable utterances, for the codec self-checks."""
    waves = []
    for utt in utts:
        try:
            src = load_source(utt, checksums.get(utt.id))
        except Exception:  # an unreadable file gets its error rows later; try the next one
            continue
        waves.append((utt.id, src.wav, src.sr))
        if len(waves) == 2:
            break
    return waves


def failures_by_reason(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Error rows counted by ``error_reason`` (``<error_stage>:<error_type>`` for rows written
    before that column existed), most frequent first."""
    from collections import Counter

    counts = Counter(
        str(r.get("error_reason") or f"{r.get('error_stage', '?')}:{r.get('error_type', '?')}")
        for r in rows if r.get("status") == "error"
    )
    return dict(counts.most_common())


def make_executor(cfg: RunConfig, version: CodeVersion, parts: RunParts | None = None) -> Executor:
    """The executor ``cfg`` asks for: worker processes (``jobs > 1``), Ray, or, with ``parts``
    (the driver's built models), this process (``jobs == 1``)."""
    setup = WorkerSetup(cfg=cfg, version=version)
    if cfg.executor == "ray":
        from benchmarks.ray_executor import RayExecutor  # imports Ray only when asked for

        return RayExecutor(setup, cfg.jobs, address=cfg.ray_address)
    if cfg.jobs > 1:
        return ProcessExecutor(setup, cfg.jobs)
    if parts is None:
        raise ValueError("--jobs 1 evaluates in this process: give the driver's RunParts")
    return SerialExecutor(Worker(setup, parts))


@dataclass
class RunStats:
    """Counts of what one invocation did.

    Attributes:
        computed: rows whose reconstruction was computed now.
        from_cache: rows whose reconstruction came from the cache.
        resumed: (codec, utterance) pairs skipped because results.jsonl already had them.
        errors: error rows written now.
        failures: error rows of the whole results file (resumed ones included) by reason.
        skipped: (spec, reason) of unavailable codecs.
        wall_s: wall time of the invocation (s).
        summary: the Markdown summary printed at the end.
        cache_invalid: cache entries refused by their check (``benchmarks.cache_checks``) and recomputed.
        cache_invalid_reasons: the first reasons of those refusals.
        report_html: the line about ``report.html`` printed at the end ('' without a report).
    """

    computed: int = 0
    from_cache: int = 0
    resumed: int = 0
    errors: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    summary: str = ""
    cache_invalid: int = 0
    cache_invalid_reasons: list[str] = field(default_factory=list)
    report_html: str = ""


def _data_checksums(utts: Sequence[Any]) -> dict[str, str | None]:
    """SHA-256 of each utterance file (None where unreadable; its row will say why)."""
    out: dict[str, str | None] = {}
    for u in utts:
        try:  # only regular files: a FIFO or a device (/dev/zero) would block or never end
            out[u.id] = file_sha256(Path(u.path)) if stat.S_ISREG(os.stat(u.path).st_mode) else None
        except (OSError, ValueError):
            out[u.id] = None
    return out


def _prepare_results(cfg: RunConfig) -> Path:
    """The results file; without resume an existing one is moved aside to ``results.prev.jsonl``."""
    path = cfg.out / store.RESULTS_FILE
    if path.exists() and not cfg.resume:
        os.replace(path, cfg.out / "results.prev.jsonl")
    return path


def skipped_lines(skipped: Sequence[tuple[str, str]]) -> list[str]:
    """One line per distinct reason: specs that share a reason (the settings of one family without
    weights, say) are listed together instead of repeating a long message per setting."""
    by_reason: dict[str, list[str]] = {}
    for spec, reason in skipped:
        by_reason.setdefault(reason.removeprefix(f"{spec}: "), []).append(spec)
    return [f"skipped {', '.join(specs)}: {reason}" for reason, specs in by_reason.items()]


_print = log_stderr


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="row", desc="benchmark", dynamic_ncols=True, disable=None, file=sys.stderr)


def _this_version(rows: Iterable[Any], version: CodeVersion, weights: Mapping[str, str | None]) -> list[Any]:
    """The rows written by this ``code_version`` with the codec weights of this run: on resume every
    other row (ok or error) is redone, so a run never mixes results of two code versions, nor of
    two checkpoints behind one spec (``jepa-daam:PATH`` retrained in place). The cache key holds
    the same source digests and weights, so changed code or weights really recompute and
    unchanged ones hit the cache.

    Args:
        weights: codec name -> its ``weights_hash`` now (None: the codec has no weights file).
            A row without a ``weights_hash`` (an error row written where the weights were not
            known, e.g. a worker crash) is kept if it is an error row.
    """
    def same_weights(row: Any) -> bool:
        now = weights.get(row.get("codec"))
        if now is None:
            return True
        if "weights_hash" not in row:
            return row.get("status") == "error"
        return row["weights_hash"] == now

    return [row for row in rows if row.get("code_version") == version.label and same_weights(row)]


def _row_complete(asr: AsrScorer | None, quality: QualityStage | None = None) -> Callable[[Any], bool]:
    """Resume rule for ok rows: complete unless it lacks columns this version writes.

    Redone (the reconstruction comes from the cache, so this is cheap):

    * rows without ASR columns when ASR is available now;
    * rows without a perceptual or speaker column the run's protocol now computes;
    * token-codec rows written before rows carried ``vocab_sizes`` (needed by the report's
      codebook statistics), i.e. rows with a ``tokens_file`` but no ``vocab_sizes``.
    """
    def complete(row: Any) -> bool:
        if row.get("tokens_file") and row.get("vocab_sizes") is None:
            return False
        if quality is not None and any(col not in row for col in quality.columns):
            return False
        return asr is None or not asr.available or row.get("asr") == asr.spec
    return complete


def run_benchmark(cfg: RunConfig) -> RunStats:
    """Run every requested codec over every utterance; write results, manifest and summary.

    The run folder is locked first (``benchmarks.lock``): a second run on the same ``--out``
    raises ``LockHeld`` (a UserError naming the holder) before it reads or moves anything.
    """
    with RunLock(cfg.out) as lock:
        if lock.previous:
            _print(f"note: took over the lock of a run that is gone ({describe(lock.previous)})")
        return _run_benchmark(cfg)


def _run_benchmark(cfg: RunConfig) -> RunStats:
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    seeds = provenance.seed_everything(SEED)
    utts = load_utterances(cfg.data, cfg.limit)
    version = provenance.code_version()
    with ExitStack() as stack:
        if not in_driver(cfg):  # workers start loading their models while the driver loads its own
            executor = make_executor(cfg, version)
            stack.callback(executor.close)
            executor.start()
        parts = build_parts(cfg, log=_print, threads=EVAL_THREADS)
        if in_driver(cfg):
            executor = make_executor(cfg, version, parts)
        return _run_with(cfg, executor, parts, utts, version, started, seeds, phases, t0)


def _run_with(cfg: RunConfig, executor: Executor, parts: RunParts, utts: list[Any], version: CodeVersion,
              started: str, seeds: dict[str, int], phases: dict[str, float], t0: float) -> RunStats:
    codecs, asr, quality = parts.codecs, parts.asr, parts.quality
    stats = RunStats(skipped=list(parts.skipped))
    for line in skipped_lines(parts.skipped):
        _print(line)
    if not codecs:
        raise UserError(f"none of the requested codecs ({cfg.codecs}) is available (see the reasons above)")
    cfg.out.mkdir(parents=True, exist_ok=True)
    store.atomic_write_json(cfg.out / store.SKIPPED_FILE, [{"codec": s, "reason": r} for s, r in parts.skipped])
    checksums = _data_checksums(utts)
    phases["setup_s"] = time.perf_counter() - t0
    with closing(executor):  # workers stop however this block ends
        waves = self_check_waves(utts, checksums)
        clips = [checksums.get(uid) for uid, _, _ in waves]
        cache = store.ResultCache(cfg.cache_dir, read=not cfg.force)
        checks = run_self_checks(
            codecs, waves, cfg.out, log=lambda line: print(line, flush=True), cache=cache,
            key=lambda c: store.cache_key(kind="selfcheck", codec=c.name, weights=provenance.codec_weights_hash(c),
                                          code=version.codec, metrics=version.metrics, clips=clips))
        phases["self_check_s"] = time.perf_counter() - t0 - phases["setup_s"]
        manifest = provenance.manifest_dict(cfg, version, codecs, parts.skipped, asr, checksums, seeds, utts)
        manifest.update(started=started, status="running", protocol=parts.protocol.name,
                        substitutions=parts.substitutions,
                        offline=bool(cfg.offline or os.environ.get("HF_HUB_OFFLINE")),
                        perceptual=quality.info() if cfg.perceptual else None,
                        self_checks={name: rep.to_json() for name, rep in checks.items()})
        store.atomic_write_json(cfg.out / store.MANIFEST_FILE, manifest)

        results = _prepare_results(cfg)
        weights = {c.name: provenance.codec_weights_hash(c) for c in codecs}
        done = store.finished_keys(_this_version(store.load_rows(results), version, weights),
                                   _row_complete(asr, quality)) \
            if cfg.resume else set()
        units, stats.resumed = unit_plan(utts, [c.name for c in codecs], checksums, done)
        cache_counts = _CacheCounts()
        t_eval, eval_started_at = time.perf_counter(), time.time()
        with store.ResultsWriter(results) as writer, _progress(len(codecs) * len(utts)) as bar:
            bar.update(stats.resumed)
            for result in executor.map_units(units):
                for row in result.rows:
                    writer.append(row)
                    stats.errors += row["status"] == "error"
                    stats.computed += row["status"] == "ok" and not row.get("from_cache")
                    stats.from_cache += row["status"] == "ok" and bool(row.get("from_cache"))
                    bar.update(1)
                cache_counts.add(result, eval_started_at)
    phases["evaluate_s"] = time.perf_counter() - t_eval
    stats.failures = failures_by_reason(store.load_rows(results))
    stats.cache_invalid, stats.cache_invalid_reasons = cache_counts.invalid, cache_counts.invalid_reasons
    if cfg.report:
        t_report = time.perf_counter()
        stats.summary = write_summary(cfg.out)
        phases["summary_s"] = time.perf_counter() - t_report
    stats.wall_s = time.perf_counter() - t0
    manifest.update(status="finished", finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    wall_s=round(stats.wall_s, 3), rows_computed=stats.computed, rows_from_cache=stats.from_cache,
                    rows_resumed=stats.resumed, rows_error=stats.errors, failures_by_reason=stats.failures,
                    execution={"executor": cfg.executor, "workers": executor.workers, "units": len(units),
                               "load_s": round(cache_counts.load_s, 3),
                               "worker_start_wait_s": round(cache_counts.start_wait_s, 3),
                               "phases_s": {k: round(v, 3) for k, v in phases.items()}},
                    peak_memory_mb=speed.peak_memory_mb(cfg.device),
                    peak_memory_workers_mb=None if in_driver(cfg) else cache_counts.worker_peak_mb,
                    peak_memory_source=speed.peak_memory_source(cfg.device),
                    cache={"dir": str(cfg.cache_dir), "hits": cache_counts.hits, "misses": cache_counts.misses,
                           "invalid": cache_counts.invalid, "invalid_reasons": cache_counts.invalid_reasons,
                           "size_bytes": cache.size_bytes(), "entries": cache.n_entries()})
    store.atomic_write_json(cfg.out / store.MANIFEST_FILE, manifest)
    if cfg.report:  # after the final manifest, so the page shows the finished run's provenance
        stats.report_html = write_html_report(cfg, codecs, version)
    return stats


@dataclass
class _CacheCounts:
    """Cache lookups and file-reading time of the run, summed over the units (whichever process
    did them), the time workers were still loading their models after the evaluation began
    (``start_wait_s``, summed over workers) and the largest worker's peak RSS (MiB)."""

    hits: int = 0
    misses: int = 0
    invalid: int = 0
    invalid_reasons: list[str] = field(default_factory=list)
    load_s: float = 0.0
    start_wait_s: float = 0.0
    worker_peak_mb: float | None = None

    def add(self, result: UnitResult, eval_started_at: float) -> None:
        self.load_s += result.load_s
        if result.peak_rss_mb is not None:
            self.worker_peak_mb = max(self.worker_peak_mb or 0.0, result.peak_rss_mb)
        if result.worker_ready_at is not None:  # a worker's first unit: was it still loading?
            self.start_wait_s += max(0.0, result.worker_ready_at - eval_started_at)
        self.hits += result.cache.get("hits", 0)
        self.misses += result.cache.get("misses", 0)
        self.invalid += result.cache.get("invalid", 0)
        self.invalid_reasons += result.cache.get("invalid_reasons", [])[: max(0, 5 - len(self.invalid_reasons))]


# --------------------------------------------------------------------------------------------
# Summary


def write_summary(run_dir: Path) -> str:
    """Write summary.csv / summary.md for ``run_dir`` and return the Markdown table.

    Uses ``benchmarks.report.write_reports`` (bootstrap CIs, corpus WER, LaTeX, plots) when that
    module is importable; otherwise :func:`simple_summary`.
    """
    try:
        report = importlib.import_module("benchmarks.report")
    except ImportError:
        return simple_summary(run_dir)
    report.write_reports(run_dir)
    return (Path(run_dir) / "summary.md").read_text(encoding="utf-8")


def write_html_report(cfg: RunConfig, codecs: Sequence[Codec], version: CodeVersion) -> str:
    """Write ``report.html`` with its listening grid (``benchmarks.html_report``); returns a line
    naming the page and its size. The grid's reconstructions are cache hits of this run: the run's
    codec objects and code version make the same cache keys."""
    from benchmarks import html_report, listening

    audio = listening.RunAudio(cfg.out, cfg.cache_dir, codecs=codecs, version=version)
    page = html_report.write_run_report(cfg.out, listen=cfg.listen, audio=audio)
    listen_bytes = html_report.page_bytes(cfg.out) - page.stat().st_size
    return (f"report: {page} ({html_report.format_size(page.stat().st_size)} page + "
            f"{html_report.format_size(listen_bytes)} audio and spectrograms in {listening.LISTEN_DIR}/)")


def simple_summary(run_dir: Path) -> str:
    """Minimal fallback summary (means over ok rows, medians of RTF) -> summary.csv / summary.md."""
    import pandas as pd

    rows = store.load_rows(run_dir)
    df = pd.DataFrame(rows)
    cols = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "bitrate_measured", "bitrate_nominal",
            "tokens_per_s", "wer", "encode_rtf", "decode_rtf"]
    out = []
    for codec, g in df.groupby("codec", sort=False):
        ok = g[g["status"] == "ok"]
        rec: dict[str, Any] = {"codec": codec, "n_ok": len(ok), "n_failed": len(g) - len(ok)}
        for c in cols:
            vals = pd.to_numeric(ok[c], errors="coerce") if c in ok else pd.Series(dtype=float)
            rec[c] = vals.median() if c.endswith("_rtf") else vals.mean()
        out.append(rec)
    table = pd.DataFrame(out)
    atomic_write_text(Path(run_dir) / "summary.csv", table.to_csv(index=False))
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |\n"
                   for r in table.itertuples(index=False))
    md = header + body
    atomic_write_text(Path(run_dir) / "summary.md", md)
    return md
