"""Speed and footprint helpers: Stopwatch, RTF, warm-up exclusion, parameter counts, peak memory."""
from __future__ import annotations

import math
import time

import pytest
import torch

from audiocore.params import count_parameters
from metrics.speed import (
    Stopwatch,
    device_description,
    exclude_warmup,
    median_rtf,
    peak_memory_mb,
    peak_memory_source,
    reset_peak_memory,
    rtf,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_stopwatch_measures_a_known_sleep():
    sw = Stopwatch("cpu")
    assert math.isnan(sw.seconds)
    with sw:
        time.sleep(0.2)
    assert 0.2 <= sw.seconds < 0.3  # sleep never returns early; 100 ms slack for a loaded machine
    with sw:  # reusable: each block replaces the reading
        pass
    assert 0 <= sw.seconds < 0.05


def test_stopwatch_records_time_even_when_the_block_raises():
    sw = Stopwatch()
    with pytest.raises(KeyError):
        with sw:
            time.sleep(0.05)
            raise KeyError("boom")
    assert sw.seconds >= 0.05


def test_invalid_device_is_a_value_error():
    with pytest.raises(ValueError, match="invalid device"):
        Stopwatch("gpu0")


def test_rtf():
    assert rtf(0.5, 2.0) == 0.25
    with pytest.raises(ValueError, match="duration_s"):
        rtf(1.0, 0.0)
    with pytest.raises(ValueError, match="seconds"):
        rtf(-1.0, 1.0)


def test_median_rtf_excludes_warmup():
    rtfs = [9.0, 0.3, 0.1, 0.2]  # first call pays initialisation
    assert exclude_warmup(rtfs, 1) == [0.3, 0.1, 0.2]
    m = median_rtf(rtfs, n_warmup=1)
    assert (m.value, m.n_used, m.n_warmup, m.error) == (0.2, 3, 1, None)
    assert median_rtf([0.4, 0.1, 0.2, 0.3], n_warmup=0).value == pytest.approx(0.25)  # even count
    assert median_rtf([9.0, float("nan"), 0.5], n_warmup=1).value == 0.5  # failed utterances ignored


def test_median_rtf_with_only_warmup_is_nan_with_reason():
    m = median_rtf([1.0], n_warmup=1)
    assert math.isnan(m.value) and m.n_used == 0 and "warm-up" in m.error
    with pytest.raises(ValueError, match="n_warmup"):
        median_rtf([1.0], n_warmup=-1)


def test_count_parameters():
    lin = torch.nn.Linear(3, 4)  # 3*4 + 4
    assert count_parameters(lin) == 16
    shared = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)  # the same module twice: counted once
    assert count_parameters(shared) == 16
    frozen = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    frozen[0].requires_grad_(False)
    assert count_parameters(frozen) == 16 + 10
    assert count_parameters(frozen, trainable_only=True) == 10
    with pytest.raises(TypeError, match="torch.nn.Module"):
        count_parameters("not a module")  # type: ignore[arg-type]


def _proc_status_mib(key: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    pytest.skip(f"/proc/self/status has no {key}")


def test_cpu_peak_memory_is_the_process_high_water_mark():
    peak = peak_memory_mb("cpu")
    # VmHWM is the kernel's peak RSS: an independent reading of the same quantity.
    assert peak == pytest.approx(_proc_status_mib("VmHWM"), rel=0.05)
    assert peak >= _proc_status_mib("VmRSS") * 0.95
    assert "ru_maxrss" in peak_memory_source("cpu")


def test_unmeasurable_device_gives_none():
    assert peak_memory_mb("meta") is None and peak_memory_source("meta") is None
    reset_peak_memory("cpu")  # no-op, must not raise


def test_device_description_cpu():
    text = device_description("cpu")
    assert text.startswith("cpu ") and f"torch {torch.__version__}" in text


@pytest.mark.gpu
@needs_cuda
def test_cuda_stopwatch_synchronises():
    x = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    sw = Stopwatch("cuda")
    with sw:
        for _ in range(20):
            x = x @ x
            x = x / x.norm()
    # Without synchronisation the block would return after launching kernels (~tens of us).
    with Stopwatch("cpu") as unsynced:
        for _ in range(20):
            x = x @ x
            x = x / x.norm()
    torch.cuda.synchronize()
    assert sw.seconds > 5 * unsynced.seconds


@pytest.mark.gpu
@needs_cuda
def test_cuda_peak_memory():
    reset_peak_memory("cuda")
    x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
    assert peak_memory_mb("cuda") >= 64
    del x
    assert device_description("cuda").startswith("cuda:")
