"""Building blocks shared by the encoder, predictor and decoder (spec §3).

* :class:`SnakeBeta`: the reference's periodic activation, one learnable value per channel.
* :class:`SameConv1d` / :class:`ResBlock1`: HiFi-GAN residual unit with 'same' padding and the
  exact centre-tap shortcut for dilations d >= T.
* :class:`ConformerBlock`: macaron Conformer without positional encoding.
* initialisation and weight-norm helpers, and an effective parameter count.

Tensor layout: [B, C, T] (batch, channels, time) unless stated otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

LRELU_SLOPE = 0.1


class SnakeBeta(nn.Module):
    """y = x + min(1/a, 10) * sin(a*x)^2 with a = softplus(raw) + 0.01 per channel (spec §3).

    Despite the name there is one learnable value per channel (``raw``, initialised to 0,
    i.e. a = log 2 + 0.01), not separate alpha and beta.

    Args:
        channels: number of channels C.
    Shapes: x [B, C, T] -> y [B, C, T].
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = (F.softplus(self.raw) + 0.01)[None, :, None]
        return x + torch.clamp(1.0 / a, max=10.0) * torch.sin(a * x).pow(2)


class SameConv1d(nn.Conv1d):
    """Stride-1 Conv1d with 'same' zero padding for an odd kernel and any dilation.

    When the dilation d is at least the input length T, every side tap reads only padding, so
    the convolution equals its centre tap (a 1x1 conv). That shortcut is exact and avoids
    padding a 45,600-sample signal by 78,125 zeros on each side (the encoder's deepest
    ResBlock1 dilation is 5**7 = 78,125, spec §3).

    Args:
        in_channels, out_channels, kernel_size: as nn.Conv1d; kernel_size must be odd.
        dilation: dilation d of the taps.
    Shapes: x [B, C_in, T] -> [B, C_out, T].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"SameConv1d needs an odd kernel_size, got {kernel_size}")
        super().__init__(
            in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if k > 1 and self.dilation[0] >= x.shape[-1]:
            centre = self.weight[:, :, k // 2 : k // 2 + 1]
            return F.conv1d(x, centre, self.bias)
        return super().forward(x)


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1 (spec §3): for each dilation d,
    ``x = x + conv_k(lrelu(conv_{k,d}(lrelu(x))))`` with LeakyReLU slope 0.1.

    Args:
        channels: channels C (unchanged by the block).
        kernel_size: odd kernel k of both convs.
        dilations: one dilation per residual unit (3 in the paper).
    Shapes: x [B, C, T] -> [B, C, T].
    """

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(SameConv1d(channels, channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(SameConv1d(channels, channels, kernel_size, 1) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            y = conv1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + conv2(F.leaky_relu(y, LRELU_SLOPE))
        return x


class FeedForward(nn.Module):
    """LN -> Linear(D, mD) -> GELU -> Dropout -> Linear(mD, D) -> Dropout. x [B, T, D] -> [B, T, D]."""

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mult * dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-LN multi-head self-attention with a fused qkv projection and no positional encoding.

    Args:
        dim: model width D; heads: number of heads (D divisible by heads);
        dropout: attention-probability dropout (training only).
    Shapes: x [B, T, D] -> [B, T, D].
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class ConvModule(nn.Module):
    """Conformer convolution module: GroupNorm(1) -> 1x1 D->2D -> GLU -> depthwise k -> GroupNorm(1)
    -> SiLU -> 1x1 D->D -> Dropout. Shapes: x [B, D, T] -> [B, D, T]."""

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(1, dim),
            nn.Conv1d(dim, 2 * dim, 1),
            nn.GLU(dim=1),
            nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim),
            nn.GroupNorm(1, dim),
            nn.SiLU(),
            nn.Conv1d(dim, dim, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConformerBlock(nn.Module):
    """Macaron Conformer block (spec §3), no positional encoding:

    ``x += 0.5*FFN(x); x += MHSA(LN(x)); x += Conv(x); x += 0.5*FFN2(x); x = LN(x)``

    Args:
        dim: width D; heads: attention heads; ff_mult: FFN expansion; conv_kernel: depthwise
        kernel; dropout: dropout everywhere (including attention probabilities).
    Shapes: x [B, D, T] -> [B, D, T] (channel-first like the rest of the model).
    """

    def __init__(self, dim: int, heads: int, ff_mult: int = 4, conv_kernel: int = 31, dropout: float = 0.1) -> None:
        super().__init__()
        self.ff1 = FeedForward(dim, ff_mult, dropout)
        self.attn = SelfAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, conv_kernel, dropout)
        self.ff2 = FeedForward(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [B, T, D]
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x.transpose(1, 2)).transpose(1, 2)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x).transpose(1, 2)


# ---- initialisation, weight norm (parameter counts: audiocore.params) ----------------------------

_INIT_TYPES = (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)
INIT_SCHEMES = ("kaiming", "reference")


def init_weights(module: nn.Module, std: float = 0.02, scheme: str = "reference") -> None:
    """Initialise every Conv1d, ConvTranspose1d and Linear inside `module`; biases 0.

    * ``"reference"`` (spec §4.4, the paper's code): every weight ~ truncated normal(0, std),
      truncated at +-2 std. With narrow layers each conv has a gain far below 1, so the signal
      vanishes through the encoder (SMALL: input RMS 0.076 -> bottleneck 4e-6, docs/model.md).
    * ``"kaiming"``: conv weights ~ Kaiming normal (fan-in; the LeakyReLU-0.1 gain for the convs
      inside residual units, which follow a LeakyReLU, gain 1 for the others), which keeps the
      variance of a conv's output near its input's; the second conv of every residual unit
      (:class:`ResBlock1` ``convs2``) is scaled by 1/(2 * units) so that a stack of residual
      units does not grow the signal either. Linear layers (attention, feed-forward, behind
      LayerNorms) keep the truncated normal(0, std) of the reference.

    Norm layers keep their defaults (weight 1, bias 0). Call before :func:`apply_weight_norm`.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme {scheme!r} is not valid; choose one of {INIT_SCHEMES}")
    after_lrelu = {id(c) for m in module.modules() if isinstance(m, ResBlock1) for c in (*m.convs1, *m.convs2)}
    for m in module.modules():
        if isinstance(m, _INIT_TYPES):
            if scheme == "kaiming" and not isinstance(m, nn.Linear):
                # Convs fed by a LeakyReLU get its gain; the others (strided convs on the
                # residual stream, projections) keep the variance with gain 1.
                nonlinearity = "leaky_relu" if id(m) in after_lrelu else "linear"
                nn.init.kaiming_normal_(m.weight, a=LRELU_SLOPE, mode="fan_in", nonlinearity=nonlinearity)
            else:
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if scheme == "kaiming":
        for m in module.modules():
            if isinstance(m, ResBlock1):
                with torch.no_grad():
                    for conv in m.convs2:
                        conv.weight.mul_(1.0 / (2 * len(m.convs2)))


def apply_weight_norm(module: nn.Module) -> None:
    """Weight-normalise (``torch.nn.utils.parametrizations.weight_norm``, dim 0) every Conv1d,
    ConvTranspose1d and Conv2d inside `module`, in place."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d)) and not parametrize.is_parametrized(m, "weight"):
            _weight_norm(m, name="weight")

