"""Stage-2 decoder and GAN parts (spec §7): HiFi-GAN-style generator with SnakeBeta, multi-period
and multi-scale discriminators, and the L1 + MR-STFT + LSGAN + feature-matching losses.

Weight norm is on by default for every generator and discriminator conv (spec §10.7;
``weight_norm=False`` reproduces the reference, which has none).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jepa.config import ModelConfig, Stage2Config
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

class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of L1(|S_hat|, |S|) + L1(log(|S_hat| + 1e-5), log(|S| + 1e-5)) (spec §7.3),
    plus ``sc_weight`` times the spectral convergence ||S| - |S_hat||_F / ||S||_F (0 = off, the
    reference). STFT: Hann window of length n_fft, torch defaults (center=True, reflect padding).

    Args:
        fft_sizes / hop_sizes: one entry per resolution (2048..128 / 512..32).
        sc_weight: weight of the optional spectral-convergence term.
    Shapes: forward(wav_hat, wav), each [B, 1, T] or [B, T] -> scalar.
    """

    def __init__(self, fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128),
                 hop_sizes: Sequence[int] = (512, 256, 128, 64, 32), sc_weight: float = 0.0) -> None:
        super().__init__()
        if len(fft_sizes) != len(hop_sizes):
            raise ValueError(f"fft_sizes {tuple(fft_sizes)} and hop_sizes {tuple(hop_sizes)} differ in length")
        self.fft_sizes = tuple(fft_sizes)
        self.hop_sizes = tuple(hop_sizes)
        self.sc_weight = sc_weight
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    @classmethod
    def from_config(cls, cfg: Stage2Config) -> "MultiResolutionSTFTLoss":
        return cls(cfg.stft_fft_sizes, cfg.stft_hop_sizes, cfg.lambda_sc)

    def _magnitude(self, x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        window = getattr(self, f"window_{n_fft}")
        return torch.stft(x, n_fft, hop, n_fft, window, return_complex=True).abs()

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        if wav_hat.shape != wav.shape:
            raise ValueError(f"STFT loss needs equal shapes, got {tuple(wav_hat.shape)} and {tuple(wav.shape)}")
        x_hat = wav_hat.reshape(-1, wav_hat.shape[-1]).float()
        x = wav.reshape(-1, wav.shape[-1]).float()
        total = x_hat.new_zeros(())
        for n_fft, hop in zip(self.fft_sizes, self.hop_sizes):
            s_hat, s = self._magnitude(x_hat, n_fft, hop), self._magnitude(x, n_fft, hop)
            total = total + F.l1_loss(s_hat, s) + F.l1_loss(torch.log(s_hat + 1e-5), torch.log(s + 1e-5))
            if self.sc_weight:
                total = total + self.sc_weight * torch.linalg.norm(s - s_hat) / torch.linalg.norm(s).clamp_min(1e-8)
        return total / len(self.fft_sizes)


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator term: sum over sub-discriminators of mean((D(x_hat) - 1)^2)."""
    return sum(torch.mean((d - 1.0) ** 2) for d in fake_logits)


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Raw feature matching: sum over sub-discriminators and layers of mean|f(x_hat) - stopgrad f(x)|.
    The spec's factor 2 is ``Stage2Config.lambda_fm`` (applied by :func:`generator_loss`)."""
    return sum(
        torch.mean(torch.abs(f_fake - f_real.detach()))
        for real, fake in zip(real_features, fake_features)
        for f_real, f_fake in zip(real, fake)
    )


def discriminator_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss: sum_k mean((D_k(x) - 1)^2) + mean(D_k(x_hat)^2). Pass logits of
    x_hat.detach() so no gradient reaches the generator."""
    return sum(torch.mean((r - 1.0) ** 2) + torch.mean(f**2) for r, f in zip(real_logits, fake_logits))


def generator_loss(wav_hat: torch.Tensor, wav: torch.Tensor, stft_loss: MultiResolutionSTFTLoss,
                   cfg: Stage2Config, mpd_fake: DiscOutput | None = None, mpd_real: DiscOutput | None = None,
                   msd_fake: DiscOutput | None = None, msd_real: DiscOutput | None = None) -> dict[str, torch.Tensor]:
    """The generator objective of spec §7.3:

        L_G = l1 * L1 + stft * L_STFT + gan * (Adv_MPD + Adv_MSD + fm * (FM_MPD + FM_MSD))

    with (l1, stft, gan, fm) = (1, 2, 0.1, 2) in the paper. The GAN terms are added only when
    all four discriminator outputs are given (pass None before the discriminators start).

    Args:
        wav_hat / wav: [B, 1, T] reconstruction and target (crop padding out beforehand).
        stft_loss: :class:`MultiResolutionSTFTLoss`.
        cfg: loss weights.
        mpd_fake / msd_fake: discriminator outputs on wav_hat (not detached);
        mpd_real / msd_real: outputs on wav (features are detached inside).
    Returns:
        dict with ``loss`` (total) and the terms ``l1``, ``stft`` and, with GAN, ``adv``, ``fm``.
    """
    terms = {"l1": F.l1_loss(wav_hat, wav), "stft": stft_loss(wav_hat, wav)}
    loss = cfg.lambda_l1 * terms["l1"] + cfg.lambda_stft * terms["stft"]
    disc = (mpd_fake, mpd_real, msd_fake, msd_real)
    if all(d is not None for d in disc):
        terms["adv"] = generator_adversarial_loss(mpd_fake[0]) + generator_adversarial_loss(msd_fake[0])
        terms["fm"] = feature_matching_loss(mpd_real[1], mpd_fake[1]) + feature_matching_loss(msd_real[1], msd_fake[1])
        loss = loss + cfg.lambda_gan * (terms["adv"] + cfg.lambda_fm * terms["fm"])
    elif any(d is not None for d in disc):
        raise ValueError("generator_loss needs all four discriminator outputs (mpd/msd, fake/real) or none")
    terms["loss"] = loss
    return terms
