"""Self-checks (benchmarks.selfcheck): deliberately broken codecs fail exactly the check they
break, every classical codec passes, and the collapsed jepa-daam@small checkpoint is flagged."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocore.codec import Encoded
from audiocore.hashing import file_sha256
from benchmarks import selfcheck as sc
from tests.conftest import EVAL_MANIFEST

COLLAPSED = Path(__file__).resolve().parent / "data" / "jepa_daam_small_v1_collapsed.safetensors"
COLLAPSED_SHA256 = "efabae2130b77cec66a7dc53f9a5d4fd716bc1bed155a7f05738c6b0a8f7f360"
"""The format-2 checkpoint shipped in December 2026, whose encoder ignores its input."""


@pytest.fixture(scope="module")
def waves():
    import soundfile as sf

    with open(EVAL_MANIFEST, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:2]
    out = []
    for r in rows:
        x, sr = sf.read(EVAL_MANIFEST.parent / r["path"], dtype="float32")
        out.append((r["id"], x, sr))
    return out


class Identity:
    """A perfect 16 kHz token codec (one 16-bit token per sample); subclasses break one thing."""

    name, sample_rate = "identity", 16000

    def nominal_bitrate(self):
        return 256000.0

    def tokens(self, x):
        return torch.round(x.clamp(-1, 1) * 32767).long() + 32768

    def encode(self, wav):
        return Encoded(codes=self.tokens(wav)[None], vocab_sizes=(65536,), frame_rate=16000.0,
                       payload_bytes=None, num_samples=wav.shape[0])

    def decode(self, enc):
        return (enc.codes[0].float() - 32768) / 32767


class Constant(Identity):
    name = "constant"

    def tokens(self, x):  # the same tokens whatever the input: a collapsed encoder
        g = torch.Generator().manual_seed(0)
        return torch.randint(30000, 35000, (x.shape[0],), generator=g)


class Random(Identity):
    name = "random"

    def tokens(self, x):  # input-dependent but with fresh noise on every call
        return super().tokens(x * (1 + 0.05 * torch.randn_like(x)))


class Short(Identity):
    name = "short"

    def decode(self, enc):
        return super().decode(enc)[:-10]


class Hiss(Identity):
    name = "hiss"

    def decode(self, enc):
        y = super().decode(enc)
        return y + 0.03 * torch.from_numpy(np.random.default_rng(1).standard_normal(y.shape[0]).astype(np.float32))


class Crash(Identity):
    name = "crash"

    def encode(self, wav):
        if not wav.abs().max() > 0:
            raise RuntimeError("cannot encode silence")
        return super().encode(wav)


@pytest.mark.parametrize("codec,failed", [
    (Identity(), []),
    (Constant(), [sc.IGNORES_INPUT, sc.NOISY_SILENCE]),
    (Random(), [sc.NONDETERMINISTIC]),
    (Short(), [sc.LENGTH]),
    (Hiss(), [sc.NOISY_SILENCE]),
    (Crash(), [sc.NOISY_SILENCE, sc.LENGTH]),
])
def test_a_broken_codec_fails_the_check_it_breaks(codec, failed, waves):
    report = sc.self_check(codec, waves)
    assert report.failed == failed
    assert report.status == ("; ".join(failed) or "ok")
    assert [c.name for c in report.checks] == list(sc.CHECK_NAMES)
    assert report.line().startswith(f"self-check {codec.name}: " + ("FAILED" if failed else "ok"))
    assert report.to_json()["status"] == report.status


def test_crash_is_reported_as_the_detail(waves):
    report = sc.self_check(Crash(), waves)
    silence = next(c for c in report.checks if c.name == sc.NOISY_SILENCE)
    assert "RuntimeError: cannot encode silence" in silence.detail


def test_one_utterance_is_split_into_halves(waves):
    ids, a, b = sc.clips_from(waves[:1], 16000, seconds=100)
    assert ids[0].endswith("[first half]") and a.shape == b.shape and not np.array_equal(a, b)
    assert sc.self_check(Identity(), waves[:1]).status == "ok"


def test_every_classical_codec_passes(waves):
    from baselines import classical
    from baselines.registry import build_codecs

    codecs, skipped = build_codecs(",".join(classical.specs()))
    assert codecs and not skipped
    for codec in codecs:
        report = sc.self_check(codec, waves)
        assert report.status == "ok", report.line()


def test_the_collapsed_first_release_checkpoint_is_flagged(waves):
    if not COLLAPSED.is_file() or file_sha256(COLLAPSED) != COLLAPSED_SHA256:
        pytest.skip(f"{COLLAPSED} is no longer the collapsed format-2 checkpoint of December 2026")
    from baselines.registry import build_codecs

    (codec,), skipped = build_codecs(f"jepa-daam:{COLLAPSED}")
    report = sc.self_check(codec, waves)
    assert sc.IGNORES_INPUT in report.failed, report.line()
    assert "differ by 0 % RMS" in report.checks[0].detail
