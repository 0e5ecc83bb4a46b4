"""Where a training process runs: device, DDP process group, mixed precision, seeds.

Under ``torchrun`` (env ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``) :func:`setup_runtime`
creates the process group (nccl on CUDA, gloo on the CPU); without it the run is one process.
Mixed precision (``--amp bf16|fp16``) is used on CUDA only; fp16 gets a GradScaler.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from audiocore.device import resolve_device as _resolve_device

log = logging.getLogger("jepa.train")

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class Runtime:
    """Where this process runs.

    Attributes:
        device: torch device of this process.
        rank / world_size / local_rank: DDP coordinates (0 / 1 / 0 without torchrun).
        amp_dtype: autocast dtype on CUDA (torch.bfloat16 / torch.float16) or None (FP32).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Map "auto" | "cpu" | "cuda" | "cuda:N" to a device (cuda:local_rank under torchrun).

    Raises:
        ValueError: an invalid name, or CUDA named where there is none (the message names the
            option and the valid values).
    """
    try:
        return _resolve_device(name, local_rank=local_rank)
    except ValueError as err:
        raise ValueError(f"--device {name}: {err}") from None


def setup_runtime(device: str = "auto", amp: str = "auto") -> Runtime:
    """Create the process group when launched by torchrun (env RANK / WORLD_SIZE), else one process.

    Args:
        device: "auto" | "cpu" | "cuda" | "cuda:N".
        amp: "auto" (bf16 on CUDA if supported, else fp16; off on CPU) | "bf16" | "fp16" | "off".
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"--amp {amp!r} is not valid; use auto, bf16, fp16 or off")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    amp_dtype: torch.dtype | None = None
    if dev.type == "cuda" and amp != "off":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            amp_dtype = torch.bfloat16
        else:
            amp_dtype = torch.float16
    elif amp in ("bf16", "fp16"):
        log.warning("--amp %s ignored on %s: mixed precision is used on CUDA only", amp, dev)
    return Runtime(dev, rank, world_size, local_rank, amp_dtype)


def autocast(rt: Runtime) -> contextlib.AbstractContextManager:
    """Autocast context for model forwards (a no-op on CPU / FP32)."""
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=rt.device.type, dtype=rt.amp_dtype)


def make_scaler(rt: Runtime) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 autocast."""
    return torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)


def mean_over_ranks(values: dict[str, float], rt: Runtime) -> dict[str, float]:
    """Average scalar logs over DDP ranks (identity in one process)."""
    if not rt.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return {k: float(v) / rt.world_size for k, v in zip(keys, t.tolist())}


def broadcast_flag(flag: bool, rt: Runtime) -> bool:
    """Rank 0's `flag` on every rank (identity in one process)."""
    if not rt.distributed:
        return flag
    t = torch.tensor([float(flag)], device=rt.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across processes and runs)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def ddp(module: nn.Module, rt: Runtime) -> nn.Module:
    """`module` wrapped in DistributedDataParallel under DDP, else itself."""
    if not rt.distributed:
        return module
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
