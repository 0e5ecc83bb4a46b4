"""The training recipe of issue 17 (items 4 and 5) and the collapse monitor.

Unit tests for the pieces (lr schedule, EMA ramp, target normalisation, variance hinge, gradient
clipping, mel loss, padding masks), the monitor's calibration on real speech (the shipped,
collapsed jepa-daam@small against fresh encoders), a training run that the monitor stops, and
exact resume of both stages with every new option on.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jepa import train
from jepa.config import SMALL, config_from_dict, config_to_dict
from jepa.data import CropDataset, load_utterances
from jepa.ema import ema_momentum, ema_update
from jepa.jepa import JEPA
from jepa.losses import MaskedMRSTFTLoss, MultiScaleMelLoss, generator_loss, sample_mask
from jepa.monitor import DEFAULT_MIN_STD, CollapseMonitor, between_clip_std, fixed_crops, latent_quantizer
from jepa.train.common import TrainArgs, load_data
from jepa.train.runtime import Runtime
from helpers import manifest_subset
from test_train import TINY, _common, _states_equal

#: The collapsed jepa-daam@small of the first release (format 2): its encoder ignores its input.
COLLAPSED_V1 = Path(__file__).resolve().parent / "data" / "jepa_daam_small_v1_collapsed.safetensors"

CPU = Runtime(torch.device("cpu"))


@pytest.fixture(scope="module")
def monitor_manifest(eval_manifest, tmp_path_factory) -> Path:
    """Eval utterances 5-8 (4.1-8.1 s), not among the 4 that the runs train on."""
    return manifest_subset(eval_manifest, tmp_path_factory.mktemp("mon") / "monitor.tsv", slice(4, 8))


@pytest.fixture(scope="module")
def eval_clips(eval_manifest) -> torch.Tensor:
    """4-s centre crops of 6 eval utterances, [6, 1, 96000] at 24 kHz."""
    waves, _ = load_utterances(eval_manifest, limit=12)
    clips, _ = fixed_crops(waves, 6, 96_000)
    assert clips.shape == (6, 1, 96_000)
    return clips


# ---- learning rate, EMA, clipping -----------------------------------------------------------------

def test_lr_schedule_values():
    cos = train.LRSchedule("cosine", total_steps=12, warmup_steps=2, final_fraction=0.1)
    assert [cos(s) for s in (0, 1)] == [0.5, 1.0]  # linear warm-up
    assert cos(2) == pytest.approx(1.0) and cos(11) == pytest.approx(0.1) and cos(50) == pytest.approx(0.1)
    assert cos(2 + 9 / 2) == pytest.approx(0.55)  # half-way down the cosine: (1 + 0.1) / 2
    factors = [cos(s) for s in range(2, 12)]
    assert all(a > b for a, b in zip(factors, factors[1:]))
    const = train.LRSchedule("constant", total_steps=12)
    assert {const(s) for s in range(20)} == {1.0}  # the paper: the configured lr at every step
    with pytest.raises(ValueError, match="lr_schedule"):
        train.LRSchedule("linear", 10)


def _tiny_optim(clip, schedule=None) -> tuple[train.Optim, torch.nn.Linear]:
    lin = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1)
    return train.Optim(opt, list(lin.parameters()), torch.amp.GradScaler("cpu", enabled=False),
                       schedule or train.LRSchedule("constant", 10), clip, "optimizer", "scaler"), lin


def test_optim_step_sets_the_scheduled_lr():
    optim, lin = _tiny_optim(None, train.LRSchedule("cosine", total_steps=6, warmup_steps=2, final_fraction=0.0))
    for step in range(6):
        optim.step(lin(torch.ones(2, 4)).sum(), step)
        assert optim.lr == pytest.approx(0.1 * optim.schedule(step))
    assert optim.lr == pytest.approx(0.0, abs=1e-12)


def test_gradient_clipping_is_active():
    x = torch.full((8, 4), 100.0)
    optim, lin = _tiny_optim(clip=1.0)
    norm = optim.step(lin(x).pow(2).sum(), 0)  # a huge gradient
    clipped = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in lin.parameters()]))
    assert norm > 1e3 and clipped == pytest.approx(1.0, rel=1e-4)
    # Without clipping the norm is measured and the gradient left exactly as it is.
    optim, lin = _tiny_optim(clip=None)
    loss = lin(x).pow(2).sum()
    expected = torch.autograd.grad(loss, list(lin.parameters()), retain_graph=True)
    norm = optim.step(loss, 0)
    assert all(torch.equal(p.grad, g) for p, g in zip(lin.parameters(), expected))
    assert norm == pytest.approx(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in expected]))))


def test_ema_momentum_ramp():
    assert ema_momentum(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert ema_momentum(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert ema_momentum(100, 100, 0.996, 1.0) == pytest.approx(1.0)
    taus = [ema_momentum(s, 100, 0.996, 1.0) for s in range(101)]
    assert all(a <= b for a, b in zip(taus, taus[1:]))
    assert {ema_momentum(s, 100, 0.996) for s in range(101)} == {0.996}  # tau_end None: the paper's constant
    online, target = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    before = target.weight.clone()
    ema_update(target, online, ema_momentum(100, 100, 0.996, 1.0))  # tau = 1 at the end: the target stays
    assert torch.equal(target.weight, before)
    with pytest.raises(ValueError):
        ema_momentum(0, 10, 0.999, 0.99)


# ---- stage-1 objective ----------------------------------------------------------------------------

def _jepa_batch(model: JEPA, seconds: float = 1.6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    wav = torch.randn(2, 1, int(seconds * 24_000)) * 0.1
    t_z = model.num_frames(wav.shape[-1])
    visible = torch.ones(2, t_z, dtype=torch.bool)
    visible[:, 1:3] = False
    return wav, visible


def test_target_layernorm_is_parameter_free_normalisation_of_the_targets():
    torch.manual_seed(0)
    model = JEPA(TINY.model, target_norm="layernorm").eval()
    wav, visible = _jepa_batch(model)
    out = model(wav, visible)
    with torch.no_grad():
        z_tgt = model.target_encoder(wav)
        norm = F.layer_norm(z_tgt.transpose(1, 2), (z_tgt.shape[1],)).transpose(1, 2)
        assert norm.mean(dim=1).abs().max() < 1e-5 and norm.var(dim=1, unbiased=False).sub(1).abs().max() < 1e-3
        z_ctx = model.context_features(wav, visible)
        m = visible[:, None, :].float()
        z_pred = model.predictor(z_ctx * m + model.mask_token * (1 - m))
        masked = ~visible
        expected = ((z_pred - norm).pow(2).sum(1) * masked).sum() / (masked.sum() * z_pred.shape[1])
    assert out["mse"].item() == pytest.approx(expected.item(), rel=1e-5)
    # The encoder ends in a LayerNorm with affine parameters; once they drift (here: x3, +0.5),
    # the normalised targets stay put while the paper's raw targets ("none") move.
    torch.manual_seed(0)
    raw = JEPA(TINY.model, target_norm="none").eval()
    last_norm = [m for m in model.target_encoder.modules() if isinstance(m, torch.nn.LayerNorm)][-1]
    raw_norm = [m for m in raw.target_encoder.modules() if isinstance(m, torch.nn.LayerNorm)][-1]
    before = raw(wav, visible)["mse"].item()
    with torch.no_grad():
        for ln in (last_norm, raw_norm):
            ln.weight.mul_(3.0)
            ln.bias.add_(0.5)
    assert model(wav, visible)["mse"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert raw(wav, visible)["mse"].item() > 2 * before
    with pytest.raises(ValueError, match="target_norm"):
        JEPA(TINY.model, target_norm="batchnorm")


def test_variance_term_pushes_the_prediction_std_up():
    torch.manual_seed(0)
    model = JEPA(TINY.model, variance_weight=1.0).eval()
    wav, visible = _jepa_batch(model)
    out = model(wav, visible)
    assert out["variance"].item() > 0 and out["loss"].item() == pytest.approx(
        out["mse"].item() + out["variance"].item(), rel=1e-6)
    grads = torch.autograd.grad(out["variance"], [model.predictor.net[-1].weight, model.mask_token],
                                allow_unused=True, retain_graph=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # A step down the hinge's gradient raises the std of the predictions.
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    hinge0 = out["variance"].item()
    opt.zero_grad()
    out["variance"].backward()
    opt.step()
    assert model(wav, visible)["variance"].item() < hinge0
    # Weight 0 (the paper): the objective is the masked MSE alone.
    torch.manual_seed(0)
    paper = JEPA(TINY.model).eval()
    res = paper(wav, visible)
    assert res["loss"] is res["mse"] and res["variance"].item() == 0.0


# ---- stage-2 losses and masks ---------------------------------------------------------------------

def test_mel_loss_zero_for_identical_signals_positive_otherwise(eval_clips):
    mel = MultiScaleMelLoss(24_000)
    y = eval_clips[:2, :, :48_000]
    assert mel(y, y).item() == 0.0
    assert mel(0.5 * y, y).item() > 1.0  # a 6 dB level error: ~0.3 log10 units on each of 7 scales
    noisy = y + 0.01 * torch.randn_like(y)
    assert 0 < mel(noisy, y).item() < mel(torch.zeros_like(y) + 1e-4 * torch.randn_like(y), y).item()
    assert len(mel.windows) == 7 and mel.n_mels[-1] == 320


def test_padding_does_not_count_in_any_loss(eval_clips):
    cfg = dataclasses.replace(SMALL.stage2, lambda_mel=15.0)
    stft, mel = MaskedMRSTFTLoss.from_config(cfg), MultiScaleMelLoss.from_config(cfg, 24_000)
    y = eval_clips[:2, :, :48_000].clone()
    lengths = torch.tensor([48_000, 30_000])
    y[1, :, 30_000:] = 0.0  # a short utterance, zero-padded by the collate
    mask = sample_mask(lengths, 48_000)
    assert mask[1, 0, :30_000].all() and not mask[1, 0, 30_000:].any()
    y_hat = y.clone()
    y_hat[1, :, 30_000:] = 0.3 * torch.randn(18_000)  # garbage where there is no audio
    masked = generator_loss(y_hat, y, stft, cfg, mel, mask)
    assert masked["l1"].item() == 0.0 and masked["stft"].item() < 1e-6 and masked["mel"].item() < 1e-6
    unmasked = generator_loss(y_hat, y, stft, cfg, mel, None)
    assert unmasked["l1"].item() > 0.01 and unmasked["stft"].item() > 0.1 and unmasked["mel"].item() > 0.1
    # Errors on real samples count in full: the mean runs over real samples, not padded ones.
    y_err = y + 0.1 * mask
    l1 = generator_loss(y_err, y, stft, cfg, mel, mask)["l1"].item()
    assert l1 == pytest.approx(0.1, rel=1e-5)
    # Without padding, the masked losses equal the unmasked ones.
    full = torch.ones_like(mask)
    a, b = generator_loss(y_err, y, stft, cfg, mel, full), generator_loss(y_err, y, stft, cfg, mel, None)
    for key in ("l1", "stft", "mel"):
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-5), key


def test_crop_dataset_pads_short_utterances_with_exact_zeros():
    waves = [np.full(10_000, 0.5, np.float32), np.full(3_000, 0.5, np.float32)]
    with pytest.raises(ValueError):
        CropDataset([waves[1]], 4_000)  # "drop": nothing is long enough
    ds = CropDataset(waves, 4_000, seed=3, pad_short=True)
    assert ds.n_padded == 1 and ds.n_dropped == 0 and len(ds) == 3 + 1
    for draw in range(5):
        wav, lengths = ds.batch_with_lengths([0, 3], draw)
        assert wav.shape == (2, 1, 4_000) and lengths.tolist() == [4_000, 3_000]
        assert torch.all(wav[1, 0, 3_000:] == 0) and torch.all(wav[1, 0, :3_000] != 0)
    assert len(CropDataset(waves, 4_000).waves) == 1  # the paper's rule drops it


# ---- the collapse monitor -------------------------------------------------------------------------

def test_monitor_sees_the_shipped_collapsed_encoder_and_passes_healthy_inits(eval_clips):
    from jepa.codec import JEPACodec

    shipped = JEPACodec.load(COLLAPSED_V1)
    mon = CollapseMonitor(eval_clips, shipped.encoder, shipped.quantize, lambda w: shipped.normalize_loudness(w)[0])
    values = mon.measure()
    t_z = shipped.encoder.num_frames(eval_clips.shape[-1])
    assert values["between_clip_std"] < 1e-3 < DEFAULT_MIN_STD  # measured 1.1e-5 on 16 clips
    assert values["distinct_codes"] <= t_z  # one code per position, whatever the clip
    assert values["frames"] == 6 * t_z
    message = mon.verdict(values, 7)
    assert message is not None and "collapsed" in message and "step 7" in message and "\n" not in message

    for cfg in (SMALL, config_from_dict({**config_to_dict(SMALL), "model": {
            k: v for k, v in config_to_dict(SMALL)["model"].items() if k != "init"}})):  # Kaiming and reference init
        torch.manual_seed(0)
        fresh = JEPA(cfg.model)
        healthy = CollapseMonitor(eval_clips, fresh.context_encoder, latent_quantizer(cfg.model), lambda w: w)
        values = healthy.measure()
        assert values["between_clip_std"] > 10 * DEFAULT_MIN_STD  # measured 0.83 (Kaiming), 0.96 (reference)
        assert values["distinct_codes"] == values["frames"]
        assert healthy.verdict(values, 1) is None
    assert fresh.context_encoder.training  # the monitor restored the mode it found


class _PositionOnly(torch.nn.Module):
    """An 'encoder' whose output depends only on the frame position: positional collapse."""

    def __init__(self, hop: int = 9600, channels: int = 8) -> None:
        super().__init__()
        self.hop = hop
        self.table = torch.nn.Parameter(torch.randn(channels, 64))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        t = wav.shape[-1] // self.hop - 1
        return self.table[:, :t].expand(wav.shape[0], -1, -1)


def test_monitor_sees_positional_collapse_that_the_old_pred_std_missed(eval_clips):
    enc = _PositionOnly()
    quant = latent_quantizer(dataclasses.replace(TINY.model, latent_dim=8, fsq_levels=(4,)))
    mon = CollapseMonitor(eval_clips, enc, quant, lambda w: w)
    values = mon.measure()
    assert values["between_clip_std"] == 0.0 and mon.verdict(values, 3) is not None
    z = enc(eval_clips)
    old_pred_std = z.transpose(1, 2).reshape(-1, z.shape[1]).std(dim=0, unbiased=False).mean()
    assert old_pred_std > 0.25  # the std over batch x time reads "healthy"
    assert between_clip_std(z + 0.1 * torch.randn_like(z)) > DEFAULT_MIN_STD


def test_monitor_holds_out_the_last_long_utterances(eval_manifest):
    cfg = dataclasses.replace(TINY, stage1=dataclasses.replace(TINY.stage1, monitor_clips=2, monitor_seconds=4.0))
    args = TrainArgs(data=str(eval_manifest), out=Path("unused"), data_limit=6)
    ds, clips = load_data(args, cfg.stage1, cfg, CPU)
    # Utterances 1-6 last 15.0, 12.6, 2.8, 5.1, 4.5 and 4.3 s: the last two are the monitor's.
    assert clips.shape == (2, 1, 96_000)
    ids = load_utterances(eval_manifest, limit=6)[1]
    assert ds.ids == ids[:4]
    with pytest.raises(ValueError, match="no training utterance is left"):
        load_data(TrainArgs(data=str(eval_manifest), out=Path("unused"), data_limit=2), cfg.stage1, cfg, CPU)
    too_long = dataclasses.replace(cfg.stage1, monitor_seconds=20.0)
    with pytest.raises(ValueError, match="collapse monitor needs at least 2"):
        load_data(args, too_long, cfg, CPU)


# ---- end to end: the monitor stops a collapsed run; exact resume with the recipe on -----------------

def test_training_stops_on_the_shipped_collapsed_encoder(eval_manifest, monitor_manifest, tmp_path):
    """Stage 2 on the shipped checkpoint's (collapsed) encoder: the monitor stops it at its first
    check with exit status 3, a one-line message and a saved checkpoint."""
    from jepa.codec import JEPACodec

    shipped = JEPACodec.load(COLLAPSED_V1)
    cfg = dataclasses.replace(shipped.config, stage2=dataclasses.replace(
        shipped.config.stage2, steps=3, batch_size=1, crop_seconds=1.6, monitor_every=1, monitor_clips=3,
        monitor_seconds=2.0, monitor_min_std=DEFAULT_MIN_STD))
    torch.manual_seed(0)
    jepa = JEPA(cfg.model)
    jepa.context_encoder.load_state_dict(shipped.encoder.state_dict())
    s1 = tmp_path / "s1.pt"
    train.save_checkpoint({"format": train.CHECKPOINT_FORMAT, "stage": "stage1", "step": 300,
                           "config": config_to_dict(cfg), "model": jepa.state_dict(), "wall_seconds": 0.0}, s1)
    (tmp_path / "cfg.json").write_text(json.dumps(config_to_dict(cfg)), encoding="utf-8")
    out = tmp_path / "run"
    status = train.main(["stage2", "--config", str(tmp_path / "cfg.json"), "--data", str(eval_manifest), "--out",
                         str(out), "--device", "cpu", "--data-limit", "2", "--no-progress", "--threads", "1",
                         "--init-from", str(s1), "--monitor-data", str(monitor_manifest)])
    assert status == train.EXIT_COLLAPSED
    log = train.read_log(out / train.LOG_NAME)
    assert list(log["step"]) == [1] and log["mon_std"][0] < 1e-3 and log["mon_codes"][0] <= 4
    assert np.isfinite(log["mon_mel"][0])
    assert train.load_checkpoint(out / train.CHECKPOINT_NAME)["step"] == 1


RECIPE = dataclasses.replace(
    TINY, name="tiny-recipe",
    stage1=dataclasses.replace(SMALL.stage1, batch_size=2, crop_seconds=1.6, warmup_steps=2, monitor_every=2,
                               monitor_clips=3, monitor_seconds=2.0, monitor_min_std=1e-6),
    stage2=dataclasses.replace(SMALL.stage2, batch_size=2, crop_seconds=4.0, warmup_steps=1, disc_start_fraction=0.5,
                               monitor_every=2, monitor_clips=3, monitor_seconds=2.0, monitor_min_std=1e-6),
)
RECIPE_S1_COLUMNS = ("loss", "variance", "pred_std", "lr", "ema_tau", "grad_norm", "mon_std", "mon_codes")
RECIPE_S2_COLUMNS = ("loss_g", "l1", "stft", "mel", "loss_d", "gan_active", "lr_g", "grad_norm_g", "grad_norm_d",
                     "real_fraction", "mon_std", "mon_codes", "mon_mel")


def _interrupted(command: list[str], out: Path, steps: int) -> None:
    """Train `steps` steps in sessions of one step each (--max-minutes), resuming every time."""
    for i in range(steps):
        extra = ["--resume"] if i else []
        assert train.main([*command, *extra, "--max-minutes", "1e-9"]) == 0
        assert train.load_checkpoint(out / train.CHECKPOINT_NAME)["step"] == i + 1


def _logs_equal(a: Path, b: Path, columns: tuple[str, ...]) -> None:
    la, lb = train.read_log(a / train.LOG_NAME), train.read_log(b / train.LOG_NAME)
    for c in ("step", *columns):
        np.testing.assert_array_equal(la[c], lb[c], err_msg=c)


def test_recipe_resume_is_exact(eval_manifest, monitor_manifest, tmp_path):
    """Both stages with every new option on (cosine lr with warm-up, EMA ramp, target LayerNorm,
    variance hinge, clipping, monitor, mel loss, padded short utterances, GAN for the last half):
    4 steps straight equal 4 sessions of one step, bit for bit."""
    cfg_path = tmp_path / "recipe.json"
    cfg_path.write_text(json.dumps(config_to_dict(RECIPE)), encoding="utf-8")
    mon = ["--monitor-data", str(monitor_manifest)]
    s1 = ["stage1", *_common(cfg_path, eval_manifest, tmp_path / "s1a", 4), *mon]
    assert train.main(s1) == 0
    _interrupted(["stage1", *_common(cfg_path, eval_manifest, tmp_path / "s1b", 4), *mon], tmp_path / "s1b", 4)
    a = train.load_checkpoint(tmp_path / "s1a" / train.CHECKPOINT_NAME)
    b = train.load_checkpoint(tmp_path / "s1b" / train.CHECKPOINT_NAME)
    assert _states_equal(a["model"], b["model"])
    _logs_equal(tmp_path / "s1a", tmp_path / "s1b", RECIPE_S1_COLUMNS)
    log = train.read_log(tmp_path / "s1a" / train.LOG_NAME)
    assert log["lr"][0] == pytest.approx(RECIPE.stage1.lr / 2) and log["lr"][1] == pytest.approx(RECIPE.stage1.lr)
    assert log["lr"][3] == pytest.approx(RECIPE.stage1.lr * RECIPE.stage1.lr_final_fraction)
    assert log["ema_tau"][0] == pytest.approx(0.996) and np.all(np.diff(log["ema_tau"]) > 0)
    assert (log["variance"] > 0).all() and (log["grad_norm"] > 0).all()
    assert np.isnan(log["mon_std"][[0, 2]]).all() and (log["mon_std"][[1, 3]] > 0.1).all()  # healthy TINY
    assert (log["mon_codes"][[1, 3]] > 1).all()

    init = ["--init-from", str(tmp_path / "s1a" / train.CHECKPOINT_NAME)]
    assert train.main(["stage2", *_common(cfg_path, eval_manifest, tmp_path / "s2a", 4), *mon, *init]) == 0
    _interrupted(["stage2", *_common(cfg_path, eval_manifest, tmp_path / "s2b", 4), *mon, *init], tmp_path / "s2b", 4)
    a = train.load_checkpoint(tmp_path / "s2a" / train.CHECKPOINT_NAME)
    b = train.load_checkpoint(tmp_path / "s2b" / train.CHECKPOINT_NAME)
    for key in ("codec", "mpd", "msd"):
        assert _states_equal(a[key], b[key]), key
    _logs_equal(tmp_path / "s2a", tmp_path / "s2b", RECIPE_S2_COLUMNS)
    log = train.read_log(tmp_path / "s2a" / train.LOG_NAME)
    assert list(log["gan_active"]) == [0, 0, 1, 1]  # disc_start_fraction 0.5 of 4 steps
    assert (log["mel"] > 0).all() and np.isfinite(log["grad_norm_g"]).all()
    assert np.isnan(log["grad_norm_d"][:2]).all() and np.isfinite(log["grad_norm_d"][2:]).all()
    # The 2.8-s utterance is zero-padded into a 4-s crop; some batch of the run holds it.
    assert (log["real_fraction"] <= 1).all() and (log["real_fraction"] < 1).any()
    assert np.isfinite(log["mon_mel"][[1, 3]]).all() and np.isnan(log["mon_mel"][[0, 2]]).all()
    assert (tmp_path / "s2a" / train.PLOT_NAME).stat().st_size > 1000


def test_torchrun_ddp_with_the_monitor(eval_manifest, monitor_manifest, tmp_path):
    """Two gloo processes: the monitor runs on rank 0 at every step, its columns reach the log."""
    import os
    import subprocess
    import sys

    from test_train import REPO_ROOT, _free_port

    cfg = dataclasses.replace(RECIPE, stage1=dataclasses.replace(RECIPE.stage1, monitor_every=1))
    cfg_path = tmp_path / "recipe.json"
    cfg_path.write_text(json.dumps(config_to_dict(cfg)), encoding="utf-8")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "jepa.train", "stage1", *_common(cfg_path, eval_manifest, out, 2), "--monitor-data",
           str(monitor_manifest)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = train.read_log(out / train.LOG_NAME)
    assert list(log["step"]) == [1, 2] and (log["mon_std"] > 0.1).all() and (log["mon_codes"] > 1).all()
