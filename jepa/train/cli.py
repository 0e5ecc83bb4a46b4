"""Command line of ``python -m jepa.train`` (stage1, stage2, export)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch.distributed as dist

from jepa.config import get_config
from jepa.train.common import TrainArgs, effective_config
from jepa.train.export import export_codec
from jepa.train.loop import StopTraining
from jepa.train.runtime import setup_runtime
from jepa.train.stage1 import train_stage1
from jepa.train.stage2 import train_stage2

EXIT_COLLAPSED = 3
"""Exit status when the collapse monitor stopped training (a checkpoint was saved)."""

USAGE = """Train the JEPA-DAAM tokenizer: stage 1 (JEPA + DAAM) and stage 2 (FSQ + HiFi-GAN decoder).

    python -m jepa.train stage1 --config small --data ../shared/data/train/manifest.tsv --out runs/s1
    python -m jepa.train stage2 --config small --data ../shared/data/train/manifest.tsv --out runs/s2 \\
        --init-from runs/s1/checkpoint.pt
    python -m jepa.train export runs/s2/checkpoint.pt jepa_daam_small.safetensors
    torchrun --nproc_per_node 2 -m jepa.train stage1 ...          # DDP (nccl on CUDA, gloo on CPU)

Exit status 3: the collapse monitor stopped training (docs/training.md)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jepa.train", description=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for stage in ("stage1", "stage2"):
        s = sub.add_parser(stage, help=f"train {stage}")
        s.add_argument("--config", default="small", help="preset name (small, paper, ...) or YAML/JSON path")
        s.add_argument("--data", required=True, help="TSV/JSONL manifest, LibriSpeech folder or folder of audio")
        s.add_argument("--out", required=True, type=Path, help="run folder (checkpoint.pt, log.csv, loss.png)")
        s.add_argument("--steps", type=int, help="total optimiser steps (default: the config's)")
        s.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
        s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        s.add_argument("--amp", default="auto", help="auto | bf16 | fp16 | off (CUDA only)")
        s.add_argument("--save-every", type=int, default=200, help="checkpoint period in steps")
        s.add_argument("--batch-size", type=int, help="global batch (default: the config's)")
        s.add_argument("--crop-seconds", type=float, help="crop length (default: the config's)")
        s.add_argument("--seed", type=int, help="seed (default: the config's)")
        s.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
        s.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
        s.add_argument("--data-limit", type=int, help="use only the first N utterances")
        s.add_argument("--monitor-data", help="held-out speech for the collapse monitor (default: the last "
                                              "monitor_clips utterances of --data, held out of training)")
        s.add_argument("--no-progress", action="store_true", help="no tqdm bar")
        if stage == "stage2":
            s.add_argument("--init-from", help="stage-1 checkpoint.pt whose online encoder is quantised")
            s.add_argument("--finetune-encoder", action="store_true", help="train the encoder too (spec §7.5)")
            s.add_argument("--gan-from-step0", action="store_true", help="reference behaviour (spec §10 item 11)")
            s.add_argument("--disc-start-step", type=int,
                           help="discriminators train when step > this (default: the config's; "
                                "overrides disc_start_fraction)")
    e = sub.add_parser("export", help="stage-2 checkpoint -> JEPACodec safetensors")
    e.add_argument("checkpoint")
    e.add_argument("output")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: a refused or unreadable input (a checkpoint the weights-only loader refuses, a
    missing or corrupt file, an invalid config) is one ``error: ...`` line and exit status 2."""
    try:
        return _main(argv)
    except (ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "export":
        path = export_codec(args.checkpoint, args.output)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = get_config(args.config)
    if args.command == "stage2":
        s2 = cfg.stage2
        changes = {"finetune_encoder": s2.finetune_encoder or args.finetune_encoder,
                   "gan_from_step0": s2.gan_from_step0 or args.gan_from_step0}
        if args.disc_start_step is not None:
            changes.update(disc_start_step=args.disc_start_step, disc_start_fraction=None)
        cfg = dataclasses.replace(cfg, stage2=dataclasses.replace(s2, **changes))
    targs = TrainArgs(data=args.data, out=args.out, steps=args.steps, resume=args.resume, device=args.device,
                      amp=args.amp, save_every=args.save_every, batch_size=args.batch_size,
                      crop_seconds=args.crop_seconds, seed=args.seed, max_minutes=args.max_minutes,
                      threads=args.threads, data_limit=args.data_limit, progress=not args.no_progress,
                      monitor_data=args.monitor_data)
    cfg = effective_config(cfg, args.command, targs)
    rt = setup_runtime(args.device, args.amp)
    if not rt.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.command == "stage1":
            path = train_stage1(cfg, targs, rt)
        else:
            path = train_stage2(cfg, targs, rt, args.init_from)
        if rt.is_main:
            print(f"checkpoint: {path}")
    except StopTraining as stop:
        if rt.is_main:
            print(f"error: {stop}")
        return EXIT_COLLAPSED
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0
