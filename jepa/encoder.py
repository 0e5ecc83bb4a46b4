"""The JEPA-DAAM encoder: 24 kHz waveform -> 128-d latents at 2.5 Hz (spec §4.1, §4.2).

Conv1d(1->64, k7) -> 5 x EncoderBlock (strides 8, 8, 5, 5, 6; DAAM gate at the end of each)
-> Conv1d(512->128, k1) -> 8 x Conformer(128). The online and EMA target encoders share it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from jepa.config import ModelConfig
from jepa.daam import make_daam_gate
from jepa.layers import ConformerBlock, ResBlock1, SnakeBeta, init_weights


def conv_output_length(length: int, stride: int) -> int:
    """Length after Conv1d(k=2s, stride s, pad floor(s/2)): floor((L + 2*floor(s/2) - 2s)/s) + 1."""
    return (length + 2 * (stride // 2) - 2 * stride) // stride + 1


class EncoderBlock(nn.Module):
    """Conv1d(in->out, k=2s, stride s, pad floor(s/2)) -> SnakeBeta -> n x ResBlock1(k, (1, 3^i, 5^i))
    -> DAAM gate (spec §4.1).

    Args:
        in_channels / out_channels: widths; stride: downsampling factor s;
        n_resblocks: ResBlock1 units (8 in the paper, dilations up to (1, 2187, 78125));
        kernel_size: ResBlock1 kernel; cfg: supplies the DAAM settings.
    Shapes: x [B, in, T] -> [B, out, floor((T + 2*floor(s/2) - 2s)/s) + 1].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, n_resblocks: int, kernel_size: int,
                 cfg: ModelConfig) -> None:
        super().__init__()
        self.down = nn.Conv1d(in_channels, out_channels, 2 * stride, stride=stride, padding=stride // 2)
        self.act = SnakeBeta(out_channels)
        self.resblocks = nn.Sequential(
            *(ResBlock1(out_channels, kernel_size, (1, 3**i, 5**i)) for i in range(n_resblocks))
        )
        self.gate = make_daam_gate(out_channels, cfg.use_daam, cfg.daam_components, cfg.daam_alpha_init,
                                   cfg.daam_nu_init, cfg.daam_mode, cfg.daam_delta_spread)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.resblocks(self.act(self.down(x))))


class Encoder(nn.Module):
    """Waveform encoder of spec §4.1.

    Args:
        cfg: model configuration (channels, strides, Conformer sizes, DAAM flags).
    Shapes: wav [B, 1, L] (24 kHz) -> z [B, latent_dim, num_frames(L)]; z is the output of the
    last Conformer, after its LayerNorm.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.enc_channels
        self.input_conv = nn.Conv1d(1, ch[0], cfg.enc_input_kernel, padding=cfg.enc_input_kernel // 2)
        self.blocks = nn.Sequential(
            *(EncoderBlock(ch[i], ch[i + 1], s, cfg.enc_resblocks, cfg.enc_resblock_kernel, cfg)
              for i, s in enumerate(cfg.enc_strides))
        )
        self.bottleneck = nn.Conv1d(ch[-1], cfg.latent_dim, 1)
        self.conformers = nn.Sequential(
            *(ConformerBlock(cfg.latent_dim, cfg.conformer_heads, cfg.conformer_ff_mult, cfg.conformer_conv_kernel,
                             cfg.dropout) for _ in range(cfg.conformer_layers))
        )
        init_weights(self, cfg.init_std, cfg.init)

    @property
    def hop_length(self) -> int:
        """Input samples per output frame: the product of the strides (9600)."""
        return math.prod(self.cfg.enc_strides)

    def num_frames(self, length: int) -> int:
        """Frames T_z produced for `length` input samples, by the conv-length formula of spec §4.2
        (9600*n samples give n - 1 frames). Returns 0 or less when the input is too short."""
        for s in self.cfg.enc_strides:
            length = conv_output_length(length, s)
        return length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"Encoder expects wav of shape [B, 1, L], got {tuple(wav.shape)}")
        if self.num_frames(wav.shape[-1]) < 1:
            raise ValueError(
                f"input of {wav.shape[-1]} samples is too short for one latent frame; "
                f"the encoder needs at least {2 * self.hop_length} samples (2 hops)"
            )
        x = self.blocks(self.input_conv(wav))
        return self.conformers(self.bottleneck(x))
