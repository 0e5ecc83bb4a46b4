"""ASR speed on this machine: real-time factor of the intelligibility backend.

    python -m benchmarks.bench_asr                          # tiny.en, beam 1 and 5, 6 utterances
    python -m benchmarks.bench_asr --beams 5 --limit 20 --asr faster-whisper:tiny.en
    python -m benchmarks.bench_asr --data /path/to/manifest.tsv --device cuda
    python -m benchmarks.bench_asr --encoder-split --threads 1   # encoder share, batched encoder

Transcribes the first ``--limit`` transcribed utterances of ``--data`` (16 kHz, soxr VHQ) once per
beam size, after one untimed warm-up transcription, and prints per beam: audio seconds, wall
seconds, pooled RTF (total wall / total audio), median per-utterance RTF and the corpus WER
(a sanity check that the timed decoding is the real one). Timing is wall clock, device
synchronised; on a shared CPU the load average is printed because it moves the numbers.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from audiocore.datasets import Utterance, load_dataset, load_utterance
from metrics import asr
from metrics.speed import Stopwatch, median_rtf, rtf

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_EVAL = REPO_ROOT.parent / "shared" / "data" / "eval" / "manifest.tsv"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_asr", description=__doc__.split("\n")[0])
    p.add_argument("--asr", default=asr.DEFAULT_SPEC, help="ASR spec family[:model] (default: %(default)s)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="beam sizes (default: 1 5)")
    p.add_argument("--data", default=str(SHARED_EVAL) if SHARED_EVAL.exists() else "default",
                   help="manifest or folder (default: ../shared/data/eval if present, else 'default')")
    p.add_argument("--limit", type=int, default=6, help="number of transcribed utterances (default: 6)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (0: its default)")
    p.add_argument("--encoder-split", action="store_true",
                   help="faster-whisper only: also time the log-mel features + encoder over the padded 30-s "
                        "windows alone, one by one and as one batch (what batched ASR could save)")
    return p.parse_args(argv)


def _load_audio(data: str, limit: int) -> tuple[list[Utterance], list[np.ndarray]]:
    """First ``limit`` utterances with a transcript, as 16 kHz float32 [T] arrays."""
    utts = [u for u in load_dataset(data) if u.transcript][:limit]
    if not utts:
        raise SystemExit(f"{data}: no utterance with a transcript to time the ASR on")
    wavs = [load_utterance(u, target_sr=asr.SAMPLE_RATE)[0] for u in utts]
    return utts, wavs


def encoder_split(spec: str, device: str, threads: int, wavs: list[np.ndarray]) -> dict[str, float]:
    """Seconds of whole ``transcribe`` calls vs the log-mel features + encoder of each utterance's
    first (padded) 30-s window alone, one at a time and as one batch (faster-whisper only)."""
    from faster_whisper.audio import pad_or_trim

    backend = asr.load_asr(spec, device=device, beam_size=5, **({"cpu_threads": threads} if threads else {}))
    model = getattr(backend, "_model", None)
    if model is None or not hasattr(model, "feature_extractor"):
        raise SystemExit(f"--encoder-split needs a faster-whisper backend, not {spec}")
    backend.transcribe(wavs[:1])
    watch = Stopwatch(device)
    with watch:
        backend.transcribe(wavs)
    full = watch.seconds
    windows = [pad_or_trim(model.feature_extractor(w)[:, :3000]) for w in wavs]
    with watch:
        for w in wavs:
            model.encode(pad_or_trim(model.feature_extractor(w)[:, :3000]))
    one_by_one = watch.seconds
    with watch:
        model.encode(np.stack(windows))
    return {"transcribe_s": full, "features_encoder_s": one_by_one, "batched_encoder_s": watch.seconds}


def bench_beam(spec: str, beam: int, device: str, utts: list[Utterance],
               wavs: list[np.ndarray], threads: int = 0) -> dict[str, float | str]:
    """Time one backend configuration over ``wavs`` (one warm-up call first, not timed)."""
    backend = asr.load_asr(spec, device=device, beam_size=beam, **({"cpu_threads": threads} if threads else {}))
    backend.transcribe(wavs[:1])  # warm-up: first-call allocations, thread pools
    watch, per_utt, hyps, wall_s = Stopwatch(device), [], [], 0.0
    for wav in wavs:
        with watch:
            hyps.extend(backend.transcribe([wav]))
        wall_s += watch.seconds
        per_utt.append(rtf(watch.seconds, len(wav) / asr.SAMPLE_RATE))
    audio_s = sum(len(w) for w in wavs) / asr.SAMPLE_RATE
    pooled = asr.corpus_rates(asr.utterance_asr_metrics(u.transcript, h, h) for u, h in zip(utts, hyps))
    info = backend.info()
    return {"model": f"{info['backend']}:{info['model']}", "compute": str(info.get("compute_type", "")),
            "beam": beam, "audio_s": audio_s, "wall_s": wall_s, "rtf": wall_s / audio_s,
            "median_rtf": median_rtf(per_utt, n_warmup=0).value, "wer": pooled["wer"]}


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    utts, wavs = _load_audio(args.data, args.limit)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {len(wavs)} utterances from {args.data}; device {args.device}; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} at start")
    print("| model | compute | beam | audio s | wall s | RTF | median RTF | WER |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for beam in args.beams:
        r = bench_beam(args.asr, beam, args.device, utts, wavs, args.threads)
        print(f"| {r['model']} | {r['compute']} | {r['beam']} | {r['audio_s']:.1f} | {r['wall_s']:.1f} "
              f"| {r['rtf']:.3f} | {r['median_rtf']:.3f} | {100 * r['wer']:.1f} % |", flush=True)
    if args.encoder_split:
        split = encoder_split(args.asr, args.device, args.threads, wavs)
        print(f"\ntranscribe (beam 5): {split['transcribe_s']:.2f} s; log-mel + encoder alone: "
              f"{split['features_encoder_s']:.2f} s ({100 * split['features_encoder_s'] / split['transcribe_s']:.0f} %); "
              f"encoder as one batch of {len(wavs)}: {split['batched_encoder_s']:.2f} s")


if __name__ == "__main__":
    main()
