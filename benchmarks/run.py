"""The main job: run speech codecs over a data set and write per-utterance results.

Usage::

    python -m benchmarks.run --codecs all --limit 5
    python -m benchmarks.run --codecs pcm,opus@12k,codec2@700C \\
        --data ../shared/data/eval/manifest.tsv --limit 20 --out runs/eval20 --no-asr

The command line lives here; the work is done by :mod:`benchmarks.runner` (the run: data,
codecs, resume, results) and :mod:`benchmarks.evaluate` (one utterance through one codec, top to
bottom); :mod:`benchmarks.provenance` records what produced the results (``manifest.json``).
A user mistake is reported as one ``error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from audiocore.device import VALID_DEVICES
from audiocore.device import resolve_device as _resolve_device
from benchmarks import store
from benchmarks.protocols import get_protocol
from benchmarks.components import usable_cores
from benchmarks.runconfig import DEFAULT_ASR, EXECUTORS, RunConfig, UserError
from benchmarks.runner import run_benchmark, skipped_lines

__all__ = ["build_parser", "main", "parse_args", "resolve_device", "UserError"]


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; others
    validated (``audiocore.device``). Raises UserError naming the valid values."""
    try:
        return str(_resolve_device(name))
    except ValueError as exc:
        raise UserError(f"--device: {exc} (see README for CUDA builds of torch; valid: {VALID_DEVICES})") from exc


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.run`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Run speech codecs over a data set; write per-utterance results and summary tables.",
    )
    p.add_argument("--codecs", default="all", help="'all' (every available codec) or comma-separated specs, "
                   "e.g. pcm,opus@12k,codec2@700C,jepa-daam:/path/ckpt.safetensors (default: all)")
    p.add_argument("--data", default="default", help="'default' (bundled synthetic sentences), a TSV/JSONL "
                   "manifest, a LibriSpeech-layout folder or a folder of audio files (default: default)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N utterances")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<data>-<codecs>)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--resume", dest="resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip (codec, utterance) pairs already in OUT/results.jsonl (default: on)")
    p.add_argument("--force", action="store_true",
                   help="recompute everything: ignore the cache and start results.jsonl afresh")
    asr = p.add_mutually_exclusive_group()
    asr.add_argument("--asr", default=_PROTOCOL_ASR, metavar="BACKEND[:MODEL]",
                     help=f"ASR backend for WER/CER/dWER (default: the protocol's; {DEFAULT_ASR} for the default "
                          "protocol; hubert-ctc = HuBERT-large greedy CTC)")
    asr.add_argument("--no-asr", dest="asr", action="store_const", const=None, help="skip WER/CER/dWER")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"cache of reconstructions and metric values (default: {store.default_cache_dir()})")
    p.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                   help="folder holding neural-codec weights as <DIR>/<repo id>/ (e.g. DIR/facebook/encodec_24khz); "
                        "searched before $JEPA_DAAM_WEIGHTS and the Hugging Face cache (docs/codecs-neural.md)")
    p.add_argument("--protocol", default="default", metavar="default|A|B",
                   help="metric set: default (everything that runs offline: DNSMOS, DistillMOS, Resemblyzer, "
                        "Whisper tiny.en), A (BigCodec/X-codec2: HuBERT CTC WER, WavLM SIM, UTMOS), "
                        "B (FocalCodec/DASB: UTMOS, WavLM-base-sv SIM, Whisper-small dWER); docs/metrics-perceptual.md")
    p.add_argument("--no-perceptual", dest="perceptual", action="store_false",
                   help="skip the perceptual (DNSMOS, DistillMOS, UTMOS) and speaker-similarity columns")
    p.add_argument("--offline", action="store_true",
                   help="never touch the network: no weight downloads (as HF_HUB_OFFLINE=1)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write summary tables, plots and report.html")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: the usable cores on CPU, 1 with CUDA; 1: all in this process); "
                        "each worker loads the codecs and metric models once; results do not depend on N")
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: worker processes on this machine; ray: Ray actors on a cluster "
                        "(pip install '.[ray]'; docs/performance.md) (default: local)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="Ray cluster to join with --executor ray (e.g. auto, ray://head:10001; default: start a "
                        "local Ray with --jobs CPUs)")
    p.add_argument("--listen", type=int, default=3, metavar="N",
                   help="utterances in report.html's listening grid, chosen to span the data set (default: 3; 0: none)")
    return p


#: ``--asr`` default: the protocol picks the ASR (and may fall back to its stated substitute).
_PROTOCOL_ASR = "protocol"


def _default_out(data: str, codecs: str) -> Path:
    stem = Path(data).stem if data != "default" else "default"
    tag = re.sub(r"[^A-Za-z0-9._@-]+", "_", codecs)[:40]
    return Path("runs") / f"{stem}-{tag}"


def parse_args(argv: Sequence[str] | None) -> RunConfig:
    """Parse and validate the command line (raises UserError for bad values)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number of utterances, got {args.limit}")
    if args.data != "default" and not Path(args.data).expanduser().exists():
        raise UserError(f"--data path not found: {args.data}")
    if args.weights_dir is not None and not args.weights_dir.expanduser().is_dir():
        raise UserError(f"--weights-dir {args.weights_dir}: not a folder")
    if args.listen < 0:
        raise UserError(f"--listen must be 0 or more utterances, got {args.listen}")
    for flag, folder in (("--out", args.out), ("--cache-dir", args.cache_dir)):
        if folder is not None and folder.expanduser().exists() and not folder.expanduser().is_dir():
            raise UserError(f"{flag} {folder}: exists and is not a folder")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be 1 or more worker processes, got {args.jobs}")
    if args.ray_address is not None and args.executor != "ray":
        raise UserError("--ray-address needs --executor ray")
    if args.asr is not None and not args.asr.strip():
        raise UserError("--asr needs a backend such as faster-whisper:tiny.en (or use --no-asr)")
    try:
        protocol = get_protocol(args.protocol)
    except ValueError as exc:
        raise UserError(f"--protocol: {exc}") from exc
    from_protocol = args.asr == _PROTOCOL_ASR
    device = resolve_device(args.device)
    return RunConfig(
        codecs=args.codecs, data=args.data, limit=args.limit,
        out=(args.out or _default_out(args.data, args.codecs)).expanduser(),
        device=device, resume=args.resume and not args.force, force=args.force,
        asr=protocol.asr if from_protocol else args.asr, cache_dir=(args.cache_dir or store.default_cache_dir()).expanduser(),
        report=args.report, argv=tuple(argv),
        weights_dir=None if args.weights_dir is None else args.weights_dir.expanduser().resolve(),
        protocol=protocol.name, perceptual=args.perceptual, offline=args.offline, asr_from_protocol=from_protocol,
        listen=args.listen, jobs=args.jobs or default_jobs(device), executor=args.executor,
        ray_address=args.ray_address,
    )


def default_jobs(device: str) -> int:
    """``--jobs`` when not given: the usable cores on CPU; 1 on CUDA (workers would share one GPU)."""
    return 1 if device.startswith("cuda") else usable_cores()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    try:
        cfg = parse_args(argv)
        stats = run_benchmark(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished rows are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    if stats.summary:
        print(stats.summary)
    for line in skipped_lines(stats.skipped):
        print(line)
    cache = store.ResultCache(cfg.cache_dir)
    print(f"{stats.computed} rows computed, {stats.from_cache} from cache, {stats.resumed} already done, "
          f"{stats.errors} errors; {len(stats.skipped)} codecs skipped; wall time {stats.wall_s:.1f} s")
    if stats.cache_invalid:
        print(f"cache: {stats.cache_invalid} entries failed their check and were recomputed "
              f"(first: {stats.cache_invalid_reasons[0]})")
    if stats.failures:
        print(f"failed rows by reason ({sum(stats.failures.values())} in results): "
              + ", ".join(f"{reason} {n}" for reason, n in stats.failures.items()))
    print(f"results: {cfg.out / store.RESULTS_FILE}; cache {cfg.cache_dir}: "
          f"{store.format_bytes(cache.size_bytes())} in {cache.n_entries()} entries")
    if stats.report_html:
        print(stats.report_html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
