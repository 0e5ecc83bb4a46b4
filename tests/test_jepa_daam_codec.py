"""baselines.jepa_daam: the shipped checkpoint and `jepa-daam:PATH` behave as benchmark codecs."""
from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch

from baselines import jepa_daam
from audiocore.codec import Codec, CodecUnavailable
from jepa.config import SMALL


def _speech_24k(speech_16k) -> torch.Tensor:
    from audiocore.audio import resample

    wav, sr, _ = speech_16k
    return torch.from_numpy(resample(wav, sr, 24_000).astype(np.float32))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from jepa.codec import JEPACodec

    cfg = dataclasses.replace(SMALL, name="tiny", model=dataclasses.replace(
        SMALL.model, enc_channels=(4, 4, 4, 8, 8, 8), enc_resblocks=1, conformer_layers=1,
        dec_channels=(16, 8, 8, 8, 4, 4), mrf_kernels=(3,)))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    JEPACodec(cfg).save(path)
    return path


def test_specs_and_bad_specs(tmp_path):
    assert jepa_daam.specs() == ["jepa-daam@small-50hz", "jepa-daam@small-12.5hz", "jepa-daam@small",
                                 "jepa-daam@paper"]
    with pytest.raises(CodecUnavailable, match="not trained"):
        jepa_daam.build("jepa-daam@paper")
    with pytest.raises(ValueError, match="jepa-daam@small-50hz"):
        jepa_daam.build("jepa-daam@large")
    with pytest.raises(CodecUnavailable, match="not found"):
        jepa_daam.build(f"jepa-daam:{tmp_path / 'missing.safetensors'}")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CodecUnavailable, match="not a usable"):
        jepa_daam.build(f"jepa-daam:{junk}")


def test_path_spec_encodes_and_decodes_real_speech(tiny_checkpoint, speech_16k):
    codec = jepa_daam.build(f"jepa-daam:{tiny_checkpoint}")
    assert isinstance(codec, Codec)
    assert codec.name == f"jepa-daam:{tiny_checkpoint}"
    assert codec.sample_rate == 24_000
    assert codec.nominal_bitrate() == pytest.approx(640.0)
    assert codec.weights_hash == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()[:16]
    wav = _speech_24k(speech_16k)
    enc = codec.encode(wav)
    assert enc.codes.shape == (19, math.ceil(wav.numel() / 9600))
    assert enc.vocab_sizes == (16384,) * 18 + (16,)
    assert enc.frame_rate == pytest.approx(2.5)
    assert int(enc.codes.min()) >= 0 and bool((enc.codes < torch.tensor(enc.vocab_sizes)[:, None]).all())
    bits = enc.frame_rate * sum(math.log2(v) for v in enc.vocab_sizes)
    assert bits == pytest.approx(640.0)
    out = codec.decode(enc)
    assert out.shape == wav.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def _envelope_corr(codec, wav: torch.Tensor) -> float:
    """Correlation of the log energy per 0.4-s frame (one token frame) of input and reconstruction."""
    out = codec.decode(codec.encode(wav))
    assert out.shape == wav.shape and torch.isfinite(out).all()
    frames = lambda x: x[: x.numel() // 9600 * 9600].reshape(-1, 9600).pow(2).mean(1).add(1e-8).log()  # noqa: E731
    return float(np.corrcoef(frames(wav).numpy(), frames(out).numpy())[0, 1])


@pytest.mark.parametrize("setting", sorted(jepa_daam.SHIPPED))
def test_shipped_checkpoint_is_registered_and_beats_untrained(eval_rows, eval_manifest, setting):
    from baselines.registry import build_codec, resolve_specs
    from audiocore.audio import load_audio
    from jepa.codec import JEPACodec

    path = jepa_daam.SHIPPED[setting]
    assert path.is_file(), f"shipped checkpoint {path} missing"
    assert path.stat().st_size <= 15 * 2**20
    assert f"jepa-daam@{setting}" in resolve_specs("all")
    codec = build_codec(f"jepa-daam@{setting}")
    assert codec.name == f"jepa-daam@{setting}"
    assert codec.codec.config.name == setting
    torch.manual_seed(0)
    untrained = JEPACodec(codec.codec.config)
    wavs = [torch.from_numpy(load_audio(eval_manifest.parent / r["path"], target_sr=24_000)[0])
            for r in eval_rows if r["set"] == "librispeech_test_clean"]
    assert len(wavs) == 4
    # The reconstruction follows the speech's loudness contour clearly better than an untrained
    # codec of the same architecture (whose energy leaks through only by chance). Input
    # dependence across clips is tested in tests/test_shipped_checkpoints.py.
    trained = np.mean([_envelope_corr(codec, w) for w in wavs])
    baseline = np.mean([_envelope_corr(untrained, w) for w in wavs])
    assert trained > baseline + 0.1, f"envelope correlation trained {trained:.3f} vs untrained {baseline:.3f}"
