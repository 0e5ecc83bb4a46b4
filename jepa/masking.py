"""Block masks over latent frames for Stage-1 JEPA training (spec §4.3).

A mask is a bool tensor [B, T] with True = visible context frame, False = target frame. Each
sample is drawn independently with the reference's span sampler; a `torch.Generator` makes it
reproducible. The network knows nothing about how masks are drawn.
"""
from __future__ import annotations

import torch


def _sample_one(n_frames: int, n_target: int, min_span: int, max_span: int,
                generator: torch.Generator) -> torch.Tensor:
    """One mask [T]: spans of U{min_span, max_span} frames at U{0, max(1, T - l)} until the
    summed span lengths reach n_target (overlaps are still counted, as in the reference)."""
    visible = torch.ones(n_frames, dtype=torch.bool)
    count = 0
    while count < n_target:
        span = int(torch.randint(min_span, max_span + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, n_frames - span) + 1, (1,), generator=generator))
        visible[start : min(start + span, n_frames)] = False
        count += span
    return visible


def block_mask(batch: int, n_frames: int, generator: torch.Generator, mask_ratio: float = 0.5,
               min_span: int = 2, max_span: int | None = None) -> torch.Tensor:
    """Draw block masks for a batch.

    Args:
        batch: B, number of independent masks.
        n_frames: T, latent frames per sample.
        generator: seeded torch.Generator (CPU) that drives every draw.
        mask_ratio: n_target = floor(mask_ratio * T) frames are requested (0.5 in the paper).
        min_span: shortest span in frames (2).
        max_span: longest span; default max(4, T // 4) (the reference's rule).
    Returns:
        visible [B, T] bool: True = context, False = target. The realised target fraction
        differs from mask_ratio because spans overlap and are clipped at the end
        (T = 9: about 0.49; T = 37: about 0.45; spec §4.3).
    Raises:
        ValueError: for batch < 1, n_frames < 1, mask_ratio outside [0, 1) or min_span > max_span.
    """
    if batch < 1 or n_frames < 1:
        raise ValueError(f"block_mask needs batch >= 1 and n_frames >= 1, got batch={batch}, n_frames={n_frames}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    max_span = max(4, n_frames // 4) if max_span is None else max_span
    if not 1 <= min_span <= max_span:
        raise ValueError(f"need 1 <= min_span <= max_span, got min_span={min_span}, max_span={max_span}")
    n_target = int(mask_ratio * n_frames)
    return torch.stack([_sample_one(n_frames, n_target, min_span, max_span, generator) for _ in range(batch)])
