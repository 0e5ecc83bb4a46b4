"""Speed and footprint: wall-clock timing, real-time factors, peak memory (parameter counts:
``audiocore.params.count_parameters``).

* `Stopwatch(device)` times a block with `time.perf_counter`, calling
  `torch.cuda.synchronize` before and after when the device is CUDA, so queued kernels are
  counted in the block that launched them.
* Real-time factor (RTF) = wall seconds / audio seconds; below 1 is faster than real time.
  `median_rtf` drops warm-up utterances (first-call costs: lazy initialisation, kernel
  selection, caches) before taking the median.
* `peak_memory_mb` is the CUDA allocator's peak on GPU and the process's peak resident set size
  (`ru_maxrss`) on CPU -- two different quantities, named by `peak_memory_source`.
"""
from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import NamedTuple

import torch

from audiocore.machine import cpu_model


def _as_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: expected e.g. 'cpu', 'cuda', 'cuda:0'") from err


def synchronize(device: str | torch.device) -> None:
    """Wait for all queued work on `device` (no-op on CPU)."""
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Stopwatch:
    """Context manager measuring the wall time of its block, device-synchronised.

    Example::

        sw = Stopwatch("cuda")
        with sw:
            enc = codec.encode(wav)
        encode_s = sw.seconds

    Args:
        device: the device the timed work runs on ("cpu", "cuda", "cuda:1", ...).

    Attributes:
        seconds: wall time of the last completed block (s); NaN before the first one.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = _as_device(device)
        self.seconds = float("nan")
        self._start: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        synchronize(self.device)
        if self._start is None:
            raise RuntimeError("Stopwatch.__exit__ called without __enter__")
        self.seconds = time.perf_counter() - self._start
        self._start = None


def rtf(seconds: float, duration_s: float) -> float:
    """Real-time factor: wall `seconds` / audio `duration_s` (dimensionless; < 1 = faster than real time)."""
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a finite number of seconds > 0, got {duration_s}")
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    return seconds / duration_s


def exclude_warmup(values: Sequence[float], n_warmup: int) -> list[float]:
    """`values` in measurement order without the first `n_warmup` (warm-up) entries."""
    if n_warmup < 0:
        raise ValueError(f"n_warmup must be >= 0, got {n_warmup}")
    return list(values[n_warmup:])


class MedianRtf(NamedTuple):
    """Median real-time factor after warm-up exclusion.

    Attributes:
        value: the median RTF, NaN iff `error` is set.
        n_used: number of utterances the median is over.
        n_warmup: number of leading utterances excluded as warm-up.
        error: why `value` is NaN (None otherwise).
    """

    value: float
    n_used: int
    n_warmup: int
    error: str | None = None


def median_rtf(rtfs: Sequence[float], n_warmup: int = 1) -> MedianRtf:
    """Median of per-utterance RTFs (in measurement order), excluding the first `n_warmup`.

    NaN entries (failed utterances) are ignored. If only warm-up entries exist, the result is
    NaN with a reason rather than a warm-up-contaminated number.
    """
    kept = [r for r in exclude_warmup(rtfs, n_warmup) if not math.isnan(r)]
    if not kept:
        return MedianRtf(float("nan"), 0, n_warmup,
                         f"no timed utterance after excluding {n_warmup} warm-up of {len(rtfs)}")
    kept.sort()
    mid = len(kept) // 2
    med = kept[mid] if len(kept) % 2 else 0.5 * (kept[mid - 1] + kept[mid])
    return MedianRtf(med, len(kept), n_warmup)


def reset_peak_memory(device: str | torch.device) -> None:
    """Reset the CUDA allocator's peak counter (the CPU process peak cannot be reset)."""
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory_source(device: str | torch.device) -> str | None:
    """What `peak_memory_mb` measures on `device`, or None where nothing is measurable."""
    dev = _as_device(device)
    if dev.type == "cuda":
        return "torch.cuda.max_memory_allocated (tensors on this device since the last reset)"
    if dev.type == "cpu":
        return "process peak RSS (resource.getrusage ru_maxrss; whole process, since start)"
    return None


def peak_memory_mb(device: str | torch.device) -> float | None:
    """Peak memory in MiB (2^20 bytes): CUDA allocator peak on GPU; process peak RSS on CPU.

    Returns None for devices where no peak is measurable (e.g. "mps"). See `peak_memory_source`.
    """
    dev = _as_device(device)
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    if dev.type == "cpu":
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10
    return None


def device_description(device: str | torch.device) -> str:
    """One line naming the hardware and software that timings were measured on.

    E.g. ``"cuda:0 NVIDIA H100 80GB HBM3 (CUDA 12.8, torch 2.13.0)"`` or
    ``"cpu Intel(R) Xeon(R) ... (2 torch threads, 2 visible cores, torch 2.13.0)"``.
    """
    dev = _as_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        return f"cuda:{index} {name} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    if dev.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return (f"cpu {cpu_model()} ({torch.get_num_threads()} torch threads, {cores} visible cores, "
                f"torch {torch.__version__})")
    return f"{dev} (torch {torch.__version__})"
