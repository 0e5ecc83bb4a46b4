"""Stage 1 (spec §4.3, §4.4, §10.2): mask leak fix, masked MSE, frame_valid, N_masked = 0 guard."""
from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch

from jepa.config import SMALL
from jepa.jepa import JEPA, frames_to_samples
from jepa.masking import block_mask

HOP = 9600
N_HOPS = 4  # 1.6 s -> T_z = 3


@functools.lru_cache(maxsize=None)
def _shared_model(masking: str) -> JEPA:
    torch.manual_seed(0)
    return JEPA(dataclasses.replace(SMALL.model, context_masking=masking)).eval()


def _model(masking: str) -> JEPA:
    """A fresh copy (tests may train or modify it) of one SMALL JEPA built per masking mode."""
    return copy.deepcopy(_shared_model(masking))


@pytest.fixture(scope="module")
def wav_and_mask():
    g = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(2, 1, N_HOPS * HOP, generator=g)
    visible = torch.tensor([[True, False, True], [False, True, False]])
    return wav, visible


def _perturb_masked(wav: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Replace the audio inside every masked frame by different noise."""
    inside = ~frames_to_samples(visible, HOP, wav.shape[-1])
    return torch.where(inside, 0.3 * torch.randn_like(wav), wav)


@torch.no_grad()
def test_input_masking_hides_masked_audio_from_context_encoder(wav_and_mask):
    wav, visible = wav_and_mask
    model = _model("input")
    changed = _perturb_masked(wav, visible)
    assert not torch.equal(changed, wav)
    assert torch.equal(model.context_features(wav, visible), model.context_features(changed, visible))
    # the target encoder does see the change (it is the full-signal teacher)
    assert not torch.allclose(model.target_encoder(wav), model.target_encoder(changed))


@torch.no_grad()
def test_latent_masking_reproduces_reference_leak(wav_and_mask):
    wav, visible = wav_and_mask
    model = _model("latent")
    changed = _perturb_masked(wav, visible)
    z, z_changed = model.context_features(wav, visible), model.context_features(changed, visible)
    # visible frames' features change: the context encoder saw the targets' audio
    assert (z - z_changed).abs()[:, :, visible[0]].max() > 1e-4


def test_loss_is_masked_mse_and_gradients_flow(wav_and_mask):
    wav, visible = wav_and_mask
    model = _model("input")
    out = model(wav, visible)
    with torch.no_grad():
        z_ctx = model.context_features(wav, visible)
        m = visible[:, None, :].float()
        z_pred = model.predictor(z_ctx * m + model.mask_token * (1 - m))
        z_tgt = model.target_encoder(wav)
        diff = (z_pred - z_tgt).pow(2).transpose(1, 2)[~visible]  # [N_masked, C]
    assert out["n_masked"].item() == 3
    torch.testing.assert_close(out["loss"].detach(), diff.mean())
    out["loss"].backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert model.context_encoder.input_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.target_encoder.parameters())
    std = z_pred.transpose(1, 2).reshape(-1, z_pred.shape[1]).std(dim=0, unbiased=False).mean()
    torch.testing.assert_close(out["pred_std"], std)


def test_frame_valid_excludes_padded_frames(wav_and_mask):
    wav, visible = wav_and_mask
    model = _model("input")
    valid = torch.ones_like(visible)
    valid[0, 1:] = False  # sample 0's last two frames are padding
    out = model(wav, visible, frame_valid=valid)
    assert out["n_masked"].item() == 2  # sample 0 loses masked frame 1
    full = model(wav, visible)
    assert not torch.isclose(out["loss"], full["loss"])


def test_no_masked_frame_gives_zero_loss_with_graph(wav_and_mask):
    wav, _ = wav_and_mask
    model = _model("input")
    out = model(wav, torch.ones(2, 3, dtype=torch.bool))
    assert out["n_masked"].item() == 0 and out["loss"].item() == 0.0
    out["loss"].backward()  # no NaN, no error


def test_bad_mask_shape_raises(wav_and_mask):
    wav, _ = wav_and_mask
    with pytest.raises(ValueError, match="visible"):
        _model("input")(wav, torch.ones(2, 5, dtype=torch.bool))


def test_target_stays_eval_and_ema_moves_it():
    model = _model("input").train()
    assert model.context_encoder.training and not model.target_encoder.training
    with torch.no_grad():
        for p in model.context_encoder.parameters():
            p.add_(1.0)
    before = model.target_encoder.input_conv.weight.clone()
    model.update_target(0.996)
    after = model.target_encoder.input_conv.weight
    torch.testing.assert_close(after, 0.996 * before + 0.004 * model.context_encoder.input_conv.weight)


def test_block_mask_feeds_the_model():
    model = _model("input")
    wav = 0.1 * torch.randn(3, 1, N_HOPS * HOP)
    visible = block_mask(3, model.num_frames(wav.shape[-1]), torch.Generator().manual_seed(5))
    out = model(wav, visible)
    assert torch.isfinite(out["loss"]) and out["n_masked"] == (~visible).sum()
