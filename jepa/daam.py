"""Density Adaptive Attention (DAAM) as used in the JEPA-DAAM paper (spec §3.1).

The gate is an equal-weight mixture of K Gaussians evaluated on a learned 1-channel projection
of the features, standardised over **time** per sample, and applied residually:
``y = x * (1 + alpha * gate)``. It is *not* the DAAM of arXiv 2401.11143 nor the
``gaussian-adaptive-attention`` package (see the spec's comparison table); do not substitute one.

The gate is computed in FP32 even under autocast, as in the paper.

Two modes (``ModelConfig.daam_mode``, docs/model.md departure D2):

* ``"reference"`` (the paper): delta_k in raw units of the projection, all K start at 0 with the
  same nu_k, and the variance over time is floored at 1e-6. The K components then receive
  identical gradients and never separate (K = 4 acts as K = 1), and with small activations the
  floor exceeds the true variance and the gate is ~0.
* ``"normalized"`` (default): the projection is standardised first, delta_k are in units of its
  std and start spread over [-spread, spread], and the floor is relative (1e-4 of the mean
  square), so every component sees a different part of the distribution whatever the scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VAR_FLOOR = 1e-6
REL_VAR_FLOOR = 1e-4
TINY = 1e-20
SCALE_FLOOR = 1e-3
EPS = 1e-8
MODES = ("normalized", "reference")


class GaussianMixtureGate(nn.Module):
    """gate(a) = exp(logsumexp_k log N_k(a) - log K), statistics over time (spec §3.1).

    For each sample: mu = mean_t a, std = sqrt(max(biased var_t a, 1e-6)),
    s_k = softplus(nu_k) + 1e-3, z_k = (a - (mu + delta_k)) / (std * s_k + 1e-8),
    log N_k = -z_k^2 / 2 - log s_k - log(2 pi) / 2. The gate is not normalised over time.

    In ``"normalized"`` mode the floor is max(1e-4 * mean_t a^2, 1e-20) and the means are
    mu + delta_k * std (delta_k in std units): z_k = ((a - mu) / std - delta_k) / (s_k + 1e-8).

    Args:
        components: K (4 in every layer of the paper).
        nu_init: initial nu_k (log 0.5, so s_k = 0.4065).
        mode: "normalized" or "reference" (see the module docstring).
        delta_spread: delta_k starts at linspace(-spread, spread, K) (0: all at 0, the paper).
    Shapes: a [B, 1, T] -> gate [B, 1, T], float32.
    """

    def __init__(self, components: int = 4, nu_init: float = math.log(0.5), mode: str = "reference",
                 delta_spread: float = 0.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"DAAM mode {mode!r} is not valid; choose one of {MODES}")
        self.components = components
        self.mode = mode
        init = torch.linspace(-delta_spread, delta_spread, components) if components > 1 else torch.zeros(1)
        self.delta = nn.Parameter(init.float())
        self.nu = nn.Parameter(torch.full((components,), float(nu_init)))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=a.device.type, enabled=False):
            a = a.float()
            mu = a.mean(dim=-1, keepdim=True)
            var = (a - mu).pow(2).mean(dim=-1, keepdim=True)
            if self.mode == "reference":
                var = var.clamp_min(VAR_FLOOR)
            else:
                var = torch.maximum(var, (REL_VAR_FLOOR * a.pow(2).mean(dim=-1, keepdim=True)).clamp_min(TINY))
            std = var.sqrt()
            s = F.softplus(self.nu.float()) + SCALE_FLOOR  # [K]
            delta = self.delta.float()
            # [B, 1, T, 1] against [K] -> [B, 1, T, K]
            if self.mode == "reference":
                z = (a[..., None] - (mu[..., None] + delta)) / (std[..., None] * s + EPS)
            else:
                z = ((a - mu) / std)[..., None].sub(delta).div(s + EPS)
            log_p = -0.5 * z.pow(2) - torch.log(s) - 0.5 * math.log(2 * math.pi)
            return torch.exp(torch.logsumexp(log_p, dim=-1) - math.log(self.components))


class GAttnGateG(nn.Module):
    """DAAM gated modulation at the end of each encoder block (spec §3.1, residual form):

    ``a = Conv1d(C -> 1, k=1)(x);  y = x * (1 + alpha * gate(a))``, alpha a free scalar (init 0.05).

    C + 10 parameters for K = 4 (projection C + 1, alpha 1, delta 4, nu 4).

    Args:
        channels: C.
        components: K Gaussians.
        alpha_init: initial alpha.
        nu_init: initial nu_k.
    Shapes: x [B, C, T] -> [B, C, T] (same dtype as x; the gate itself is FP32).
    """

    def __init__(self, channels: int, components: int = 4, alpha_init: float = 0.05,
                 nu_init: float = math.log(0.5), mode: str = "reference", delta_spread: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Conv1d(channels, 1, kernel_size=1)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.gate = GaussianMixtureGate(components, nu_init, mode, delta_spread)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(self.proj(x))  # [B, 1, T] float32
        return (x.float() * (1.0 + self.alpha.float() * g)).to(x.dtype)


def make_daam_gate(channels: int, use_daam: bool, components: int = 4, alpha_init: float = 0.05,
                   nu_init: float = math.log(0.5), mode: str = "reference", delta_spread: float = 0.0) -> nn.Module:
    """The encoder block's gate: :class:`GAttnGateG`, or ``nn.Identity`` (no parameters) when
    ``use_daam`` is False (the no-DAAM ablation, spec §10.14)."""
    if not use_daam:
        return nn.Identity()
    return GAttnGateG(channels, components, alpha_init, nu_init, mode, delta_spread)
