"""Training of the JEPA-DAAM tokenizer: stage 1 (JEPA + DAAM) and stage 2 (FSQ + HiFi-GAN decoder).

Usage::

    python -m jepa.train stage1 --config small --data ../shared/data/train/manifest.tsv --out runs/s1
    python -m jepa.train stage2 --config small --data ../shared/data/train/manifest.tsv --out runs/s2 \\
        --init-from runs/s1/checkpoint.pt
    python -m jepa.train export runs/s2/checkpoint.pt jepa_daam_small.safetensors
    torchrun --nproc_per_node 2 -m jepa.train stage1 ...          # DDP (nccl on CUDA, gloo on CPU)

Modules, each with one job:

* :mod:`~jepa.train.runtime`: device, DDP process group, autocast, GradScaler, seeds.
* :mod:`~jepa.train.checkpoint`: atomic save, safe load (weights_only, content hash, format-1
  upgrade), RNG states of every rank.
* :mod:`~jepa.train.logs`: the CSV log and its plot.
* :mod:`~jepa.train.schedule`: learning-rate schedules.
* :mod:`~jepa.train.loop`: ``Optim`` (one update: backward, clip, lr, step), ``State`` and the one
  ``train_loop`` of both stages (log, collapse monitor, checkpoint, --max-minutes).
* :mod:`~jepa.train.common`: options, run folder, config overrides, data and monitor clips.
* :mod:`~jepa.train.stage1` / :mod:`~jepa.train.stage2`: the stages' models and step functions.
* :mod:`~jepa.train.export`: stage-2 checkpoint -> ``JEPACodec`` safetensors.
* :mod:`~jepa.train.cli`: the command line.

Every ``--save-every`` steps (and at the end) ``OUT/checkpoint.pt`` is written atomically with
everything needed for an exact resume; batches, crops, augmentation and masks are pure
functions of (seed, step, rank), so a resumed run sees exactly the data an uninterrupted one
would. ``OUT/log.csv`` holds one row per step and ``OUT/loss.png`` plots it. The recipe
(schedules, clipping, EMA ramp, target norm, variance term, mel loss, masks, collapse monitor)
comes from ``Stage1Config`` / ``Stage2Config``; docs/training.md describes it.
"""
from jepa.train.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, atomic_save, checkpoint_sha256,
                                   gather_rng_states, load_checkpoint, restore_rng_states, rng_state, save_checkpoint,
                                   set_rng_state)
from jepa.train.cli import EXIT_COLLAPSED, build_parser, main
from jepa.train.common import TrainArgs
from jepa.train.export import TRAINING_METADATA_KEY, export_codec, training_summary
from jepa.train.logs import LOG_NAME, PLOT_NAME, CsvLog, plot_log, read_log
from jepa.train.loop import Clock, Optim, State, StopTraining, train_loop
from jepa.train.runtime import Runtime, autocast, make_scaler, resolve_device, seed_for, setup_runtime
from jepa.train.schedule import LRSchedule
from jepa.train.stage1 import STAGE1_COLUMNS, train_stage1
from jepa.train.stage2 import STAGE2_COLUMNS, build_codec, stage1_training_summary, train_stage2

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "EXIT_COLLAPSED", "LOG_NAME", "PLOT_NAME", "STAGE1_COLUMNS",
    "STAGE2_COLUMNS", "TRAINING_METADATA_KEY", "Clock", "CsvLog", "LRSchedule", "Optim", "Runtime", "State",
    "StopTraining", "TrainArgs", "atomic_save", "autocast", "build_codec", "build_parser", "checkpoint_sha256",
    "export_codec", "gather_rng_states", "load_checkpoint", "main", "make_scaler", "plot_log", "read_log",
    "resolve_device", "restore_rng_states", "rng_state", "save_checkpoint", "seed_for", "set_rng_state",
    "setup_runtime", "stage1_training_summary", "train_loop", "train_stage1", "train_stage2", "training_summary",
]
