"""What both stages set up the same way: options, the run folder, config overrides, the data
and the collapse monitor's held-out clips."""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jepa.config import JEPADAAMConfig, config_to_dict
from jepa.data import Augmentation, CropDataset, StepBatches, load_utterances
from jepa.monitor import fixed_crops
from jepa.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from jepa.train.logs import LOG_NAME, CsvLog
from jepa.train.runtime import Runtime, barrier

log = logging.getLogger("jepa.train")


@dataclass
class TrainArgs:
    """Options common to both stages (see `--help`)."""

    data: str
    out: Path
    steps: int | None = None
    resume: bool = False
    device: str = "auto"
    amp: str = "auto"
    save_every: int = 200
    batch_size: int | None = None
    crop_seconds: float | None = None
    seed: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    data_limit: int | None = None
    progress: bool = True
    monitor_data: str | None = None


def adamw(params: Any, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `params` (a parameter list or a list of parameter groups with their own lr)."""
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def effective_config(cfg: JEPADAAMConfig, stage: str, args: TrainArgs) -> JEPADAAMConfig:
    """Apply the command-line overrides (steps, batch, crop, seed) to the stage's section."""
    section = getattr(cfg, stage)
    changes: dict[str, Any] = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.crop_seconds is not None:
        changes["crop_seconds"] = args.crop_seconds
    if args.seed is not None:
        changes["seed"] = args.seed
    if changes:
        cfg = dataclasses.replace(cfg, **{stage: dataclasses.replace(section, **changes)})
    section = getattr(cfg, stage)
    if section.steps < 1 or section.batch_size < 1:
        raise ValueError(f"{stage}: steps ({section.steps}) and batch_size ({section.batch_size}) must be >= 1")
    return cfg


def per_rank_batch(global_batch: int, rt: Runtime) -> int:
    if global_batch % rt.world_size:
        raise ValueError(f"global batch_size {global_batch} is not divisible by the {rt.world_size} DDP ranks")
    return global_batch // rt.world_size


def step_batches(ds: CropDataset, global_batch: int, seed: int, rt: Runtime) -> StepBatches:
    """Which items of `ds` this rank trains on at each step (its share of the global batch)."""
    return StepBatches(len(ds), per_rank_batch(global_batch, rt), seed=seed, rank=rt.rank, world_size=rt.world_size)


def whole_hops(seconds: float, cfg: JEPADAAMConfig, what: str = "crop") -> int:
    """`seconds` in samples, rounded down to whole hops and at least min_input_samples."""
    hop = cfg.model.hop_length
    n = int(round(seconds * cfg.model.sample_rate)) // hop * hop
    if n < cfg.model.min_input_samples:
        raise ValueError(
            f"{what} of {seconds} s gives {n} samples (whole hops of {hop}); the model needs at least "
            f"{cfg.model.min_input_samples} samples ({cfg.model.min_input_samples / cfg.model.sample_rate:.2f} s)"
        )
    return n


def prepare_out(args: TrainArgs, rt: Runtime) -> tuple[Path, dict[str, Any] | None]:
    """Create OUT; return the checkpoint to resume from (or None). Refuses to overwrite a run."""
    out = Path(args.out)
    ckpt_path = out / CHECKPOINT_NAME
    if args.resume:
        if not ckpt_path.is_file():
            raise ValueError(f"--resume: no checkpoint at {ckpt_path}")
        return out, load_checkpoint(ckpt_path)
    if ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists; pass --resume to continue that run or choose another --out")
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(rt)
    return out, None


def open_run_folder(out: Path, cfg: JEPADAAMConfig, rt: Runtime, columns: tuple[str, ...],
                    resumed_step: int | None) -> CsvLog | None:
    """On rank 0: write the effective config to OUT/config.json and open OUT/log.csv (continued
    after `resumed_step` when resuming). Other ranks log nothing and get None."""
    if not rt.is_main:
        return None
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(config_to_dict(cfg), f, indent=2)
    return CsvLog(out / LOG_NAME, columns, resumed_step)


def load_data(args: TrainArgs, section: Any, cfg: JEPADAAMConfig, rt: Runtime
              ) -> tuple[CropDataset, torch.Tensor | None]:
    """The stage's training crops and the collapse monitor's held-out clips.

    Augmentation settings come from cfg.stage1 (one data pipeline, as in the reference code),
    crop length, seed, short-utterance rule and monitor settings from `section`. The monitor's
    clips ([N, 1, L], L = monitor_seconds in whole hops) are the centre crops of the first
    monitor_clips utterances of ``--monitor-data`` (16 when monitor_clips is 0), or else of the
    last monitor_clips utterances of the training data that are that long, which are then
    removed from the training set. None when the monitor is off (monitor_every 0, or
    monitor_clips 0 without --monitor-data).

    Raises:
        ValueError: fewer than 2 usable monitor clips, or no training data left.
    """
    sr = cfg.model.sample_rate
    a = cfg.stage1
    aug = Augmentation(gain_p=a.gain_prob, gain_range=tuple(a.gain_range), noise_p=a.noise_prob, noise_std=a.noise_std)
    waves, ids = load_utterances(args.data, sample_rate=sr, limit=args.data_limit)
    clips = None
    if section.monitor_every > 0 and (section.monitor_clips > 0 or args.monitor_data):
        length = whole_hops(section.monitor_seconds, cfg, "monitor_seconds")
        n_clips = section.monitor_clips or 16
        if args.monitor_data:
            clips, _ = fixed_crops(load_utterances(args.monitor_data, sample_rate=sr)[0], n_clips, length)
            source = str(args.monitor_data)
        else:
            clips, held = fixed_crops(waves, n_clips, length, from_end=True)
            keep = [i for i in range(len(waves)) if i not in set(held)]
            waves, ids = [waves[i] for i in keep], [ids[i] for i in keep]
            source = f"the last {len(held)} utterances of {args.data} that are long enough (held out of training)"
        if clips.shape[0] < 2:
            raise ValueError(f"the collapse monitor needs at least 2 utterances of >= {section.monitor_seconds} s in "
                             f"{args.monitor_data or args.data}, found {clips.shape[0]}; pass --monitor-data PATH or "
                             f"set monitor_clips 0 / monitor_every 0 in the config")
        if clips.shape[0] < n_clips and rt.is_main:
            log.warning("collapse monitor: only %d of %d clips of %.2f s available", clips.shape[0], n_clips,
                        length / sr)
        if rt.is_main:
            log.info("collapse monitor: %d clips of %.2f s from %s, every %d steps", clips.shape[0], length / sr,
                     source, section.monitor_every)
        if not waves:
            raise ValueError(f"{args.data}: no training utterance is left after holding out the monitor's clips")
    pad_short = getattr(section, "short_utterances", "drop") == "pad"
    ds = CropDataset(waves, whole_hops(section.crop_seconds, cfg), seed=section.seed, augment=aug, ids=ids,
                     pad_short=pad_short)
    if rt.is_main:
        log.info("data %s: %d utterances (%d dropped, %d zero-padded as shorter than the crop), %.1f min, "
                 "%d crop slots of %d samples", args.data, len(ds.waves), ds.n_dropped, ds.n_padded,
                 ds.total_samples / sr / 60, len(ds), ds.crop_samples)
    return ds, clips


def loudness_normalize(wav: torch.Tensor, cfg: JEPADAAMConfig) -> torch.Tensor:
    """wav [B, 1, L] at the encoder's input level (``jepa.loudness.normalize``; the identity when
    ModelConfig.loudness_target_db is None)."""
    from jepa.loudness import normalize

    return normalize(wav, cfg.model)[0]
