"""Block masks (spec §4.3) and the EMA update (spec §4.4)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from jepa.ema import ema_update
from jepa.masking import block_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shape_dtype_and_targets_present():
    m = block_mask(16, 9, _gen(0))
    assert m.shape == (16, 9) and m.dtype == torch.bool
    assert (~m).any(dim=1).all()  # every sample has targets
    assert m.any(dim=1).any()


def test_seeded_reproducibility():
    assert torch.equal(block_mask(8, 37, _gen(3)), block_mask(8, 37, _gen(3)))
    assert not torch.equal(block_mask(8, 37, _gen(3)), block_mask(8, 37, _gen(4)))


@pytest.mark.parametrize("n_frames, expected", [(3, 0.78), (9, 0.49), (24, 0.46), (37, 0.45)])
def test_realised_mask_ratio_matches_spec(n_frames, expected):
    masked = 1.0 - block_mask(3000, n_frames, _gen(1)).float().mean().item()
    assert masked == pytest.approx(expected, abs=0.015)


def test_masked_spans_are_contiguous_blocks_of_at_least_two_unless_clipped():
    m = block_mask(200, 37, _gen(2))
    for row in m:
        target = (~row).int()
        # run lengths of masked frames
        edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int32), target, torch.zeros(1, dtype=torch.int32)]))
        starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
        assert ((ends - starts) >= 2).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        block_mask(0, 9, _gen(0))
    with pytest.raises(ValueError):
        block_mask(2, 0, _gen(0))
    with pytest.raises(ValueError):
        block_mask(2, 9, _gen(0), mask_ratio=1.0)
    with pytest.raises(ValueError):
        block_mask(2, 9, _gen(0), min_span=5, max_span=4)


def test_ema_update_parameters_and_buffers():
    online, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(2.0)
        target.weight.fill_(1.0)
        online.running_mean.fill_(5.0)
    ema_update(target, online, 0.996)
    torch.testing.assert_close(target.weight, torch.full((3,), 0.996 * 1.0 + 0.004 * 2.0))
    torch.testing.assert_close(target.running_mean, torch.full((3,), 5.0))
    with pytest.raises(ValueError):
        ema_update(target, online, 1.5)
    with pytest.raises(ValueError):
        ema_update(nn.Linear(2, 2), online, 0.5)
