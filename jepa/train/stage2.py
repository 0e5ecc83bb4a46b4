"""Stage 2: FSQ on the stage-1 encoder and a HiFi-GAN decoder (spec §7).

Per step, on crops y [B, 1, L] (L whole hops, T_z = L/hop - 1 frames; with
short_utterances="pad" short utterances are zero-padded and a sample mask keeps the padding out
of every loss), loudness-normalised per utterance: z_q = codec.quantize(E(y)); y_hat = G(z_q)
[B, 1, hop*T_z + 384]; losses use the first min(L, len(y_hat)) samples of both (spec §10
item 8). Once step > disc_start (disc_start_step, or disc_start_fraction of the run) the MPD and
MSD take one step on L_D, then the generator's GAN terms (Adv + FM) join L1, MR-STFT and the
multi-scale mel loss. Generator (decoder, FSQ projection and, with finetune_encoder, the
encoder at its own lr) and discriminators each update through ``Optim.step``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jepa.config import JEPADAAMConfig, config_from_dict, config_to_dict
from jepa.hifigan import MultiPeriodDiscriminator, MultiScaleDiscriminator, discriminator_loss
from jepa.losses import MaskedMRSTFTLoss, MultiScaleMelLoss, generator_loss, sample_mask
from jepa.monitor import CollapseMonitor
from jepa.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from jepa.train.common import TrainArgs, adamw, load_data, open_run_folder, prepare_out, step_batches
from jepa.train.loop import Optim, RunFolder, State, StopTraining, train_loop
from jepa.train.runtime import Runtime, autocast, ddp, make_scaler, seed_for
from jepa.train.schedule import LRSchedule

log = logging.getLogger("jepa.train")

STAGE2_COLUMNS = ("step", "loss_g", "l1", "stft", "mel", "code_usage", "adv", "fm", "loss_d", "gan_active", "lr_g", "grad_norm_g",
                  "grad_norm_d", "real_fraction", "mon_std", "mon_codes", "mon_mel", "seconds")
"""log.csv columns (NaN = term not active yet; mon_* on monitor steps only; real_fraction = share
of the batch's samples that are audio, not padding)."""
STAGE2_PLOT = ("loss_g", "l1", "stft", "mel", "code_usage", "adv", "fm", "loss_d", "grad_norm_g", "mon_std",
               "mon_codes", "mon_mel")


def build_codec(cfg: JEPADAAMConfig, stage1_state: dict[str, torch.Tensor] | None) -> nn.Module:
    """A JEPACodec; its encoder is the stage-1 online encoder when `stage1_state` (a JEPA
    state dict) is given, else freshly initialised (to be overwritten by a codec state dict)."""
    from jepa.codec import JEPACodec
    from jepa.jepa import JEPA

    if stage1_state is None:
        return JEPACodec(cfg)
    jepa = JEPA(cfg.model)
    jepa.load_state_dict(stage1_state, strict=True)
    return JEPACodec.from_stage1(jepa, cfg)


def stage1_training_summary(s1_ckpt: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """What a stage-1 checkpoint was trained for: steps done / requested, wall seconds, data."""
    return {"steps_done": int(s1_ckpt["step"]),
            "steps_requested": int(config_from_dict(s1_ckpt["config"]).stage1.steps),
            "wall_seconds": float(s1_ckpt["wall_seconds"]), "world_size": int(s1_ckpt.get("world_size", 1)),
            "data": s1_ckpt.get("data"), "checkpoint": str(source)}


class Reconstruct(nn.Module):
    """y [B, 1, L] -> y_hat [B, 1, hop*T_z + 384] through encoder, ``codec.quantize`` and decoder.

    With a frozen encoder the encoder runs under no_grad (its parameters have requires_grad
    False, so DDP synchronises only the decoder and the FSQ projection).
    """

    def __init__(self, codec: nn.Module, finetune_encoder: bool, code_usage: bool = False) -> None:
        super().__init__()
        self.codec = codec
        self.finetune_encoder = finetune_encoder
        self.code_usage = code_usage

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (y_hat, FSQ usage deficit: a scalar, 0 when ``code_usage`` is off)."""
        with contextlib.nullcontext() if self.finetune_encoder else torch.no_grad():
            z = self.codec.encoder(y)
        z_q, _ = self.codec.quantize(z)
        usage = self.codec.code_usage_deficit(z) if self.code_usage else z.new_zeros(())
        return self.codec.decoder(z_q), usage


def normalize_rows(codec: nn.Module, y: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Loudness-normalise each crop on its real samples only (padding stays zero); y [B, 1, L]."""
    if lengths is None:
        return codec.normalize_loudness(y)[0]
    rows = [F.pad(codec.normalize_loudness(y[b:b + 1, :, : int(n)])[0], (0, y.shape[-1] - int(n)))
            for b, n in enumerate(lengths.tolist())]
    return torch.cat(rows)


def _float_outputs(out: tuple[list[torch.Tensor], list[list[torch.Tensor]]]
                   ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Discriminator (logits, features) cast to FP32 for the losses (no-op without AMP)."""
    logits, feats = out
    return [x.float() for x in logits], [[f.float() for f in fs] for fs in feats]


def _scalar(terms: dict[str, torch.Tensor], key: str) -> float:
    """A loss term as a float, NaN when the term is absent (e.g. GAN terms before they start)."""
    return float(terms[key].detach()) if key in terms else math.nan


def _stage1_source(cfg: JEPADAAMConfig, init_from: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The stage-1 JEPA state and training summary of --init-from, checked against `cfg`."""
    if init_from is None:
        raise ValueError("stage2 needs --init-from STAGE1_CHECKPOINT (the stage-1 encoder to quantise)")
    s1_ckpt = load_checkpoint(init_from)
    if s1_ckpt["stage"] != "stage1":
        raise ValueError(f"--init-from {init_from} is a {s1_ckpt['stage']} checkpoint; stage2 needs a stage1 one")
    s1_cfg = config_from_dict(s1_ckpt["config"])
    if s1_cfg.model != cfg.model:
        diff = {k: (getattr(s1_cfg.model, k), getattr(cfg.model, k))
                for k in config_to_dict(cfg)["model"] if getattr(s1_cfg.model, k) != getattr(cfg.model, k)}
        raise ValueError(f"--config model differs from the stage-1 checkpoint {init_from}: "
                         f"{{name: (stage1, given)}} = {diff}")
    return s1_ckpt["model"], stage1_training_summary(s1_ckpt, init_from)


def train_stage2(cfg: JEPADAAMConfig, args: TrainArgs, rt: Runtime, init_from: str | None) -> Path:
    """Train stage 2 into ``args.out`` from the stage-1 checkpoint `init_from`; returns the checkpoint path.

    Raises:
        StopTraining: the collapse monitor stopped the run (after saving a checkpoint).
    """
    out, ckpt = prepare_out(args, rt)
    stage1_state = None
    if ckpt is not None:
        if ckpt["stage"] != "stage2":
            raise ValueError(f"{out / CHECKPOINT_NAME} is a {ckpt['stage']} checkpoint, not stage2")
        saved = config_from_dict(ckpt["config"])
        cfg = dataclasses.replace(saved, stage2=dataclasses.replace(saved.stage2, steps=cfg.stage2.steps))
        init_from, stage1_summary = ckpt.get("init_from"), ckpt.get("stage1")
    else:
        stage1_state, stage1_summary = _stage1_source(cfg, init_from)
    s2, m = cfg.stage2, cfg.model
    torch.manual_seed(s2.seed)
    codec = build_codec(cfg, stage1_state).to(rt.device)
    mpd, msd = MultiPeriodDiscriminator(m).to(rt.device), MultiScaleDiscriminator(m).to(rt.device)
    stft_loss = MaskedMRSTFTLoss.from_config(s2).to(rt.device)
    mel_loss = MultiScaleMelLoss.from_config(s2, m.sample_rate).to(rt.device)

    encoder, decoder = codec.encoder, codec.decoder
    g_groups: list[dict[str, Any]] = [{"params": [p for n, p in codec.named_parameters()
                                                  if not n.startswith("encoder.")], "lr": s2.lr_g}]
    if s2.finetune_encoder:
        g_groups.append({"params": list(encoder.parameters()), "lr": s2.lr_encoder})
    else:
        encoder.requires_grad_(False)
    g_params = [p for g in g_groups for p in g["params"]]
    d_params = list(mpd.parameters()) + list(msd.parameters())
    schedule = LRSchedule.from_config(s2)
    optim_g = Optim(torch.optim.AdamW(g_groups, betas=tuple(s2.betas), weight_decay=s2.weight_decay), g_params,
                    make_scaler(rt), schedule, s2.grad_clip, key="opt_g", scaler_key="scaler_g")
    optim_d = Optim(adamw(d_params, s2.lr_d, s2.betas, s2.weight_decay), d_params, make_scaler(rt), schedule,
                    s2.grad_clip_d, key="opt_d", scaler_key="scaler_d")
    state = State("stage2", {"codec": codec, "mpd": mpd, "msd": msd}, {"g": optim_g, "d": optim_d},
                  extra={"config": config_to_dict(cfg), "world_size": rt.world_size, "data": str(args.data),
                         "init_from": init_from, "stage1": stage1_summary})
    if ckpt is not None:
        state.restore(ckpt, rt)
    else:
        torch.manual_seed(seed_for(s2.seed, 1, rt.rank))
    g_module = ddp(Reconstruct(codec, s2.finetune_encoder, code_usage=s2.lambda_code_usage > 0), rt)
    mpd_ddp, msd_ddp = ddp(mpd, rt), ddp(msd, rt)

    ds, clips = load_data(args, s2, cfg, rt)
    batches = step_batches(ds, s2.batch_size, s2.seed, rt)
    run = RunFolder(out, open_run_folder(out, cfg, rt, STAGE2_COLUMNS, state.step if ckpt is not None else None),
                    STAGE2_PLOT, f"stage 2 ({cfg.name})")
    monitor = None
    if clips is not None:
        mon = CollapseMonitor(clips, encoder, codec.quantize, lambda w: codec.normalize_loudness(w)[0],
                              s2.monitor_min_std, decoder=decoder, mel_loss=mel_loss, modules=(codec,), stage="stage2")

        def monitor(step: int) -> tuple[dict[str, float], str | None]:
            values = mon.measure()
            return {"mon_std": values["between_clip_std"], "mon_codes": values["distinct_codes"],
                    "mon_mel": values["mel_distance"]}, mon.verdict(values, step)
    if rt.is_main:
        log.info("stage2: %d trainable generator parameters (encoder %s), %d discriminator parameters, crop %d "
                 "samples, batch %d x %d ranks, GAN after step %d, steps %d..%d", sum(p.numel() for p in g_params),
                 "fine-tuned" if s2.finetune_encoder else "frozen", sum(p.numel() for p in d_params),
                 ds.crop_samples, batches.batch_size, rt.world_size, s2.disc_start, state.step, s2.steps)

    def step_fn(st: State) -> dict[str, float]:
        disc_active = st.step + 1 > s2.disc_start
        gan_active = disc_active or s2.gan_from_step0
        y_full, lengths = ds.batch_with_lengths(batches.indices(st.step), draw=st.step)
        padded = bool((lengths < y_full.shape[-1]).any())
        y_full = normalize_rows(codec, y_full.to(rt.device), lengths if padded else None)
        with autocast(rt):
            y_hat, usage = g_module(y_full)
        n = min(y_full.shape[-1], y_hat.shape[-1])
        y, y_hat = y_full[..., :n], y_hat[..., :n].float()
        mask = sample_mask(lengths.to(rt.device), n) if padded else None
        y_fake = y_hat if mask is None else y_hat * mask  # padding equals the target's zeros

        loss_d, grad_norm_d = torch.zeros((), device=rt.device), math.nan
        if disc_active:
            with autocast(rt):
                r_mpd = mpd_ddp(torch.cat([y, y_fake.detach()]))[0]
                r_msd = msd_ddp(torch.cat([y, y_fake.detach()]))[0]
            b = y.shape[0]
            loss_d = discriminator_loss([o[:b].float() for o in r_mpd], [o[b:].float() for o in r_mpd]) + \
                discriminator_loss([o[:b].float() for o in r_msd], [o[b:].float() for o in r_msd])
            grad_norm_d = optim_d.step(loss_d, st.step)

        disc_out: dict[str, Any] = {}
        if gan_active:
            for key, d, d_ddp in (("mpd", mpd, mpd_ddp), ("msd", msd, msd_ddp)):
                with torch.no_grad(), autocast(rt):
                    disc_out[f"{key}_real"] = _float_outputs(d(y))
                with autocast(rt):
                    disc_out[f"{key}_fake"] = _float_outputs(d_ddp(y_fake))
        terms = generator_loss(y_hat, y, stft_loss, s2, mel_loss, mask, **disc_out)
        loss_g = terms["loss"] + s2.lambda_code_usage * usage.float()
        if not torch.isfinite(loss_g):
            raise FloatingPointError(f"stage2 step {st.step}: generator loss is {loss_g.item()}; stopping "
                                     "(last checkpoint kept)")
        # The generator backward also fills discriminator grads; the next D step clears them first.
        grad_norm_g = optim_g.step(loss_g, st.step)
        return {"loss_g": loss_g.item(), "l1": terms["l1"].item(), "stft": terms["stft"].item(),
                "mel": _scalar(terms, "mel"), "code_usage": float(usage.detach()), "adv": _scalar(terms, "adv"), "fm": _scalar(terms, "fm"),
                "loss_d": loss_d.item() if disc_active else math.nan, "gan_active": float(gan_active),
                "lr_g": optim_g.lr, "grad_norm_g": grad_norm_g, "grad_norm_d": grad_norm_d,
                "real_fraction": float(lengths.clamp(max=n).sum()) / (lengths.numel() * n)}

    decoder.train()
    mpd.train()
    msd.train()
    encoder.train(s2.finetune_encoder)
    stop = train_loop(state, step_fn, total=s2.steps, run=run, rt=rt, save_every=args.save_every,
                      max_minutes=args.max_minutes, monitor=monitor, monitor_every=s2.monitor_every,
                      progress=args.progress, postfix=("l1", "stft", "mel", "loss_d", "mon_std"))
    if run.csv_log is not None:
        run.csv_log.close()
    if stop is not None:
        raise StopTraining(stop)
    return out / CHECKPOINT_NAME
