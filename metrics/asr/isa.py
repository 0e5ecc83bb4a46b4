"""One instruction-set path for CTranslate2 on every x86-64 CPU, so transcripts are machine-independent.

CTranslate2 (behind faster-whisper) computes Whisper's int8 layers with kernels chosen at run
time by the CPU's instruction sets, in three places:

* its own kernels (quantisation, activations...) dispatch on ``CT2_FORCE_CPU_ISA`` or, unset,
  on the best ISA it trusts (AVX2 on the CPUs measured here);
* its int8 GEMMs run in Intel MKL on Intel CPUs and in oneDNN elsewhere (``CT2_USE_MKL``);
* MKL and oneDNN each dispatch again: AVX-512 VNNI / AMX where present, AVX2 (with saturating
  16-bit intermediate sums) otherwise; oneDNN's ceiling is ``ONEDNN_MAX_CPU_ISA``.

Measured on the regression subset (6 utterances x 8 codecs, Whisper tiny.en int8): forcing any
one of these to another value changes up to 11 of 48 transcripts, and the corpus rates by up to
6 words of WER, 27 characters of CER and 5 words of dWER (docs/asr.md, "Instruction sets").
:data:`PINNED` fixes all three to one path that every x86-64 CPU with AVX2 runs identically:
oneDNN (also on Intel CPUs) at AVX2. The variables are read when the first model is loaded, so
:func:`pin_cpu_isa` runs before the faster-whisper backend loads one. A value already set in the
environment is kept (an explicit choice, e.g. to measure another ISA) and recorded like a pinned
one. An x86 CPU without AVX2 cannot run the pinned path (CTranslate2 refuses an ISA the CPU lacks):
there only ``CT2_USE_MKL=0`` is set, so Intel and AMD CPUs still share oneDNN. On other machines
(ARM) nothing is set. Either way the settings in force are recorded.

``ONEDNN_MAX_CPU_ISA`` also caps PyTorch's own oneDNN (its CPU convolutions), read once at the
first oneDNN call of the process: a torch model run before the pin computes with AVX-512 kernels on
a CPU that has them, after it with AVX2 ones, and the results differ in the last bits (seen as
different ESTOI and WER of ``jepa-daam@small-50hz`` between a test process that had run
convolutions before and fresh worker processes). ``import benchmarks`` therefore pins first.
"""
from __future__ import annotations

import os
import platform
import sys
import warnings

from audiocore.machine import cpu_isa_flags

__all__ = ["ISA_VARIABLES", "PINNED", "isa_settings", "pin_cpu_isa"]

#: The environment variables that choose CTranslate2's CPU kernels, and the pinned values.
PINNED: dict[str, str] = {"CT2_FORCE_CPU_ISA": "AVX2", "CT2_USE_MKL": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}
ISA_VARIABLES: tuple[str, ...] = tuple(PINNED)

_pinned_once = False


def isa_settings() -> dict[str, str | None]:
    """The values of :data:`ISA_VARIABLES` in this process's environment (None = unset)."""
    return {name: os.environ.get(name) for name in ISA_VARIABLES}


def pin_cpu_isa() -> dict[str, str | None]:
    """Set :data:`PINNED` (where the environment does not set a variable already) before
    CTranslate2 loads its first model, and return the settings in force.

    On an x86-64 CPU without AVX2 only ``CT2_USE_MKL`` is set (CTranslate2 refuses an ISA the CPU
    does not have); on other machines nothing is.
    """
    global _pinned_once
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return isa_settings()
    flags = cpu_isa_flags()
    wanted = PINNED if flags is None or "avx2" in flags else {"CT2_USE_MKL": PINNED["CT2_USE_MKL"]}
    if not _pinned_once and "ctranslate2" in sys.modules:
        missing = [n for n in wanted if n not in os.environ]
        if missing:
            warnings.warn(f"ctranslate2 was imported before its instruction set was pinned ({', '.join(missing)} "
                          "unset then); if a model was loaded already, its kernels may differ from the "
                          "pinned ones", RuntimeWarning, stacklevel=3)
    for name, value in wanted.items():
        os.environ.setdefault(name, value)
    _pinned_once = True
    return isa_settings()
