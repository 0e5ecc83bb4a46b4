"""FSQ (spec §5) and mixed-radix packing (spec §6)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.config import PAPER
from jepa.fsq import FSQ, pack, token_vocab_sizes, unpack

RADICES = PAPER.model.fsq_radices  # 128 x 4


def test_grid_and_ties():
    fsq = FSQ((4, 4, 4, 4), 128)
    assert fsq.grid(4).tolist() == [-0.75, -0.25, 0.25, 0.75]
    z = torch.zeros(1, 128, 1)
    assert (fsq.quantize_indices(z) == 1).all()  # tanh(0) = 0: tie between -0.25 and 0.25 -> lower index
    half = torch.atanh(torch.tensor(0.5))
    assert torch.tanh(half).item() == 0.5  # exact tie at +-0.5
    zs = torch.stack([half, -half]).view(1, 1, 2).expand(1, 128, 2).contiguous()
    idx = fsq.quantize_indices(zs)
    assert (idx[0, 0] == 2).all() and (idx[0, 1] == 0).all()


def test_indices_match_bruteforce_argmin():
    fsq = FSQ((3, 4, 5, 8), 8)
    z = 2.0 * torch.randn(4, 8, 50)
    idx = fsq.quantize_indices(z).numpy()
    bounded = np.tanh(z.numpy().astype(np.float64))
    levels = np.repeat([3, 4, 5, 8], 2)
    for c, level in enumerate(levels):
        grid = (2 * np.arange(level) - level + 1) / level
        expected = np.abs(bounded[:, c, :, None] - grid).argmin(-1)
        np.testing.assert_array_equal(idx[:, :, c], expected)


def test_straight_through_gradient_and_exact_values():
    fsq = FSQ((4, 4, 4, 4), 128)
    z = torch.randn(2, 128, 3, requires_grad=True)
    z_q, idx = fsq(z)
    (z_q * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(z.grad, torch.arange(3.0).expand(2, 128, 3))  # identity w.r.t. pre-tanh z
    torch.testing.assert_close(z_q.detach(), fsq.dequantize(idx))
    with torch.no_grad():
        exact, idx2 = fsq(z)
    assert torch.equal(exact, fsq.dequantize(idx2))
    assert set(exact.unique().tolist()) <= {-0.75, -0.25, 0.25, 0.75}


def test_paper_example_big_and_little_endian():
    i = torch.tensor([2, 1, 3, 0, 2, 1, 3]).view(1, 1, 7)
    assert pack(i, [4] * 7, 7, "big").item() == 10023
    assert pack(i, [4] * 7, 7, "little").item() == 13878


def test_vocab_sizes_and_last_group():
    assert token_vocab_sizes(RADICES, 7) == (16384,) * 18 + (16,)
    idx = torch.zeros(1, 1, 128, dtype=torch.int64)
    idx[0, 0, 126], idx[0, 0, 127] = 3, 1
    assert pack(idx, RADICES, 7, "big")[0, 0, 18].item() == 4 * 3 + 1
    assert pack(idx, RADICES, 7, "little")[0, 0, 18].item() == 3 + 4 * 1
    assert sum(np.log2(token_vocab_sizes(RADICES, 7))) == 256


@pytest.mark.parametrize("order", ["big", "little"])
def test_unpack_is_exact_inverse(order):
    g = torch.Generator().manual_seed(0)
    random = torch.randint(0, 4, (5, 37, 128), generator=g)
    extremes = torch.stack([torch.zeros(1, 128, dtype=torch.int64), torch.full((1, 128), 3)])
    for idx in (random, extremes):
        tokens = pack(idx, RADICES, 7, order)
        assert tokens.shape == (idx.shape[0], idx.shape[1], 19)
        assert tokens.min() >= 0 and (tokens < torch.tensor(token_vocab_sizes(RADICES, 7))).all()
        assert torch.equal(unpack(tokens, RADICES, 7, order), idx)
    assert pack(extremes, RADICES, 7, order)[1, 0, :18].eq(16383).all()
    # every token value round-trips (tokens -> idx -> tokens)
    all_tokens = torch.arange(16384).view(1, -1, 1).expand(1, 16384, 19).clone()
    all_tokens[..., 18] %= 16
    assert torch.equal(pack(unpack(all_tokens, RADICES, 7, order), RADICES, 7, order), all_tokens)


def test_mixed_radices_round_trip():
    radices = [3, 5, 2, 7, 4, 6, 8, 5, 3]
    idx = torch.stack([torch.randint(0, r, (4, 6)) for r in radices], dim=-1)
    for order in ("big", "little"):
        assert torch.equal(unpack(pack(idx, radices, 4, order), radices, 4, order), idx)
    assert token_vocab_sizes(radices, 4) == (3 * 5 * 2 * 7, 4 * 6 * 8 * 5, 3)


def test_out_of_range_raises():
    bad = torch.full((1, 1, 128), 4)
    with pytest.raises(ValueError, match="outside"):
        pack(bad, RADICES)
    with pytest.raises(ValueError, match="vocabulary"):
        unpack(torch.full((1, 1, 19), 16384), RADICES)
    with pytest.raises(ValueError, match="order"):
        pack(torch.zeros(1, 1, 128, dtype=torch.int64), RADICES, order="middle")
    with pytest.raises(ValueError, match="range"):
        FSQ().dequantize(bad)


def test_usage_deficit_sees_collapse_and_has_a_gradient():
    fsq = FSQ((8, 8, 5, 5, 5), dim=5)
    torch.manual_seed(0)
    spread = torch.randn(4, 5, 200)
    collapsed = torch.full((4, 5, 200), 3.0, requires_grad=True)
    assert float(fsq.usage_deficit(spread)) < 0.05
    deficit = fsq.usage_deficit(collapsed)
    assert float(deficit) > 0.7
    deficit.backward()
    assert bool((collapsed.grad > 0).all())  # descending the deficit moves values off the saturated level
