"""Stage-2 decoder and GAN parts (spec §7): HiFi-GAN-style generator with SnakeBeta, multi-period
and multi-scale discriminators, and the LSGAN + feature-matching losses
(the L1, MR-STFT and mel losses and the generator objective are in :mod:`jepa.losses`).

Weight norm is on by default for every generator and discriminator conv (spec §10.7;
``weight_norm=False`` reproduces the reference, which has none).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jepa.config import ModelConfig
from jepa.layers import LRELU_SLOPE, ResBlock1, SnakeBeta, apply_weight_norm, init_weights

DiscOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


# ---- generator -------------------------------------------------------------------------------

class MRF(nn.Module):
    """Multi-receptive-field fusion: mean over kernels k of ResBlock1(c, k, dilations).

    Shapes: x [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, kernels: Sequence[int], dilations: Sequence[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock1(channels, k, dilations) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)
        for block in self.blocks[1:]:
            out = out + block(x)
        return out / len(self.blocks)


class UpsampleStage(nn.Module):
    """SnakeBeta(c_in) -> ConvTranspose1d(c_in -> c_out, k=2s, stride s, pad floor(s/2)) -> MRF(c_out).

    Output length: (T + 1)*s - 2*floor(s/2) (6T, 5T+1, 8T for s = 6, 5, 8).
    Shapes: x [B, c_in, T] -> [B, c_out, T']."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.act = SnakeBeta(in_channels)
        self.up = nn.ConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride, padding=stride // 2)
        self.mrf = MRF(out_channels, cfg.mrf_kernels, cfg.mrf_dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mrf(self.up(self.act(x)))


class Generator(nn.Module):
    """Decoder of spec §7.1: Conv1d(C->512, k1) -> 5 upsampling stages (x6, x5, x5, x8, x8)
    -> Conv1d(64->1, k7) -> tanh.

    Args:
        cfg: uses latent_dim, dec_channels, dec_strides, mrf_kernels, mrf_dilations,
            dec_output_kernel, init_std and weight_norm.
    Shapes: z_q [B, C, T] -> wav [B, 1, output_length(T)] = [B, 1, 9600*T + 384] for PAPER.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.dec_channels
        self.input_conv = nn.Conv1d(cfg.latent_dim, ch[0], 1)
        self.stages = nn.Sequential(
            *(UpsampleStage(ch[i], ch[i + 1], s, cfg) for i, s in enumerate(cfg.dec_strides))
        )
        k = cfg.dec_output_kernel
        self.output_conv = nn.Conv1d(ch[-1], 1, k, padding=k // 2)
        init_weights(self, cfg.init_std, cfg.init)
        if cfg.init == "kaiming":
            # A Kaiming-scaled last conv saturates the tanh (74 % of samples above 0.99 in the
            # first 50 Hz probe, tokenizer notes); start it 100x smaller.
            with torch.no_grad():
                self.output_conv.weight.mul_(0.01)
        if cfg.weight_norm:
            apply_weight_norm(self)

    def output_length(self, n_frames: int) -> int:
        """Samples produced for `n_frames` latent frames (9600*T + 384 for PAPER)."""
        length = n_frames
        for s in self.cfg.dec_strides:
            length = (length + 1) * s - 2 * (s // 2)
        return length

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        if z_q.dim() != 3 or z_q.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"Generator expects z_q of shape [B, {self.cfg.latent_dim}, T], got {tuple(z_q.shape)}")
        return torch.tanh(self.output_conv(self.stages(self.input_conv(z_q))))


# ---- discriminators --------------------------------------------------------------------------

def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LeakyReLU(0.1) after every conv, then the post conv; features after every layer.
    Returns (logits flattened to [B, N], features)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator (spec §7.2): reflect-pad to a multiple of the period, fold to
    [B, 1, T/p, p], Conv2d (k, 1) stride (s, 1) layers, a stride-1 layer, a (3, 1) post conv.

    Shapes: wav [B, 1, T] -> (logits [B, N], features: list of [B, C_l, T_l, p])."""

    def __init__(self, period: int, channels: Sequence[int], kernel: int, stride: int) -> None:
        super().__init__()
        self.period = period
        convs = []
        c_in = 1
        for i, c_out in enumerate(channels):
            s = 1 if i == len(channels) - 1 else stride
            convs.append(nn.Conv2d(c_in, c_out, (kernel, 1), (s, 1), padding=(kernel // 2, 0)))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.post = nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        return _conv_stack(self.convs, self.post, wav.view(b, c, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """One MelGAN-style MSD sub-discriminator (spec §7.2): grouped Conv1d layers (padding k//2),
    LeakyReLU 0.1 after each, then a k3 post conv.

    Shapes: wav [B, 1, T] -> (logits [B, N], features: list of [B, C_l, T_l])."""

    def __init__(self, channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
                 groups: Sequence[int]) -> None:
        super().__init__()
        convs = []
        c_in = 1
        for c_out, k, s, g in zip(channels, kernels, strides, groups):
            convs.append(nn.Conv1d(c_in, c_out, k, s, padding=k // 2, groups=g))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.post = nn.Conv1d(c_in, 1, 3, 1, padding=1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _conv_stack(self.convs, self.post, wav)


def _check_wav(wav: torch.Tensor, who: str) -> None:
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"{who} expects wav of shape [B, 1, T], got {tuple(wav.shape)}")


class MultiPeriodDiscriminator(nn.Module):
    """MPD over periods (2, 3, 5, 7, 11). forward(wav [B, 1, T]) -> (list of logits, list of
    feature lists), one entry per period."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, cfg.mpd_channels, cfg.mpd_kernel, cfg.mpd_stride) for p in cfg.mpd_periods
        )
        if cfg.weight_norm:
            apply_weight_norm(self)

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        _check_wav(wav, "MultiPeriodDiscriminator")
        outputs = [d(wav) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class MultiScaleDiscriminator(nn.Module):
    """MSD with `msd_scales` sub-discriminators. Inputs: "cumulative" pooling (default, spec §10.10)
    feeds x, pool(x), pool(pool(x)) (x1, x2, x4); "reference" feeds x, pool(x), pool(x) (x1, x2, x2).
    pool = AvgPool1d(4, 2, padding 2). forward(wav [B, 1, T]) -> (logits list, feature lists)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cumulative = cfg.msd_pooling == "cumulative"
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(cfg.msd_channels, cfg.msd_kernels, cfg.msd_strides, cfg.msd_groups)
            for _ in range(cfg.msd_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)
        if cfg.weight_norm:
            apply_weight_norm(self)

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        _check_wav(wav, "MultiScaleDiscriminator")
        logits, features = [], []
        x = wav
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = self.pool(x if self.cumulative else wav)
            out, feats = d(x)
            logits.append(out)
            features.append(feats)
        return logits, features


# ---- losses ----------------------------------------------------------------------------------

def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator term: sum over sub-discriminators of mean((D(x_hat) - 1)^2)."""
    return sum(torch.mean((d - 1.0) ** 2) for d in fake_logits)


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Raw feature matching: sum over sub-discriminators and layers of mean|f(x_hat) - stopgrad f(x)|.
    The spec's factor 2 is ``Stage2Config.lambda_fm`` (applied by :func:`jepa.losses.generator_loss`)."""
    return sum(
        torch.mean(torch.abs(f_fake - f_real.detach()))
        for real, fake in zip(real_features, fake_features)
        for f_real, f_fake in zip(real, fake)
    )


def discriminator_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss: sum_k mean((D_k(x) - 1)^2) + mean(D_k(x_hat)^2). Pass logits of
    x_hat.detach() so no gradient reaches the generator."""
    return sum(torch.mean((r - 1.0) ** 2) + torch.mean(f**2) for r, f in zip(real_logits, fake_logits))
