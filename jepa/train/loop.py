"""The one training loop of both stages, in the spirit of descript-audio-codec's ``State`` +
``train_loop``.

* :class:`Optim` is one optimiser's update, the same sequence for the stage-1 JEPA, the stage-2
  generator and the stage-2 discriminators: zero_grad -> scaled backward -> unscale -> clip
  (the gradient norm is measured even without clipping) -> lr of this step from the schedule ->
  optimiser step -> GradScaler update.
* :class:`State` holds what a step changes and a checkpoint stores: modules, optimisers with
  their schedules and scalers, the step and the wall clock.
* :func:`train_loop` runs steps until the last one: the stage's step function (forward, losses,
  ``Optim.step``) -> CSV row and progress bar -> collapse monitor every N steps (it may stop the
  run) -> checkpoint every ``--save-every`` steps, at the end and when ``--max-minutes`` is spent.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa.train.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, gather_rng_states, restore_rng_states,
                                   save_checkpoint)
from jepa.train.logs import LOG_NAME, PLOT_NAME, CsvLog, plot_log
from jepa.train.runtime import Runtime, barrier, broadcast_flag, mean_over_ranks
from jepa.train.schedule import LRSchedule

log = logging.getLogger("jepa.train")


@dataclass
class Clock:
    """Wall-clock bookkeeping, carried across resumes: `previous` seconds of earlier sessions."""

    start: float = field(default_factory=time.time)
    previous: float = 0.0

    def total(self) -> float:
        return self.previous + time.time() - self.start

    def session(self) -> float:
        return time.time() - self.start


@dataclass
class Optim:
    """One optimiser, its parameters, lr schedule, GradScaler and clip norm.

    Attributes:
        optimizer: e.g. AdamW; the lr of each parameter group as built is its base lr.
        params: the parameters whose gradient norm is measured and clipped.
        scaler: GradScaler (active for fp16 autocast only).
        schedule: factor of the base lrs per step.
        clip: max global gradient norm, None = no clipping.
        key / scaler_key: names of the optimiser and scaler states in the checkpoint.
    """

    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    clip: float | None
    key: str
    scaler_key: str
    base_lrs: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]

    def step(self, loss: torch.Tensor, step: int) -> float:
        """One update from `loss` at the 0-based optimiser step `step`.

        Returns:
            the global gradient norm before clipping (inf / NaN when fp16 overflowed; the
            GradScaler then skips the step).
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        # With max_norm = inf the gradients are multiplied by exactly 1: measured, not changed.
        norm = torch.nn.utils.clip_grad_norm_(self.params, math.inf if self.clip is None else self.clip)
        factor = self.schedule(step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(norm)

    @property
    def lr(self) -> float:
        """The lr of the first parameter group at the last step."""
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass
class State:
    """Everything training changes, and what a checkpoint holds.

    Attributes:
        stage: "stage1" | "stage2" (the checkpoint's ``stage``).
        modules: checkpoint key -> module (stage 1: ``model``; stage 2: ``codec``, ``mpd``, ``msd``).
        optims: name -> :class:`Optim`.
        step: optimiser steps done.
        clock: wall time of this and earlier sessions.
        extra: other checkpoint entries (config, data, world size, stage-1 summary, ...).
    """

    stage: str
    modules: dict[str, nn.Module]
    optims: dict[str, Optim]
    step: int = 0
    clock: Clock = field(default_factory=Clock)
    extra: dict[str, Any] = field(default_factory=dict)

    def checkpoint(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint content (format 2) with the gathered RNG states of every rank."""
        ckpt: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "stage": self.stage, "step": self.step,
                                "rng": rng, "wall_seconds": self.clock.total(), **self.extra}
        ckpt.update({key: m.state_dict() for key, m in self.modules.items()})
        for o in self.optims.values():
            ckpt[o.key] = o.optimizer.state_dict()
            ckpt[o.scaler_key] = o.scaler.state_dict()
        return ckpt

    def restore(self, ckpt: dict[str, Any], rt: Runtime) -> None:
        """Load modules, optimisers, scalers, step, wall time and this rank's RNG state."""
        for key, m in self.modules.items():
            m.load_state_dict(ckpt[key])
        for o in self.optims.values():
            o.optimizer.load_state_dict(ckpt[o.key])
            o.scaler.load_state_dict(ckpt[o.scaler_key])
        self.step, self.clock.previous = int(ckpt["step"]), float(ckpt["wall_seconds"])
        restore_rng_states(ckpt["rng"], rt)


@dataclass
class RunFolder:
    """OUT/: checkpoint, CSV log and plot of one run (rank 0 writes; csv_log is None elsewhere)."""

    out: Path
    csv_log: CsvLog | None
    plot_columns: tuple[str, ...]
    title: str

    def save(self, state: State, rt: Runtime) -> None:
        """Checkpoint (collective: every rank's RNG state is gathered), flush the log, replot."""
        rng = gather_rng_states(rt)
        if rt.is_main:
            save_checkpoint(state.checkpoint(rng), self.out / CHECKPOINT_NAME)
            self.csv_log.flush()
            plot_log(self.out / LOG_NAME, self.out / PLOT_NAME, self.plot_columns, self.title)
        barrier(rt)


class StopTraining(RuntimeError):
    """The collapse monitor stopped training (the message says why; a checkpoint was saved)."""


Monitor = Callable[[int], tuple[dict[str, float], str | None]]
"""A collapse monitor: step -> (values to log, a stop message or None); run on rank 0 only."""


def train_loop(state: State, step_fn: Callable[[State], dict[str, float]], *, total: int, run: RunFolder,
               rt: Runtime, save_every: int, max_minutes: float | None = None, monitor: Monitor | None = None,
               monitor_every: int = 0, progress: bool = True, postfix: tuple[str, ...] = ()) -> str | None:
    """Train until ``state.step == total``.

    Args:
        state: the run's :class:`State` (``step`` is advanced here).
        step_fn: one step: forward, losses and ``Optim.step`` of every optimiser; returns the
            scalar logs of this rank (averaged over ranks here).
        total: the last step.
        run: the run folder (checkpoint, log, plot).
        save_every: checkpoint period in steps; also saved at the last step and on a stop.
        max_minutes: stop with a checkpoint once this session has run this long.
        monitor / monitor_every: run `monitor` after every monitor_every-th step and the last
            one; its values join that step's CSV row, its stop message ends the run.
        progress / postfix: tqdm bar on rank 0, showing these log keys.
    Returns:
        None when the run ended at `total` or by --max-minutes, else the monitor's stop message.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, initial=state.step, desc=state.stage, disable=not (rt.is_main and progress),
               dynamic_ncols=True, mininterval=2.0)
    stop: str | None = None
    try:
        while state.step < total:
            t0 = time.time()
            logs = step_fn(state)
            state.step += 1
            row = {"step": state.step, **mean_over_ranks(logs, rt), "seconds": time.time() - t0}
            if monitor is not None and monitor_every > 0 and (state.step % monitor_every == 0 or state.step == total):
                values, message = monitor(state.step) if rt.is_main else ({}, None)
                row.update(values)
                if broadcast_flag(message is not None, rt):
                    stop = message or f"{state.stage}: stopped by the collapse monitor on rank 0"
            if rt.is_main:
                run.csv_log.write(row)
                bar.set_postfix({k: f"{row[k]:.4g}" for k in postfix if k in row}, refresh=False)
            bar.update(1)
            if stop is not None:
                run.save(state, rt)
                log.error("%s", stop)
                return stop
            out_of_time = max_minutes is not None and broadcast_flag(state.clock.session() >= 60.0 * max_minutes, rt)
            if state.step % save_every == 0 or state.step == total or out_of_time:
                run.save(state, rt)
            if out_of_time and state.step < total:
                log.info("%s: --max-minutes reached at step %d; continue with --resume", state.stage, state.step)
                break
    finally:
        bar.close()
    return None
