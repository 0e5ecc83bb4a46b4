"""JEPACodec (spec §1, §6, §10.8): hop and frame counts, trimming, decode-from-tokens, bad input,
save/load, CLI on real speech."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from baselines.base import Encoded
from jepa.codec import JEPACodec, load_tokens, main
from jepa.config import SMALL
from jepa.fsq import pack

SR, HOP = 24_000, 9600


@pytest.fixture(scope="module")
def codec() -> JEPACodec:
    torch.manual_seed(0)
    return JEPACodec(SMALL)


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    return 0.3 * torch.sin(2 * math.pi * 180 * t) * torch.rand(n, generator=g)


def test_derived_numbers(codec):
    assert codec.hop_length == HOP and codec.frame_rate == 2.5 and codec.sample_rate == SR
    assert codec.vocab_sizes == (16384,) * 18 + (16,)
    assert codec.nominal_bitrate() == 640.0


@pytest.mark.parametrize("length", [9600, 9601, 30_000, 48_000, 50_123])
def test_frames_and_output_length(codec, length):
    enc = codec.encode(_speechlike(length))
    n_frames = math.ceil(length / HOP)  # extra hop: one frame per started hop
    assert enc.codes.shape == (19, n_frames) and enc.codes.dtype == torch.int64
    assert enc.num_samples == length and enc.frame_rate == 2.5 and enc.padded_frames == 0
    assert codec.num_frames(length) == n_frames
    out = codec.decode(enc)
    assert out.shape == (length,) and out.dtype == torch.float32
    # the decoder really covers the input: its raw output is at least as long
    assert codec.decoder.output_length(n_frames) >= length


def test_reference_padding_option(codec):
    ref = copy.deepcopy(codec)
    ref.extra_hop = False
    enc = ref.encode(_speechlike(48_000))  # 5 hops -> 4 frames (spec §4.2)
    assert enc.codes.shape == (19, 4)
    out = ref.decode(enc)
    assert out.shape == (48_000,)
    assert torch.count_nonzero(out[9600 * 4 + 384 :]) == 0  # zero-padded tail


def test_decode_from_tokens_is_bit_identical_to_grid_values(codec):
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 4, (2, 3, 128), generator=g)
    m = SMALL.model
    tokens = pack(idx, m.fsq_radices, m.pack_group, m.pack_order)
    with torch.inference_mode():
        direct = codec.decoder(codec.fsq.dequantize(idx))[:, 0]
    assert torch.equal(codec.decode_tokens(tokens), direct)


def test_encode_batch_matches_single(codec):
    wavs = [_speechlike(30_000, 1), _speechlike(28_000, 2), _speechlike(50_000, 3)]
    batch = codec.encode_batch(wavs)
    for wav, enc in zip(wavs, batch):
        single = codec.encode(wav)
        assert enc.codes.shape == single.codes.shape
        assert (enc.codes == single.codes).float().mean() > 0.95  # identical up to float rounding
    outs = codec.decode_batch(batch)
    assert [o.numel() for o in outs] == [30_000, 28_000, 50_000]


@pytest.mark.parametrize("bad, kwargs, match", [
    (torch.zeros(1, 1, 20_000), {}, "shape"),
    (torch.zeros(2, 20_000), {}, "encode_batch"),
    (torch.zeros(20_000), {"sample_rate": 16_000}, "sample rate"),
    (torch.tensor([0.0] * 9_999 + [float("nan")] * 10_001), {}, "NaN"),
    (torch.zeros(0), {}, "empty"),
    (torch.zeros(9_599), {}, "too short"),
    (torch.zeros(20_000, dtype=torch.int16), {}, "float"),
])
def test_bad_input_raises_value_error(codec, bad, kwargs, match):
    with pytest.raises(ValueError, match=match):
        codec.encode(bad, **kwargs)


def test_bad_encoded_raises(codec):
    with pytest.raises(ValueError, match="vocab"):
        codec.decode(Encoded(torch.zeros(2, 3, dtype=torch.int64), (4, 4), 2.5, None, 100))
    with pytest.raises(ValueError, match="outside"):
        codec.decode(Encoded(torch.full((19, 2), 20_000), codec.vocab_sizes, 2.5, None, 100))


def test_save_load_round_trip(codec, tmp_path):
    path = tmp_path / "small.safetensors"
    codec.save(path)
    loaded = JEPACodec.load(path)
    assert loaded.config == codec.config
    wav = _speechlike(30_000)
    enc = codec.encode(wav)
    assert torch.equal(loaded.encode(wav).codes, enc.codes)
    assert torch.equal(loaded.decode(enc), codec.decode(enc))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        JEPACodec.load(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        JEPACodec.load(tmp_path / "missing.safetensors")


def test_cli_on_real_speech(codec, tmp_path, eval_rows, eval_manifest):
    row = min(eval_rows, key=lambda r: float(r["duration_s"]))
    audio = eval_manifest.parent / row["path"]
    ckpt = tmp_path / "codec.safetensors"
    codec.save(ckpt)
    tokens, out = tmp_path / "x.tokens", tmp_path / "x.wav"
    assert main(["encode", str(audio), str(tokens), "--checkpoint", str(ckpt)]) == 0
    enc, meta = load_tokens(tokens)
    n_samples = round(int(row["num_samples"]) * SR / int(row["sample_rate"]))
    assert abs(enc.num_samples - n_samples) <= 1 and meta["sample_rate"] == SR
    assert enc.codes.shape == (19, math.ceil(enc.num_samples / HOP))
    assert main(["decode", str(tokens), str(out), "--checkpoint", str(ckpt)]) == 0
    wav, sr = sf.read(out, dtype="float32")
    assert sr == SR and wav.shape == (enc.num_samples,) and np.isfinite(wav).all()
    # decoding with another checkpoint is refused unless asked for
    other = tmp_path / "other.safetensors"
    JEPACodec(SMALL).save(other)
    assert main(["decode", str(tokens), str(out), "--checkpoint", str(other)]) == 2
