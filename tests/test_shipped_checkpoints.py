"""Every shipped JEPA-DAAM checkpoint depends on its input (issue 17 acceptance), on real speech.

For each entry of `baselines.jepa_daam.SHIPPED`, on 8 different 4-s eval clips:
* the token sequences of different clips differ (at most a quarter of frame positions share a
  code between any two clips; a collapsed encoder shares all of them), and
* decoding another clip's tokens scores at least 0.2 STOI lower against the clip than decoding
  its own tokens (a codec whose output ignores its input scores the same either way).
The first shipped `jepa-daam@small` (collapsed, kept as tests/data/jepa_daam_small_v1_collapsed
.safetensors) fails both; `test_collapsed_v1_checkpoint_fails_the_same_checks` proves it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from baselines import jepa_daam
from jepa.codec import JEPACodec
from metrics.signal import stoi

COLLAPSED_V1 = Path(__file__).resolve().parent / "data" / "jepa_daam_small_v1_collapsed.safetensors"


def _stoi_16k(ref: torch.Tensor, est: torch.Tensor) -> float:
    r, e = (soxr.resample(x.numpy().astype(np.float64), 24_000, 16_000) for x in (ref, est))
    return float(stoi(r, e, 16_000).value)


def input_dependence(codec: JEPACodec, clips: torch.Tensor) -> tuple[float, float, float]:
    """(largest share of frame positions where two clips have the same code, mean STOI of own
    tokens, mean STOI of the next clip's tokens) for clips [N, 1, L] at 24 kHz."""
    encs = codec.encode_batch([c[0] for c in clips])
    codes = torch.stack([e.codes for e in encs])  # [N, streams, frames]
    n = len(encs)
    shared = max(float((codes[i] == codes[j]).all(dim=0).float().mean()) for i in range(n) for j in range(i + 1, n))
    own = [_stoi_16k(clips[i, 0], out) for i, out in enumerate(codec.decode_batch(encs))]
    swapped = codec.decode_batch([encs[(i + 1) % n] for i in range(n)])
    other = [_stoi_16k(clips[i, 0], out) for i, out in enumerate(swapped)]
    return shared, float(np.mean(own)), float(np.mean(other))


@pytest.mark.parametrize("setting", sorted(jepa_daam.SHIPPED))
def test_shipped_checkpoint_depends_on_its_input(speech_clips_24k, setting):
    path = jepa_daam.SHIPPED[setting]
    assert path.is_file() and path.stat().st_size <= 15 * 2**20
    shared, own, other = input_dependence(JEPACodec.load(path), speech_clips_24k)
    assert shared <= 0.25, f"{setting}: two clips share the code at {shared:.0%} of frame positions"
    assert own - other >= 0.2, f"{setting}: STOI with own tokens {own:.3f}, with another clip's {other:.3f}"


def test_collapsed_v1_checkpoint_fails_the_same_checks(speech_clips_24k):
    shared, own, other = input_dependence(JEPACodec.load(COLLAPSED_V1), speech_clips_24k)
    assert shared == 1.0 and own - other < 0.05
