"""jepa.data: equal-length seeded crops, augmentation statistics, step batches, real-data loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.data import NO_AUGMENTATION, Augmentation, CropDataset, StepBatches, load_utterances


def _ramp_waves(lengths: list[int]) -> list[np.ndarray]:
    """Utterance i holds i*1000 + sample index / 1e6 (scaled to stay in [-1, 1]): every crop
    tells exactly which utterance and offset it came from."""
    return [((i * 1000 + np.arange(n)) / 1e7).astype(np.float32) for i, n in enumerate(lengths)]


def test_crops_are_equal_length_contiguous_and_short_utterances_dropped():
    waves = _ramp_waves([50, 400, 1000])
    ds = CropDataset(waves, crop_samples=100, seed=3, augment=NO_AUGMENTATION)
    assert ds.n_dropped == 1
    assert len(ds) == 4 + 10  # ceil(400/100) + ceil(1000/100): drawn in proportion to duration
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (1, 100) and x.dtype == torch.float32
        step = np.diff(x[0].numpy() * 1e7)
        np.testing.assert_allclose(step, 1.0, atol=1e-2)  # one contiguous piece of one utterance
        utt = int(round(float(x[0, 0]) * 1e7)) // 1000
        assert utt == (1 if i < 4 else 2)


def test_crops_are_seeded_per_draw_and_index():
    waves = _ramp_waves([0, 5000, 7000])[1:]
    a = CropDataset(waves, 256, seed=1)
    b = CropDataset(waves, 256, seed=1)
    c = CropDataset(waves, 256, seed=2)
    assert torch.equal(a.crop(5, draw=7), b.crop(5, draw=7))
    # Reading other items first does not change an item (no shared stream).
    _ = [b.crop(i, draw=7) for i in range(len(b))]
    assert torch.equal(a.crop(5, draw=7), b.crop(5, draw=7))
    offsets = {float(a.crop(5, draw=d)[0, 0]) for d in range(20)}
    assert len(offsets) > 10  # different draws give different crops
    assert not torch.equal(a.crop(5, draw=7), c.crop(5, draw=7))
    a.set_epoch(7)
    assert torch.equal(a[5], b.crop(5, draw=7))


def test_augmentation_probabilities_gain_noise_and_clamp():
    aug = Augmentation()
    x = np.full(4000, 0.5, dtype=np.float32)
    gains, noisy = [], 0
    for k in range(3000):
        y = aug(x, np.random.default_rng(k))
        ratio = y / x
        if np.ptp(ratio) > 1e-4:  # noise added
            noisy += 1
            resid = y - np.median(y)
            assert 0.0007 < resid.std() < 0.0013
        gains.append(float(np.median(ratio)))
    gains = np.array(gains)
    changed = np.abs(gains - 1.0) > 1e-3  # noise moves the median by ~1e-4 at most
    assert abs(changed.mean() - 0.3) < 0.04
    assert abs(noisy / 3000 - 0.2) < 0.03
    assert gains[changed].min() >= 0.8 - 1e-3 and gains[changed].max() <= 1.2 + 1e-3
    loud = aug(np.full(100, 0.99, dtype=np.float32), np.random.default_rng(0))
    assert np.abs(aug(np.full(100, 1.5, dtype=np.float32), np.random.default_rng(1))).max() <= 1.0
    assert loud.dtype == np.float32


def test_step_batches_cover_dataset_without_overlap_between_ranks():
    n, bs, world = 23, 2, 3
    per_rank = [StepBatches(n, bs, seed=4, rank=r, world_size=world) for r in range(world)]
    steps_per_pass = n // (bs * world)
    seen = []
    for step in range(steps_per_pass):
        items = np.concatenate([s.indices(step) for s in per_rank])
        assert len(set(items.tolist())) == bs * world
        seen.extend(items.tolist())
    assert len(set(seen)) == len(seen) == steps_per_pass * bs * world
    # Pure function of the step: recomputation (as after a resume) gives the same batch.
    again = StepBatches(n, bs, seed=4, rank=1, world_size=world)
    assert np.array_equal(again.indices(5), per_rank[1].indices(5))
    assert not np.array_equal(per_rank[0].indices(steps_per_pass), per_rank[0].indices(0))
    with pytest.raises(ValueError, match="exceeds"):
        StepBatches(5, 3, world_size=2)


def test_works_with_distributed_sampler():
    ds = CropDataset(_ramp_waves([1000, 1000]), 100, seed=0)
    parts = [list(torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=1))
             for r in range(2)]
    assert sorted(parts[0] + parts[1]) == list(range(len(ds)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=torch.utils.data.DistributedSampler(
        ds, num_replicas=2, rank=0))
    assert next(iter(loader)).shape == (4, 1, 100)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="no utterance is at least"):
        CropDataset(_ramp_waves([10, 20]), 100)
    with pytest.raises(ValueError, match="crop_samples"):
        CropDataset(_ramp_waves([10]), 0)
    with pytest.raises(IndexError):
        CropDataset(_ramp_waves([100]), 10).crop(10, 0)


def test_loads_real_manifest_at_24k(eval_manifest):
    waves, ids = load_utterances(eval_manifest, limit=2)
    assert len(waves) == len(ids) == 2
    import csv

    with open(eval_manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:2]
    for w, row in zip(waves, rows):
        assert w.dtype == np.float32 and w.ndim == 1
        expected = float(row["num_samples"]) / float(row["sample_rate"]) * 24000
        assert abs(w.shape[0] - expected) <= 2
        assert 0.01 < np.abs(w).max() <= 1.0
    ds = CropDataset(waves, 48000, seed=0)
    assert ds.batch([0, 1], draw=0).shape == (2, 1, 48000)
