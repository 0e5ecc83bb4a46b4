"""Parameter counts of torch modules (the convention of paper-spec §9)."""
from __future__ import annotations

import torch
from torch.nn.utils import parametrize

__all__ = ["count_parameters"]


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module``; shared parameters are counted once.

    A weight-normalised layer counts its effective weight (the shape of ``weight``), not the
    direction ``v`` plus the gain ``g`` it is stored as (paper-spec §9): weight norm changes how
    a layer is trained, not its size. Modules without parametrizations count every parameter.

    Args:
        module: any torch module.
        trainable_only: count only parameters with ``requires_grad``.

    Raises:
        TypeError: ``module`` is not a ``torch.nn.Module``.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"count_parameters needs a torch.nn.Module, got {type(module).__name__}")
    total = sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
    for m in module.modules():
        if not parametrize.is_parametrized(m):
            continue
        for name, plist in m.parametrizations.items():
            stored = [p for p in plist.parameters() if p.requires_grad or not trainable_only]
            if stored:
                total += getattr(m, name).numel() - sum(p.numel() for p in stored)
    return total
