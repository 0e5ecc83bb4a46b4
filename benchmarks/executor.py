"""Where the (codec, utterance) pairs of a run are evaluated: in this process, in worker
processes (``--jobs N``) or on a Ray cluster (``--executor ray``, :mod:`benchmarks.ray_executor`).

The unit of work is one utterance with the codecs still to do for it (:class:`WorkUnit`): the
file is read and resampled once, the original's transcript and perceptual scores are computed
once and reused by every codec. A :class:`Worker` builds the run's codecs and metric models once
(:func:`benchmarks.components.build_parts`) and turns units into rows
(:meth:`benchmarks.evaluate.Runner.evaluate`). Executors hand back :class:`UnitResult` objects as
they finish; only the driver writes ``results.jsonl``, so resume and the append-only guarantees
do not depend on the executor.

Results do not depend on the number of workers: every value is computed by the same code on the
same inputs with ``EVAL_THREADS`` (1) thread for torch, BLAS and CTranslate2 (:func:`eval_threads`),
whatever the executor; parallelism comes from the workers. With 2 threads per evaluation in one
process and 1 in each of two workers, ESTOI and the mel distance differed in the last bits
(9 of 12 rows); with one thread everywhere they are bit-identical (``tests/test_parallel.py``). A worker that dies (a
native crash, the out-of-memory killer) does not stop the run: the units it held are retried one
at a time in a fresh pool, and the one that kills its worker alone gets error rows
(``error_reason`` ``worker_crash``, :func:`crash_rows`).
"""
from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from audiocore.codec import Codec
from benchmarks import store
from benchmarks.components import RunParts, build_codecs, build_parts
from benchmarks.evaluate import Runner, error_columns, identity_columns, load_source
from benchmarks.provenance import CodeVersion
from benchmarks.runconfig import EVAL_THREADS, SEED, RunConfig
from metrics import speed


@dataclass(frozen=True)
class WorkUnit:
    """One utterance and the codecs (by name) still to evaluate on it.

    Attributes:
        utt: the ``audiocore.datasets.Utterance``.
        checksum: SHA-256 of its file, or None when it could not be read (its rows say why).
        codecs: names of the codecs to run, in the run's order.
    """

    utt: Any
    checksum: str | None
    codecs: tuple[str, ...]


@dataclass
class UnitResult:
    """The rows of one unit and what it cost.

    Attributes:
        utt_id: the utterance.
        rows: one results row per codec of the unit (ok or error), in the unit's order.
        load_s: seconds spent reading and resampling the file.
        cache: counts of this unit's cache lookups (``hits``, ``misses``, ``invalid``) and the
            reasons of invalid entries (``invalid_reasons``).
        worker_ready_at: for the first unit of a worker, the wall-clock time (``time.time()``) at
            which the worker had loaded its models; None otherwise.
        peak_rss_mb: peak resident set size of the process that evaluated the unit so far (MiB).
    """

    utt_id: str
    rows: list[dict[str, Any]]
    load_s: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)
    worker_ready_at: float | None = None
    peak_rss_mb: float | None = None


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to rebuild the driver's run (picklable, sent once per worker).

    Attributes:
        cfg: the run configuration.
        version: the driver's code version (cache keys and the ``code_version`` column).

    Workers build the codecs of ``cfg.codecs`` themselves, so they can start loading before the
    driver has built its own. Units name their codecs; one a worker lacks gets error rows.
    """

    cfg: RunConfig
    version: CodeVersion


@contextmanager
def eval_threads(n: int = EVAL_THREADS) -> Iterator[None]:
    """Run the block with ``n`` threads in torch and in the BLAS / OpenMP pools numpy and scipy use
    (``threadpoolctl``); the previous settings come back afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


class Worker:
    """Turns work units into rows; one per process (or Ray actor).

    Args:
        setup: the run to rebuild.
        parts: already-built codecs and models to use (the driver's own, for ``--jobs 1``); None:
            build them here from ``setup`` (quietly: the driver has already said what it had to).
    """

    def __init__(self, setup: WorkerSetup, parts: RunParts | None = None) -> None:
        import torch

        from benchmarks import provenance

        self.setup = setup
        self.unavailable: dict[str, str] = {}
        if parts is None:
            torch.set_num_threads(EVAL_THREADS)
            provenance.seed_everything(SEED)
            parts = build_parts(setup.cfg, log=lambda msg: None, threads=EVAL_THREADS, with_codecs=False)
            parts.codecs = self._rebuild(setup)
        self.codecs: dict[str, Codec] = {c.name: c for c in parts.codecs}
        cache = store.ResultCache(setup.cfg.cache_dir, read=not setup.cfg.force)
        self.runner = Runner(setup.cfg, setup.version, cache, parts.asr, parts.quality)
        self._ready_at: float | None = time.time()  # reported with the first unit

    def _rebuild(self, setup: WorkerSetup) -> list[Codec]:
        """The run's codecs, built again from ``cfg.codecs``; one that fails here gets error rows."""
        codecs, skipped = build_codecs(setup.cfg.codecs, setup.cfg.device, setup.cfg.weights_dir)
        self.unavailable.update(dict(skipped))
        return codecs

    def _cache_counts(self) -> dict[str, Any]:
        cache = self.runner.cache
        return {"hits": cache.hits, "misses": cache.misses, "invalid": cache.invalid,
                "invalid_reasons": list(cache.invalid_reasons)}

    def run(self, unit: WorkUnit) -> UnitResult:
        """Evaluate every codec of ``unit`` on its utterance (never raises for one bad pair), with
        :data:`EVAL_THREADS` threads."""
        with eval_threads():
            result = self._run(unit)
        result.worker_ready_at, self._ready_at = self._ready_at, None
        result.peak_rss_mb = speed.peak_memory_mb("cpu")
        return result

    def _run(self, unit: WorkUnit) -> UnitResult:
        t0 = time.perf_counter()
        before = self._cache_counts()
        rows: list[dict[str, Any]] = []
        codecs = [self.codecs.get(name) for name in unit.codecs]
        for name, codec in zip(unit.codecs, codecs):
            if codec is None:
                reason = self.unavailable.get(name, "not built in this worker")
                rows += unit_error_rows(self.setup.version, unit.utt, [name], f"{name} could not be built in the "
                                        f"worker: {reason}", stage="setup", error_type="CodecUnavailable",
                                        reason="setup:CodecUnavailable", transient=True)
        codecs_ok = [c for c in codecs if c is not None]
        load_s = 0.0
        if codecs_ok:
            try:
                src = load_source(unit.utt, unit.checksum)
            except Exception as exc:  # unreadable input: one error row per codec
                rows += [self.runner.error_row(c, unit.utt, exc, "load") for c in codecs_ok]
            else:
                load_s = time.perf_counter() - t0
                rows += [self.runner.evaluate(c, src) for c in codecs_ok]
        after = self._cache_counts()
        cache = {k: after[k] - before[k] for k in ("hits", "misses", "invalid")}
        cache["invalid_reasons"] = after["invalid_reasons"][len(before["invalid_reasons"]):]
        order = {name: i for i, name in enumerate(unit.codecs)}
        rows.sort(key=lambda r: order.get(r["codec"], len(order)))
        return UnitResult(unit.utt.id, rows, load_s=load_s, cache=cache)


def unit_error_rows(version: CodeVersion, utt: Any, names: Sequence[str], message: str, *, stage: str,
                    error_type: str, reason: str, transient: bool) -> list[dict[str, Any]]:
    """Error rows of codecs ``names`` on ``utt`` for a failure outside the codec and metrics (a
    codec the worker could not build, a worker that died); the columns of ``Runner.error_row``."""
    errors = error_columns(utt, message, stage=stage, error_type=error_type, reason=reason, transient=transient)
    return [{**identity_columns(name, utt, version.label), **errors} for name in names]


def crash_rows(version: CodeVersion, unit: WorkUnit) -> list[dict[str, Any]]:
    """Error rows for a unit whose worker died on it while running alone. Not transient: the same
    input would kill the worker again on resume (``--force`` or a fixed codec redoes it)."""
    return unit_error_rows(version, unit.utt, unit.codecs,
                           "the worker process died evaluating this utterance (native crash or out of memory)",
                           stage="worker", error_type="WorkerCrash", reason="worker_crash", transient=False)


class Executor(Protocol):
    """Evaluates work units somewhere; results come back as units finish (any order)."""

    workers: int

    def start(self) -> None:
        """Start the workers (they load their models while the driver does other work)."""

    def map_units(self, units: Iterable[WorkUnit]) -> Iterator[UnitResult]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """``--jobs 1``: every unit in this process, with the driver's own codecs and models."""

    workers = 1

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def start(self) -> None:
        pass

    def map_units(self, units: Iterable[WorkUnit]) -> Iterator[UnitResult]:
        for unit in units:
            yield self.worker.run(unit)

    def close(self) -> None:
        pass


# Worker-process side of the pool: one Worker per process, built by the initializer.
_PROCESS_WORKER: Worker | None = None


def _init_process(setup: WorkerSetup) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = Worker(setup)


def _ready() -> bool:
    return _PROCESS_WORKER is not None


def _run_in_process(unit: WorkUnit) -> UnitResult:
    assert _PROCESS_WORKER is not None, "worker process not initialised"
    return _PROCESS_WORKER.run(unit)


class ProcessExecutor:
    """``--jobs N`` (N > 1): N worker processes (``spawn``: no inherited thread pools or CUDA
    state), each with its own copy of the models.

    At most ``2 N`` units are in flight, so memory does not grow with the data set. When a worker
    dies, the units in flight are retried one at a time in a fresh pool; one that kills its worker
    alone gets :func:`crash_rows`.
    """

    def __init__(self, setup: WorkerSetup, jobs: int) -> None:
        import multiprocessing

        self.setup = setup
        self.workers = jobs
        self._context = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=self._context, initializer=_init_process,
                                         initargs=(self.setup,))
        return self._pool

    def start(self) -> None:
        """Spawn the workers now: each loads its models while the driver runs the self-checks."""
        pool = self._pool or self._new_pool()
        for _ in range(self.workers):
            pool.submit(_ready)

    def map_units(self, units: Iterable[WorkUnit]) -> Iterator[UnitResult]:
        suspects: deque[WorkUnit] = deque()  # units in flight when a worker died: one at a time
        source = iter(units)
        pool = self._pool or self._new_pool()
        inflight: dict[Future[UnitResult], WorkUnit] = {}
        while True:
            limit = 1 if suspects else 2 * self.workers
            while len(inflight) < limit:
                unit = suspects.popleft() if suspects else next(source, None)
                if unit is None:
                    break
                inflight[pool.submit(_run_in_process, unit)] = unit
            if not inflight:
                return
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                unit = inflight.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    if limit == 1:  # it ran alone: this unit killed its worker
                        yield UnitResult(unit.utt.id, crash_rows(self.setup.version, unit))
                    else:
                        suspects.append(unit)
                except Exception as exc:  # the unit could not be sent or its result not returned
                    yield UnitResult(unit.utt.id, unit_error_rows(
                        self.setup.version, unit.utt, unit.codecs, f"{type(exc).__name__}: {exc}", stage="worker",
                        error_type=type(exc).__name__, reason=f"worker:{type(exc).__name__}", transient=True))
            if broken:
                suspects.extend(inflight.values())
                inflight.clear()
                pool = self._new_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def in_driver(cfg: RunConfig) -> bool:
    """True when units are evaluated in the driver process (``--jobs 1``, local executor)."""
    return cfg.executor == "local" and cfg.jobs <= 1


def unit_plan(utts: Sequence[Any], codec_names: Sequence[str], checksums: dict[str, str | None],
              done: set[tuple[str, str]]) -> tuple[list[WorkUnit], int]:
    """The units still to do (codecs not yet in ``done``), longest utterance first so that workers
    finish together, and the number of (codec, utterance) pairs resumed."""
    units, resumed = [], 0
    for utt in utts:
        todo = tuple(name for name in codec_names if (name, utt.id) not in done)
        resumed += len(codec_names) - len(todo)
        if todo:
            units.append(WorkUnit(utt=utt, checksum=checksums.get(utt.id), codecs=todo))
    units.sort(key=lambda u: -(u.utt.duration_s or 0.0))  # stable: manifest order among equals
    return units, resumed
