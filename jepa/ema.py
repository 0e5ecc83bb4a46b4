"""Exponential moving average of the online encoder into the target encoder (spec §4.4), and the
momentum schedule: constant (the paper) or a cosine ramp towards 1 (BYOL / I-JEPA)."""
from __future__ import annotations

import math

import torch
from torch import nn


def ema_momentum(step: int, total_steps: int, tau: float, tau_end: float | None = None) -> float:
    """EMA momentum for the update after optimiser step `step` (0-based) of `total_steps`.

    ``tau_end`` None: the constant ``tau`` (the paper). Otherwise the cosine ramp
    ``tau_end - (tau_end - tau) * (1 + cos(pi * step / total_steps)) / 2``: ``tau`` at step 0,
    rising slowly at first and reaching ``tau_end`` at the end of the run (held there after it).

    Raises:
        ValueError: total_steps < 1 or taus outside 0 <= tau <= tau_end <= 1.
    """
    if tau_end is None:
        return tau
    if total_steps < 1 or not 0.0 <= tau <= tau_end <= 1.0:
        raise ValueError(f"ema_momentum needs total_steps >= 1 and 0 <= tau <= tau_end <= 1, got "
                         f"total_steps={total_steps}, tau={tau}, tau_end={tau_end}")
    progress = min(max(step, 0), total_steps) / total_steps
    return tau_end - (tau_end - tau) * (1.0 + math.cos(math.pi * progress)) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta_target <- tau * theta_target + (1 - tau) * theta_online, in place, for every parameter
    (DAAM included); buffers are copied. tau comes from :func:`ema_momentum`.

    Args:
        target: the EMA copy; must have the same parameter names and shapes as `online`.
        online: the trained module.
        tau: momentum in [0, 1].
    Raises:
        ValueError: if tau is outside [0, 1] or the two modules' parameters do not match.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"EMA tau must lie in [0, 1], got {tau}")
    t_params = dict(target.named_parameters())
    o_params = dict(online.named_parameters())
    if t_params.keys() != o_params.keys():
        raise ValueError("ema_update: target and online modules have different parameters")
    for name, p_t in t_params.items():
        if p_t.shape != o_params[name].shape:
            raise ValueError(f"ema_update: parameter {name} has shape {tuple(p_t.shape)} in the target but "
                             f"{tuple(o_params[name].shape)} in the online module")
        p_t.lerp_(o_params[name].detach().to(p_t.dtype), 1.0 - tau)
    o_buffers = dict(online.named_buffers())
    for name, b_t in target.named_buffers():
        b_t.copy_(o_buffers[name])
