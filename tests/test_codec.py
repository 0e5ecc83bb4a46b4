"""JEPACodec (spec §1, §6, §10.8): hop and frame counts, trimming, decode-from-tokens, bad input,
save/load, CLI on real speech."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocore.codec import Encoded
from jepa.codec import JEPACodec
from jepa.codec.__main__ import main
from jepa.codec.tokens import load_tokens
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
        codec.decode(Encoded(torch.full((19, 2), 20_000), codec.vocab_sizes, 2.5, None, 100,
                             header_codes=(32,), header_vocab_sizes=codec.header_vocab_sizes))
    with pytest.raises(ValueError, match="header"):
        codec.decode(Encoded(torch.zeros(19, 2, dtype=torch.int64), codec.vocab_sizes, 2.5, None, 100))


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


# ---- tampered or mismatched checkpoints: a clear ValueError naming the file --------------------


@pytest.fixture(scope="module")
def saved(codec, tmp_path_factory):
    """(path, metadata, state) of the SMALL codec saved once."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    codec.save(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    return path, metadata, load_file(str(path))


def _write(path, state, metadata):
    from safetensors.torch import save_file

    save_file(state, str(path), metadata=metadata)
    return path


def _fails(path, *words):
    with pytest.raises(ValueError) as info:
        JEPACodec.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


def test_saved_checkpoint_carries_a_content_hash(codec, saved):
    from jepa.codec import state_dict_sha256

    path, metadata, state = saved
    assert metadata["content_sha256"] == state_dict_sha256(state) == state_dict_sha256(codec.state_dict())
    renamed = dict(state)
    first = sorted(renamed)[0]
    renamed["x" + first] = renamed.pop(first)
    assert state_dict_sha256(renamed) != metadata["content_sha256"]  # names are part of the hash


def test_flipped_byte_in_tensor_data_is_detected(saved, tmp_path):
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # the file ends with tensor data: one low bit of one weight
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    _fails(bad, "content_sha256", "corrupted or edited")


def test_flipped_byte_in_header_is_detected(saved, tmp_path):
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    data[8] ^= 0xFF  # first byte of the JSON header ('{')
    bad = tmp_path / "header.safetensors"
    bad.write_bytes(bytes(data))
    _fails(bad, "not a readable safetensors file")


@pytest.mark.parametrize("keep", [4, 1000, -1000])
def test_truncated_checkpoint(saved, tmp_path, keep):
    path, _, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:keep])
    _fails(bad, "not a readable safetensors file", "truncated or corrupt")


def test_header_for_another_config(saved, tmp_path):
    import json

    from jepa.config import config_to_dict

    path, metadata, state = saved
    other = config_to_dict(SMALL)
    other["model"]["enc_channels"] = [16, 16, 32, 48, 64, 64]
    bad = _write(tmp_path / "other_config.safetensors", state, {**metadata, "config": json.dumps(other)})
    _fails(bad, "do not match the model of the config", "with another shape", "encoder")


def test_missing_and_unexpected_tensors(saved, tmp_path):
    from jepa.codec import state_dict_sha256

    path, metadata, state = saved
    dropped = sorted(state)[-1]
    other = {**{k: v for k, v in state.items() if k != dropped}, "extra.weight": torch.zeros(3)}
    bad = _write(tmp_path / "other_keys.safetensors", other, {**metadata, "content_sha256": state_dict_sha256(other)})
    _fails(bad, "1 missing", dropped, "1 unexpected", "extra.weight")


def test_bad_metadata(saved, tmp_path):
    path, metadata, state = saved
    _fails(_write(tmp_path / "nometa.safetensors", state, {"format": "other"}), "not a JEPACodec checkpoint")
    _fails(_write(tmp_path / "badjson.safetensors", state, {**metadata, "config": "{not json"}), "invalid config")
    _fails(_write(tmp_path / "badkey.safetensors", state, {**metadata, "config": '{"nosuch": 1}'}), "invalid config",
           "nosuch")


def test_checkpoint_without_hash_still_refuses_non_finite_weights(saved, tmp_path):
    path, metadata, state = saved
    legacy = {k: v for k, v in metadata.items() if k != "content_sha256"}
    ok = _write(tmp_path / "legacy.safetensors", state, legacy)
    assert JEPACodec.load(ok).config == SMALL  # files from before the hash still load
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    broken = {**state, name: state[name].clone()}
    broken[name].view(-1)[0] = float("nan")
    _fails(_write(tmp_path / "nan.safetensors", broken, legacy), "NaN/Inf", name)
