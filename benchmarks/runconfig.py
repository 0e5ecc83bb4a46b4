"""What one ``python -m benchmarks.run`` invocation was asked to do, and the settings every run shares."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Sample rate (Hz) at which every metric is computed (PESQ-WB, STOI, ASR input).
METRIC_SR = 16000
#: Default ASR backend (metrics.asr spec); ``--no-asr`` turns ASR off.
DEFAULT_ASR = "faster-whisper:tiny.en"
#: Seed for every random number generator touched by a run (recorded in manifest.json).
SEED = 0
#: Row columns that hold wall-clock timings (they differ between otherwise identical runs).
TIMING_COLUMNS = ("encode_s", "decode_s", "encode_rtf", "decode_rtf", "signal_s", "asr_s", "perceptual_s")
#: CPU threads of each evaluation (torch, BLAS, CTranslate2). One thread per worker makes every
#: value independent of ``--jobs`` and of the machine's core count; parallelism comes from workers.
EVAL_THREADS = 1
#: Executors of ``--executor``: worker processes on this machine, or a Ray cluster.
EXECUTORS = ("local", "ray")


class UserError(Exception):
    """A mistake in the command line or its inputs; reported as one ``error: ...`` line, exit 2."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one invocation was asked to do (recorded in manifest.json).

    Attributes:
        codecs: ``"all"`` or comma-separated codec specs.
        data: ``"default"`` or a manifest / folder path (see ``audiocore.datasets``).
        limit: evaluate at most this many utterances (None = all).
        out: run folder (results.jsonl, summary.*, manifest.json, skipped.json, tokens/).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``auto`` already resolved).
        resume: skip (codec, utterance) pairs already in ``out/results.jsonl``.
        force: recompute everything (no cache reads, no resume).
        asr: ASR backend spec, or None for ``--no-asr``.
        cache_dir: content-addressed cache folder.
        report: write summary tables and ``report.html`` at the end.
        weights_dir: folder of pretrained codec weights (``--weights-dir``; None = the backends'
            own search: ``$JEPA_DAAM_WEIGHTS``, then the Hugging Face cache).
        argv: the command line as given.
        protocol: metric protocol (``benchmarks.protocols``: ``default``, ``A``, ``B``).
        perceptual: compute the protocol's perceptual and speaker columns (``--no-perceptual``: off).
        offline: never touch the network (``--offline``; ``HF_HUB_OFFLINE=1`` does the same).
        asr_from_protocol: ``--asr`` was not given, so the protocol chose the ASR (and may fall back).
        listen: utterances in the listening grid of ``report.html`` (``--listen``; 0: none).
        jobs: worker processes (``--jobs``; 1: everything in this process); with Ray, the number
            of actors.
        executor: ``local`` or ``ray`` (``benchmarks.executor``).
        ray_address: address of the Ray cluster (``--ray-address``; None: start a local Ray).
    """

    codecs: str
    data: str
    limit: int | None
    out: Path
    device: str
    resume: bool
    force: bool
    asr: str | None
    cache_dir: Path
    report: bool = True
    argv: tuple[str, ...] = ()
    weights_dir: Path | None = None
    protocol: str = "default"
    perceptual: bool = True
    offline: bool = False
    asr_from_protocol: bool = False
    listen: int = 3
    jobs: int = 1
    executor: str = "local"
    ray_address: str | None = None
