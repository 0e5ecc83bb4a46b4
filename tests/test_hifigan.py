"""Decoder, discriminators and losses (spec §7)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from jepa.config import SMALL, Stage2Config
from jepa.hifigan import (Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator, discriminator_loss,
                          feature_matching_loss, generator_adversarial_loss)
from jepa.losses import MaskedMRSTFTLoss, generator_loss

CFG = SMALL.model


@pytest.mark.parametrize("n_frames", [1, 3])
def test_generator_output_length_and_range(n_frames):
    gen = Generator(CFG).eval()
    with torch.no_grad():
        wav = gen(torch.randn(2, 128, n_frames))
    assert wav.shape == (2, 1, 9600 * n_frames + 384) == (2, 1, gen.output_length(n_frames))
    assert wav.abs().max() <= 1.0


def test_weight_norm_flag():
    names = [n for n, _ in Generator(CFG).named_parameters()]
    assert any("parametrizations.weight.original1" in n for n in names)
    plain = [n for n, _ in Generator(dataclasses.replace(CFG, weight_norm=False)).named_parameters()]
    assert not any("parametrizations" in n for n in plain)


def test_discriminator_outputs():
    wav = torch.randn(2, 1, 4000)
    mpd, msd = MultiPeriodDiscriminator(CFG), MultiScaleDiscriminator(CFG)
    logits, feats = mpd(wav)
    assert len(logits) == 5 and all(len(f) == 6 for f in feats)
    assert [f[0].shape[-1] for f in feats] == [2, 3, 5, 7, 11]  # folded by period
    logits, feats = msd(wav)
    assert len(logits) == 3 and all(len(f) == 7 for f in feats)
    with pytest.raises(ValueError):
        mpd(wav[:, 0])


def test_msd_pooling_modes():
    wav = torch.randn(1, 1, 4096)
    cum = MultiScaleDiscriminator(CFG)
    ref = MultiScaleDiscriminator(dataclasses.replace(CFG, msd_pooling="reference"))
    ref.load_state_dict(cum.state_dict())
    ref.discriminators[2].load_state_dict(ref.discriminators[1].state_dict())
    f_cum, f_ref = cum(wav)[1], ref(wav)[1]
    assert f_cum[1][0].shape == f_ref[1][0].shape  # x2 in both
    assert f_cum[2][0].shape[-1] < f_ref[2][0].shape[-1]  # x4 (cumulative) vs x2 (reference)
    torch.testing.assert_close(f_ref[2][0], f_ref[1][0])  # reference: same x2 input to scales 1 and 2


def test_lsgan_and_feature_matching_by_hand():
    real = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5]])]
    fake = [torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0]])]
    # sum_k mean((r-1)^2) + mean(f^2) = (0.5 + 0.5) + (0.25 + 4)
    assert discriminator_loss(real, fake).item() == pytest.approx(5.25)
    # sum_k mean((f-1)^2) = 0.5 + 1
    assert generator_adversarial_loss(fake).item() == pytest.approx(1.5)
    fr = [[torch.ones(2, 3), torch.zeros(4)]]
    ff = [[torch.zeros(2, 3), torch.full((4,), 0.5)]]
    assert feature_matching_loss(fr, ff).item() == pytest.approx(1.5)


def test_stft_loss_and_spectral_convergence_option():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000)
    loss = MaskedMRSTFTLoss()
    assert loss(x, x).item() == 0.0
    noisy = x + 0.1 * torch.randn_like(x)
    base = loss(noisy, x)
    assert base > 0
    with_sc = MaskedMRSTFTLoss(sc_weight=1.0)(noisy, x)
    assert with_sc > base
    assert MaskedMRSTFTLoss.from_config(Stage2Config()).sc_weight == 0.0  # off by default


def test_generator_loss_weights():
    torch.manual_seed(0)
    x, x_hat = torch.randn(1, 1, 4000), torch.randn(1, 1, 4000)
    cfg = Stage2Config()
    stft = MaskedMRSTFTLoss.from_config(cfg)
    plain = generator_loss(x_hat, x, stft, cfg)  # no mel loss, no mask: the paper's L1 + MR-STFT
    torch.testing.assert_close(plain["loss"], plain["l1"] + 2.0 * plain["stft"])
    mpd, msd = MultiPeriodDiscriminator(CFG), MultiScaleDiscriminator(CFG)
    terms = generator_loss(x_hat, x, stft, cfg, mpd_fake=mpd(x_hat), mpd_real=mpd(x),
                           msd_fake=msd(x_hat), msd_real=msd(x))
    torch.testing.assert_close(terms["loss"], terms["l1"] + 2.0 * terms["stft"] + 0.1 * (terms["adv"] + 2.0 * terms["fm"]))
    with pytest.raises(ValueError, match="all four"):
        generator_loss(x_hat, x, stft, cfg, mpd_fake=mpd(x_hat))
