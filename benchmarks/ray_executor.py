"""``--executor ray``: the work units of a run spread over Ray actors, on one machine or a cluster.

Each actor is one :class:`benchmarks.executor.Worker`: it builds the run's codecs and metric
models once and evaluates the units sent to it. The driver (the ``python -m benchmarks.run``
process) keeps at most two units in flight per actor, takes results as they finish and is the
only writer of ``results.jsonl``, so an interrupted cluster run resumes like a local one: rerun
the command. With a CUDA device each actor asks Ray for ``1 / jobs`` of a GPU, so the actors
share the GPUs Ray manages; on CPU each actor takes one CPU (``EVAL_THREADS``).

Requirements on a cluster (docs/performance.md): every node has this package installed at the
same code version (each actor checks its ``code_version`` against the driver's and refuses to
start otherwise) and reads the data and ``--cache-dir`` at the same paths (a shared file system).
An actor that dies (node lost, out of memory) is replaced and its units retried one at a time;
one that kills its actor alone gets ``worker_crash`` error rows, as with local workers.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from benchmarks.executor import UnitResult, Worker, WorkerSetup, WorkUnit, crash_rows
from benchmarks.runconfig import EVAL_THREADS, UserError

RAY_INSTALL_HINT = "pip install 'ray>=2.30' (or the project's extra: pip install -e '.[ray]')"


class _RayWorker:
    """The body of one Ray actor (wrapped with ``ray.remote`` at run time)."""

    def __init__(self, setup: WorkerSetup) -> None:
        from benchmarks import provenance

        mine = provenance.code_version()
        if mine.label != setup.version.label:
            raise RuntimeError(f"code version {mine.label} on this node differs from the driver's "
                               f"{setup.version.label}: install the same code on every node")
        self.worker = Worker(setup)

    def run(self, unit: WorkUnit) -> UnitResult:
        return self.worker.run(unit)


class RayExecutor:
    """Evaluates units on ``jobs`` Ray actors.

    Args:
        setup: the run every actor rebuilds.
        jobs: number of actors.
        address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a local Ray
            with ``jobs`` CPUs (and stops it at :meth:`close`).

    Raises:
        UserError: Ray is not installed, or the cluster cannot be reached.
    """

    def __init__(self, setup: WorkerSetup, jobs: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise UserError(f"--executor ray needs Ray ({exc}): {RAY_INSTALL_HINT}") from exc
        self._ray = ray
        self.setup = setup
        self.workers = jobs
        self._started_here = not ray.is_initialized()
        if self._started_here:
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=jobs * EVAL_THREADS, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # unreachable cluster, bad address
                raise UserError(f"--executor ray: could not start or join Ray"
                                f"{f' at {address}' if address else ''} ({type(exc).__name__}: {exc})") from exc
        gpu = setup.cfg.device.startswith("cuda")
        self._actor_class = ray.remote(num_cpus=EVAL_THREADS, num_gpus=1.0 / jobs if gpu else 0,
                                       max_restarts=0)(_RayWorker)
        self._actors: list[Any] = []

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.setup)

    def start(self) -> None:
        """Create the actors; they load their models while the driver runs the self-checks."""
        while len(self._actors) < self.workers:
            self._actors.append(self._new_actor())

    def map_units(self, units: Iterable[WorkUnit]) -> Iterator[UnitResult]:
        ray = self._ray
        self.start()
        source = iter(units)
        suspects: deque[WorkUnit] = deque()  # units whose actor died: retried alone
        retried: set[str] = set()
        inflight: dict[Any, tuple[int, WorkUnit]] = {}  # object ref -> (actor index, unit)
        while True:
            self._dispatch(source, suspects, inflight)
            if not inflight:
                return
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            i, unit = inflight.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayActorError:
                lost = [unit]
                for other, (j, u) in list(inflight.items()):
                    if j == i:
                        lost.append(u)
                        del inflight[other]
                self._actors[i] = self._new_actor()
                for u in lost:
                    if u.utt.id in retried:  # it ran alone and killed its actor again
                        yield UnitResult(u.utt.id, crash_rows(self.setup.version, u))
                    else:
                        retried.add(u.utt.id)
                        suspects.append(u)

    def _dispatch(self, source: Iterator[WorkUnit], suspects: deque[WorkUnit],
                  inflight: dict[Any, tuple[int, WorkUnit]]) -> None:
        """Send units: a suspect only when nothing else runs; otherwise two per actor."""
        if suspects:
            if not inflight:
                unit = suspects.popleft()
                inflight[self._actors[0].run.remote(unit)] = (0, unit)
            return
        busy = [0] * len(self._actors)
        for i, _ in inflight.values():
            busy[i] += 1
        for i, actor in enumerate(self._actors):
            while busy[i] < 2:
                unit = next(source, None)
                if unit is None:
                    return
                inflight[actor.run.remote(unit)] = (i, unit)
                busy[i] += 1

    def close(self) -> None:
        ray = self._ray
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone
                pass
        self._actors = []
        if self._started_here and ray.is_initialized():
            ray.shutdown()

