"""The model-side fixes of the tokenizer recipe (docs/model.md, departures D1-D4), on real speech.

D1 Kaiming init keeps the signal alive through the encoder; D2 DAAM components separate; D3 the
loudness gain travels as a header token and is restored; D4 the FSQ projection gives the
frame-rate presets their ~640 bit/s. Old checkpoints keep the paper's behaviour.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from jepa import loudness
from jepa.codec import JEPACodec
from jepa.config import PAPER, PAPER_REFERENCE, PRESETS, SMALL, SMALL_50HZ, SMALL_REFERENCE, config_from_dict, \
    config_to_dict
from jepa.daam import GaussianMixtureGate
from jepa.encoder import Encoder
from metrics.tokens import measured_bitrate, token_rates


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def _block_rms(encoder: Encoder, wav: torch.Tensor) -> tuple[list[float], torch.Tensor]:
    """RMS at the input conv and after every encoder block, and the encoder output."""
    with torch.inference_mode():
        h = encoder.input_conv(wav)
        levels = [_rms(h)]
        for block in encoder.blocks:
            h = block(h)
            levels.append(_rms(h))
        return levels, encoder.conformers(encoder.bottleneck(h))


@pytest.mark.parametrize("cfg, n_clips, seconds", [(SMALL, 8, 4.0), (SMALL_50HZ, 8, 4.0), (PAPER, 2, 1.6)],
                         ids=["small", "small-50hz", "paper"])
def test_kaiming_init_keeps_the_signal(speech_clips_24k, cfg, n_clips, seconds):
    torch.manual_seed(0)
    wav, _ = loudness.normalize(speech_clips_24k[:n_clips, :, : int(seconds * 24_000)], cfg.model)
    levels, z = _block_rms(Encoder(cfg.model).eval(), wav)
    ratios = [b / a for a, b in zip(levels, levels[1:])]
    assert all(0.1 <= r <= 3.0 for r in ratios), ratios
    between_clip_std = float(z.std(dim=0).mean())  # std over clips at each (channel, frame)
    assert between_clip_std > 0.1


def test_reference_init_loses_the_signal(speech_clips_24k):
    """The failure the Kaiming default fixes must be visible with the paper's init."""
    torch.manual_seed(0)
    levels, _ = _block_rms(Encoder(SMALL_REFERENCE.model).eval(), speech_clips_24k)
    assert levels[-1] < 1e-3 * _rms(speech_clips_24k)


def _train_gate(gate: GaussianMixtureGate, steps: int = 5) -> None:
    torch.manual_seed(1)
    a = torch.randn(4, 1, 50) * 0.01 + torch.linspace(0, 0.02, 50)  # small activations, as in the encoder
    target = torch.rand(4, 1, 50)
    opt = torch.optim.Adam(gate.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (gate(a) - target).pow(2).mean().backward()
        opt.step()


def test_daam_components_separate_in_normalized_mode():
    gate = GaussianMixtureGate(4, mode="normalized", delta_spread=1.0)
    _train_gate(gate)
    assert len({round(float(d), 4) for d in gate.delta.detach()}) == 4
    assert len({round(float(n), 4) for n in gate.nu.detach()}) == 4  # scales drift apart too: gradients differ


def test_daam_reference_components_stay_identical():
    gate = GaussianMixtureGate(4, mode="reference", delta_spread=0.0)
    _train_gate(gate)
    assert torch.allclose(gate.delta, gate.delta[0].expand(4))
    assert torch.allclose(gate.nu, gate.nu[0].expand(4))


def test_daam_normalized_gate_is_scale_invariant():
    gate = GaussianMixtureGate(4, mode="normalized", delta_spread=1.0)
    a = torch.randn(2, 1, 40)
    assert torch.allclose(gate(a), gate(a * 1e-5), atol=1e-5)
    assert float(gate(a * 1e-5).mean()) > 0.05  # the reference floor would switch it off here


def test_loudness_gain_round_trip_and_quantisation():
    m = SMALL.model
    wav = torch.randn(3, 1, 4800) * torch.tensor([1e-3, 0.05, 0.5])[:, None, None]
    normalised, index = loudness.normalize(wav, m)
    levels_db = 20 * torch.log10(normalised.pow(2).mean(dim=(1, 2)).sqrt())
    assert torch.all((levels_db - m.loudness_target_db).abs() <= m.loudness_gain_step_db / 2 + 1e-4)
    assert torch.allclose(loudness.restore(normalised, index, m), wav, rtol=1e-5, atol=1e-7)
    silence, index = loudness.normalize(torch.zeros(1, 1, 100), m)
    assert int(index) == m.loudness_gain_levels - 1 and not silence.any()


def test_loudness_off_is_the_identity():
    wav = torch.randn(2, 1, 100)
    out, index = loudness.normalize(wav, SMALL_REFERENCE.model)
    assert out is wav and torch.all(index == SMALL_REFERENCE.model.loudness_gain_levels // 2)


def test_gain_header_is_counted_and_restores_the_level(speech_clips_24k):
    torch.manual_seed(0)
    codec = JEPACodec(SMALL)
    clip = speech_clips_24k[0, 0]
    loud, quiet = codec.encode(clip * 0.5), codec.encode(clip * 0.5 * 10 ** (-39 / 20))  # 39 dB = 26 steps apart
    assert loud.header_vocab_sizes == (64,)
    assert loud.header_codes[0] - quiet.header_codes[0] == -26
    assert torch.equal(loud.codes, quiet.codes)  # the level is in the header, not in the frames
    seconds = clip.numel() / 24_000
    assert measured_bitrate(loud, seconds) == pytest.approx((10 * 256 + 6) / seconds)
    assert token_rates(loud, seconds)["tokens_per_s"] == pytest.approx((10 * 19 + 1) / seconds)
    out_loud, out_quiet = codec.decode(loud), codec.decode(quiet)
    assert _rms(out_loud) / _rms(out_quiet) == pytest.approx(10 ** (39.0 / 20), rel=0.01)


@pytest.mark.parametrize("name", ["small-50hz", "small-12.5hz"])
def test_frame_rate_presets_keep_640_bits(speech_clips_24k, name):
    cfg = PRESETS[name]
    assert 630 <= cfg.model.bitrate <= 650
    codec = JEPACodec(cfg)
    enc = codec.encode(speech_clips_24k[0, 0])
    assert enc.frame_rate == cfg.model.frame_rate
    assert enc.codes.shape == (cfg.model.tokens_per_frame, math.ceil(96_000 / cfg.model.hop_length))
    assert measured_bitrate(enc, 4.0) == pytest.approx(cfg.model.bitrate + 6 / 4.0, rel=1e-9)
    assert codec.decode(enc).shape == (96_000,)


def test_missing_keys_mean_the_paper_recipe():
    """A config written before the departures existed (e.g. the shipped format-2 checkpoint)
    loads with the paper's behaviour; presets round-trip unchanged."""
    old = config_to_dict(SMALL)
    for key in ("init", "daam_mode", "daam_delta_spread", "fsq_dim", "loudness_target_db"):
        old["model"].pop(key)
    loaded = config_from_dict(old).model
    assert loaded == dataclasses.replace(SMALL_REFERENCE.model)
    assert config_from_dict(config_to_dict(PAPER_REFERENCE)) == PAPER_REFERENCE
    v1 = JEPACodec.load(Path(__file__).resolve().parent / "data" / "jepa_daam_small_v1_collapsed.safetensors")
    assert v1.config.model.init == "reference" and v1.header_vocab_sizes == ()
