"""Real-time factors of the JEPA-DAAM codec (SMALL and PAPER) on this machine.

    python -m benchmarks.bench_model                      # SMALL and PAPER, batch 1 and 8, all threads
    python -m benchmarks.bench_model --threads 1          # one CPU core
    python -m benchmarks.bench_model --configs small --batches 1 --seconds 4 --repeats 7

RTF = wall time / audio duration (batch x seconds); below 1 is faster than real time. Encode is
`JEPACodec.encode_batch` (padding, encoder, FSQ, packing); decode is `JEPACodec.decode_batch`
(unpacking, decoder, trimming). Weights are random (speed does not depend on them). One warm-up
call is excluded; the median of `--repeats` calls is reported. Input is a deterministic
speech-like signal.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable

import torch

from audiocore.device import resolve_device
from jepa.codec import JEPACodec
from jepa.config import get_config


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of `fn` over `repeats` calls after one warm-up call."""

    def timed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()
    return statistics.median(timed() for _ in range(repeats))


def _signal(batch: int, seconds: float, sample_rate: int) -> torch.Tensor:
    """[batch, seconds*sr] amplitude-modulated harmonic tone with a little noise."""
    n = round(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    g = torch.Generator().manual_seed(0)
    tone = sum(torch.sin(2 * math.pi * f * t) / k for k, f in enumerate((150, 300, 450, 900), start=1))
    envelope = 0.5 * (1 + torch.sin(2 * math.pi * 3 * t))
    return (0.2 * tone * envelope + 0.01 * torch.randn(batch, n, generator=g)).float()


def bench(config: str, batch: int, seconds: float, repeats: int, device: torch.device) -> dict[str, float | int | str]:
    """Encode and decode RTF of one config at one batch size."""
    torch.manual_seed(0)
    codec = JEPACodec(get_config(config)).to(device).eval()
    wavs = list(_signal(batch, seconds, codec.sample_rate))
    encoded = codec.encode_batch(wavs)
    t_enc = _median_seconds(lambda: codec.encode_batch(wavs), repeats, device)
    t_dec = _median_seconds(lambda: codec.decode_batch(encoded), repeats, device)
    audio = batch * seconds
    return {"config": config, "batch": batch, "seconds": seconds, "frames": int(encoded[0].codes.shape[1]),
            "encode_s": t_enc, "decode_s": t_dec, "encode_rtf": t_enc / audio, "decode_rtf": t_dec / audio,
            "total_rtf": (t_enc + t_dec) / audio}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_model", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="small,paper", help="comma-separated presets or config paths")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length in seconds (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 = one core)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0:
        parser.error("--repeats must be >= 1 and --seconds > 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.seconds:g} s clips, median of {args.repeats} after 1 warm-up")
    if not args.json:
        print(f"{'config':<14}{'batch':>6}{'frames':>7}{'encode RTF':>12}{'decode RTF':>12}{'total RTF':>11}")
    for config in args.configs.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            row = bench(config.strip(), batch, args.seconds, args.repeats, device)
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['config']:<14}{batch:>6}{row['frames']:>7}{row['encode_rtf']:>12.4f}"
                      f"{row['decode_rtf']:>12.4f}{row['total_rtf']:>11.4f}", flush=True)


if __name__ == "__main__":
    main()
