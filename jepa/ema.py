"""Exponential moving average of the online encoder into the target encoder (spec §4.4)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta_target <- tau * theta_target + (1 - tau) * theta_online, in place, for every parameter
    (DAAM included); buffers are copied. tau is constant (0.996 in the paper, no ramp).

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
