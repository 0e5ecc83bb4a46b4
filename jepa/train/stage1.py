"""Stage 1: JEPA masked prediction in latent space with an EMA target encoder (spec §4).

Per step, on crops [B, 1, L] at 24 kHz (L whole hops), loudness-normalised: block masks
[B, T_z] drawn with a generator seeded by (seed, step, rank) -> ``JEPA`` forward (masked MSE,
plus the variance hinge when configured) -> ``Optim.step`` (clip, lr schedule) -> EMA update of
the target encoder with the momentum of ``jepa.ema.ema_momentum``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from jepa.config import JEPADAAMConfig, config_from_dict, config_to_dict
from jepa.ema import ema_momentum
from jepa.jepa import JEPA
from jepa.masking import block_mask
from jepa.monitor import CollapseMonitor, latent_quantizer
from jepa.train.checkpoint import CHECKPOINT_NAME
from jepa.train.common import (TrainArgs, adamw, load_data, loudness_normalize, open_run_folder, prepare_out,
                               step_batches)
from jepa.train.loop import Optim, RunFolder, State, StopTraining, train_loop
from jepa.train.runtime import Runtime, autocast, ddp, make_scaler, seed_for
from jepa.train.schedule import LRSchedule

log = logging.getLogger("jepa.train")

STAGE1_COLUMNS = ("step", "loss", "variance", "pred_std", "n_masked", "lr", "ema_tau", "grad_norm",
                  "mon_std", "mon_codes", "seconds")
"""log.csv columns: loss = masked MSE (the paper's loss), variance = the hinge term (0 when off),
mon_* = collapse monitor (monitor steps only)."""
STAGE1_PLOT = ("loss", "variance", "pred_std", "grad_norm", "mon_std", "mon_codes")


def train_stage1(cfg: JEPADAAMConfig, args: TrainArgs, rt: Runtime) -> Path:
    """Train stage 1 into ``args.out``; returns the checkpoint path.

    Raises:
        StopTraining: the collapse monitor stopped the run (after saving a checkpoint).
    """
    out, ckpt = prepare_out(args, rt)
    if ckpt is not None:
        if ckpt["stage"] != "stage1":
            raise ValueError(f"{out / CHECKPOINT_NAME} is a {ckpt['stage']} checkpoint, not stage1")
        saved = config_from_dict(ckpt["config"])
        cfg = dataclasses.replace(saved, stage1=dataclasses.replace(saved.stage1, steps=cfg.stage1.steps))
    s1 = cfg.stage1
    torch.manual_seed(s1.seed)
    model = JEPA(cfg.model, target_norm=s1.target_norm, variance_weight=s1.variance_weight).to(rt.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = Optim(adamw(params, s1.lr, s1.betas, s1.weight_decay), params, make_scaler(rt), LRSchedule.from_config(s1),
                  s1.grad_clip, key="optimizer", scaler_key="scaler")
    state = State("stage1", {"model": model}, {"model": optim},
                  extra={"config": config_to_dict(cfg), "world_size": rt.world_size, "data": str(args.data)})
    if ckpt is not None:
        state.restore(ckpt, rt)
    else:
        torch.manual_seed(seed_for(s1.seed, 1, rt.rank))  # dropout noise differs per rank
    ddp_model = ddp(model, rt)

    ds, clips = load_data(args, s1, cfg, rt)
    batches = step_batches(ds, s1.batch_size, s1.seed, rt)
    n_frames = model.context_encoder.num_frames(ds.crop_samples)
    run = RunFolder(out, open_run_folder(out, cfg, rt, STAGE1_COLUMNS, state.step if ckpt is not None else None),
                    STAGE1_PLOT, f"stage 1 ({cfg.name})")
    monitor = None
    if clips is not None:
        mon = CollapseMonitor(clips, model.context_encoder, latent_quantizer(cfg.model).to(rt.device),
                              lambda w: loudness_normalize(w, cfg), s1.monitor_min_std, stage="stage1")

        def monitor(step: int) -> tuple[dict[str, float], str | None]:
            values = mon.measure()
            return {"mon_std": values["between_clip_std"], "mon_codes": values["distinct_codes"]}, \
                mon.verdict(values, step)
    if rt.is_main:
        log.info("stage1: %d trainable parameters, crop %d samples -> %d frames, batch %d x %d ranks, steps %d..%d",
                 sum(p.numel() for p in params), ds.crop_samples, n_frames, batches.batch_size, rt.world_size,
                 state.step, s1.steps)

    def step_fn(st: State) -> dict[str, float]:
        wav = loudness_normalize(ds.batch(batches.indices(st.step), draw=st.step).to(rt.device), cfg)
        gen = torch.Generator().manual_seed(seed_for(s1.seed, 2, st.step, rt.rank))
        visible = block_mask(wav.shape[0], n_frames, gen, mask_ratio=s1.mask_ratio, min_span=s1.min_span)
        with autocast(rt):
            result = ddp_model(wav, visible.to(rt.device))
        loss = result["loss"].float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage1 step {st.step}: loss is {loss.item()}; stopping (last checkpoint kept)")
        grad_norm = optim.step(loss, st.step)
        tau = ema_momentum(st.step, s1.steps, s1.ema_tau, s1.ema_tau_end)
        model.update_target(tau)
        pred_std = float(result["pred_std"])
        if pred_std < s1.pred_std_warn and rt.is_main:
            log.warning("stage1 step %d: predictor output std %.4g < %.3g", st.step + 1, pred_std, s1.pred_std_warn)
        return {"loss": float(result["mse"].detach()), "variance": float(result["variance"].detach()), "pred_std": pred_std,
                "n_masked": float(result["n_masked"]), "lr": optim.lr, "ema_tau": tau, "grad_norm": grad_norm}

    model.train()
    stop = train_loop(state, step_fn, total=s1.steps, run=run, rt=rt, save_every=args.save_every,
                      max_minutes=args.max_minutes, monitor=monitor, monitor_every=s1.monitor_every,
                      progress=args.progress, postfix=("loss", "pred_std", "mon_std"))
    if run.csv_log is not None:
        run.csv_log.close()
    if stop is not None:
        raise StopTraining(stop)
    return out / CHECKPOINT_NAME

