"""What machine this is: the CPU model and the instruction-set extensions it offers.

Recorded in every run's ``manifest.json`` (numerical kernels such as CTranslate2's int8 GEMMs
dispatch on these extensions, so results can depend on them) and used by the ASR backend to pin
the instruction set it runs on (``metrics.asr.backends``).
"""
from __future__ import annotations

import functools
import platform
import re

__all__ = ["ISA_FLAG_PATTERN", "cpu_isa_flags", "cpu_model"]

#: The /proc/cpuinfo flags that name SIMD / matrix extensions relevant to numerical kernels.
ISA_FLAG_PATTERN = re.compile(r"^(sse\w*|ssse3|avx.*|fma|f16c|amx.*|neon|asimd.*|sve.*)$")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name (e.g. ``"AMD EPYC 9R14"``), or the platform's processor string."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_isa_flags() -> list[str] | None:
    """The CPU's SIMD / matrix instruction-set flags (sorted, e.g. ``["avx", "avx2", "avx512f",
    ...]``), from /proc/cpuinfo; None where the operating system does not expose them."""
    info = _cpuinfo()
    flags = info.get("flags") or info.get("Features")
    if flags is None:
        return None
    return sorted(f for f in flags.split() if ISA_FLAG_PATTERN.match(f))
