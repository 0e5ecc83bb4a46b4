"""What a run is made of, built from its :class:`~benchmarks.runconfig.RunConfig`: utterances,
codecs, ASR and the perceptual stage.

The driver builds them once (for provenance, self-checks and, with ``--jobs 1``, the evaluation
itself); every worker process or Ray actor builds its own copy with the same functions
(:mod:`benchmarks.executor`), so the models are loaded once per worker, never per utterance.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiocore.codec import Codec
from benchmarks.protocols import Protocol, get_protocol
from benchmarks.quality import QualityStage
from benchmarks.runconfig import RunConfig, UserError
from metrics.asr import AsrScorer


def log_stderr(msg: str) -> None:
    """One line on stderr (the run's notes; stdout holds the summary)."""
    print(msg, file=sys.stderr, flush=True)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def load_utterances(data: str, limit: int | None) -> list[Any]:
    """The utterances of ``--data`` (``audiocore.datasets.load_dataset``); errors -> UserError."""
    from audiocore.datasets import load_dataset

    try:
        utts = load_dataset(data, limit=limit)
    except ValueError as exc:  # DatasetError is a ValueError
        raise UserError(" ".join(str(exc).split())) from exc
    if not utts:
        raise UserError(f"--data {data}: no utterances found")
    ids = [u.id for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise UserError(f"--data {data}: utterance ids must be unique; repeated: {', '.join(dup)}")
    return utts


def build_codecs(text: str, device: str, weights_dir: Path | None = None) -> tuple[list[Codec], list[tuple[str, str]]]:
    """Codec objects for ``--codecs`` plus (spec, reason) for the unavailable ones.

    ``weights_dir`` (``--weights-dir``) goes to the backends that load pretrained weights.

    Unknown families or settings are user errors (``registry`` raises ValueError listing the
    valid ones); a missing package or weights file makes a codec *skipped*, never a crash.
    """
    from baselines import registry

    try:
        return registry.build_codecs(text, device, weights_dir=weights_dir)
    except ValueError as exc:
        raise UserError(" ".join(str(exc).split())) from exc


def asr_scorer(spec: str, device: str, cache_dir: Path, threads: int = 0, **options: Any) -> AsrScorer:
    """The run's ASR (``metrics.asr.AsrScorer``; transcripts of originals cached under
    ``<cache_dir>/transcripts``). A missing backend package or model is not an error: the scorer
    says why and the ASR columns are NaN. An unknown backend family is a UserError.

    Args:
        threads: CPU threads of a faster-whisper model (0: the library's default); a worker of
            ``--jobs N`` gets its share of the cores.
        options: weights folder, download, offline, for backends with downloadable weights.
    """
    family = spec.strip().partition(":")[0]
    if family != "hubert-ctc":
        options = {}
    if family == "faster-whisper" and threads:
        options["cpu_threads"] = int(threads)
    try:
        return AsrScorer(spec, device, Path(cache_dir) / "transcripts", **options)
    except ValueError as exc:
        raise UserError(f"--asr {spec}: {' '.join(str(exc).split())}") from exc


def protocol_asr(cfg: RunConfig, protocol: Protocol, threads: int = 0) -> tuple[AsrScorer | None, list[str]]:
    """The ASR of the run: ``--asr`` when given, else the protocol's, falling back to the
    protocol's stated substitute when its model is unavailable. Returns (scorer, substitutions)."""
    if cfg.asr is None:
        return None, []
    spec = protocol.asr if cfg.asr_from_protocol else cfg.asr
    opts = dict(weights_dir=cfg.weights_dir, download=protocol.download, offline=cfg.offline)
    asr = asr_scorer(spec, cfg.device, cfg.cache_dir, threads, **opts)
    if asr.reason and cfg.asr_from_protocol and protocol.asr_fallback and protocol.asr_fallback != spec:
        fallback = asr_scorer(protocol.asr_fallback, cfg.device, cfg.cache_dir, threads)
        if fallback.available:
            return fallback, [f"ASR: {protocol.asr_fallback} in place of {spec} ({asr.reason})"]
    return asr, []


@dataclass
class RunParts:
    """The models of one run, as built in one process.

    Attributes:
        codecs: the available codecs, in the order asked for.
        skipped: (spec, reason) of the unavailable ones.
        asr: the ASR scorer (None for ``--no-asr``).
        quality: the perceptual and speaker models (empty when ``--no-perceptual``).
        protocol: the metric protocol.
        substitutions: models used in place of the protocol's (one sentence each).
    """

    codecs: list[Codec]
    skipped: list[tuple[str, str]]
    asr: AsrScorer | None
    quality: QualityStage
    protocol: Protocol
    substitutions: list[str] = field(default_factory=list)


def build_parts(cfg: RunConfig, *, log: Callable[[str], None] = log_stderr, threads: int = 0,
                with_codecs: bool = True) -> RunParts:
    """Build the codecs, ASR and perceptual stage of ``cfg``.

    Args:
        cfg: the run configuration.
        log: where notes go (skipped codecs, substitutions, an unavailable ASR).
        threads: CPU threads for the ASR of this process (0: the library's default).
        with_codecs: False: no codecs (a worker rebuilds the driver's codecs by name itself).

    Raises:
        UserError: an unknown codec family or setting, or an unknown ASR backend.
    """
    if cfg.offline:  # every library below (huggingface_hub, transformers) stays off the network too
        os.environ["HF_HUB_OFFLINE"] = "1"
    codecs, skipped = build_codecs(cfg.codecs, cfg.device, cfg.weights_dir) if with_codecs else ([], [])
    protocol = get_protocol(cfg.protocol)
    asr, substitutions = protocol_asr(cfg, protocol, threads)
    for line in substitutions:
        log(f"substitution: {line}")
    if asr is not None and asr.reason:
        log(f"warning: {asr.reason}; WER/CER/dWER will be NaN")
    quality = QualityStage(protocol, cfg.device, cfg.weights_dir, offline=cfg.offline, enabled=cfg.perceptual, log=log)
    return RunParts(codecs=codecs, skipped=list(skipped), asr=asr, quality=quality, protocol=protocol,
                    substitutions=substitutions + quality.substitutions)
