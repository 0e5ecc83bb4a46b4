"""Provenance of a run: which code, packages, machine and seeds produced its rows.

* :func:`code_version` -- digests of the source code that determines cached values (the codec
  path and the metrics), written into every row and every cache key;
* :func:`git_revision`, :func:`package_versions`, :func:`seed_everything`;
* :func:`machine_description` -- CPU model, its instruction-set flags and the instruction-set
  settings of CTranslate2 (see ``metrics.asr.isa``), since ASR values depend on them;
* :func:`manifest_dict` -- everything above plus the arguments, codecs, ASR and data checksums,
  as written to ``manifest.json``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import platform
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiocore.audio import RESAMPLER
from audiocore.codec import Codec
from audiocore.machine import cpu_isa_flags, cpu_model
from audiocore.params import count_parameters
from benchmarks.runconfig import METRIC_SR, SEED, RunConfig
from metrics import speed
from metrics.asr.isa import isa_settings

#: Packages whose versions are recorded in manifest.json (missing ones are recorded as None).
RECORDED_PACKAGES = (
    "jepa-daam", "torch", "numpy", "scipy", "soundfile", "soxr", "pesq", "pystoi", "jiwer", "pandas",
    "av", "pycodec2", "safetensors", "faster-whisper", "ctranslate2", "openai-whisper", "piper-tts",
)
#: Packages whose versions determine a reconstruction (codec libraries, resampler, tensor maths):
#: part of the reconstruction cache key, so an upgraded libopus or torch recomputes.
CODEC_PACKAGES = ("torch", "numpy", "soxr", "soundfile", "av", "pycodec2", "safetensors", "transformers", "snac",
                  "einops", "speechtokenizer")
#: Packages whose versions determine the signal metrics: part of the signal-metric cache key.
METRIC_PACKAGES = ("numpy", "scipy", "soxr", "pesq", "pystoi", "torch")
#: The execution modules of ``benchmarks`` (part of the codec digest: they load, resample and time).
_EXECUTION_FILES = tuple(Path(__file__).resolve().with_name(name) for name in ("evaluate.py", "runner.py"))


def _source_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the relative names and bytes of the given ``.py`` files (sorted)."""
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        h.update(f"{p.parent.name}/{p.name}".encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _package_files(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return []
    return list(Path(spec.origin).parent.rglob("*.py"))


@dataclass(frozen=True)
class CodeVersion:
    """Digests of the source code that determines cached values.

    Attributes:
        codec: digest of ``audiocore/``, ``baselines/``, ``jepa/`` and ``benchmarks/evaluate.py``,
            ``benchmarks/runner.py`` (the load / resample / encode / decode path).
        metrics: digest of ``metrics/`` (signal, token and ASR metrics).
        label: ``<package version>+<12 hex digits of both>``, written into every row.
    """

    codec: str
    metrics: str
    label: str


def _package_version() -> str:
    """Installed version of jepa-daam, else the version in the checkout's pyproject.toml."""
    try:
        return importlib.metadata.version("jepa-daam")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        return "0+unknown"
    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


def code_version() -> CodeVersion:
    """The :class:`CodeVersion` of the code now importable (a changed file changes it)."""
    codec = _source_digest([*_package_files("audiocore"), *_package_files("baselines"), *_package_files("jepa"),
                            *_EXECUTION_FILES])
    metric = _source_digest(_package_files("metrics"))
    version = _package_version()
    both = hashlib.sha256((codec + metric).encode()).hexdigest()[:12]
    return CodeVersion(codec=codec, metrics=metric, label=f"{version}+src.{both}")


def git_revision() -> str | None:
    """``<commit>`` (``-dirty`` when the tree has changes) of the checkout holding this file."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def package_versions(names: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def seed_everything(seed: int = SEED) -> dict[str, int]:
    """Seed Python, numpy and torch; returns what was seeded (for manifest.json)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return {"python": seed, "numpy": seed, "torch": seed}


def codec_weights_hash(codec: Codec) -> str | None:
    """``codec.weights_hash`` (attribute or method) when the codec exposes one."""
    value = getattr(codec, "weights_hash", None)
    if callable(value):
        value = value()
    return None if value is None else str(value)


def machine_description() -> dict[str, Any]:
    """The CPU this run used: model, SIMD / matrix instruction-set flags, and the settings that
    choose CTranslate2's CPU kernels (``metrics.asr.isa``; None = unset, the library chooses).

    ASR values depend on the kernels (int8 GEMMs differ between AVX2 and AVX-512), so the
    regression check compares these settings before it compares ASR columns.
    """
    return {"machine": platform.machine(), "model": cpu_model(), "isa_flags": cpu_isa_flags(),
            "ctranslate2_isa": isa_settings()}


def manifest_dict(cfg: RunConfig, version: CodeVersion, codecs: Sequence[Codec], skipped: Sequence[tuple[str, str]],
                  asr: Any, checksums: dict[str, str | None], seeds: dict[str, int],
                  utts: Sequence[Any]) -> dict[str, Any]:
    """Everything needed to reproduce the run (written to manifest.json).

    ``asr`` is the run's ``metrics.asr.AsrScorer`` (None with ``--no-asr``).
    """
    codec_info = []
    for c in codecs:
        info = {"codec": c.name, "sample_rate": c.sample_rate, "nominal_bitrate": c.nominal_bitrate(),
                "weights_hash": codec_weights_hash(c), "class": f"{type(c).__module__}.{type(c).__qualname__}"}
        if isinstance(c, torch.nn.Module):
            info["n_params"] = count_parameters(c)
        codec_info.append(info)
    return {
        "command": "python -m benchmarks.run " + " ".join(cfg.argv),
        "args": {"codecs": cfg.codecs, "data": cfg.data, "limit": cfg.limit, "out": str(cfg.out),
                 "device": cfg.device, "resume": cfg.resume, "force": cfg.force, "asr": cfg.asr,
                 "cache_dir": str(cfg.cache_dir),
                 "weights_dir": None if cfg.weights_dir is None else str(cfg.weights_dir)},
        "git_revision": git_revision(), "code_version": version.label,
        "code_digests": {"codec": version.codec, "metrics": version.metrics},
        "packages": package_versions(), "python": sys.version.split()[0],
        "device": speed.device_description(cfg.device), "cpu": machine_description(), "seeds": seeds, "resampler": RESAMPLER,
        "metric_sample_rate": METRIC_SR, "length_rule": "trim reference and reconstruction to the shorter",
        "asr": None if asr is None else ({**asr.info, "unavailable": asr.reason} if asr.reason else asr.info),
        "codecs": codec_info, "skipped": [{"codec": s, "reason": r} for s, r in skipped],
        "data": [{"utt_id": u.id, "path": str(u.path), "sha256": checksums.get(u.id)} for u in utts],
    }
