"""Neural codec adapters (baselines.neural), offline.

Every model is built from its published configuration with the published hop, sample rate,
codebook count and codebook size but tiny channel widths and random weights, saved in the layout
users give (`<dir>/<repo id>/`), and loaded back through `build` -- the real loading path.
Codes must match the in-memory model's (proof that the weights were loaded, not re-initialised),
and the measured bitrate must equal the exact stream rate and lie within 5 % of the published one.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocore.codec import CodecUnavailable
from audiocore.device import resolve_device
from baselines import neural
from metrics.tokens import BITRATE_TOLERANCE, fold_multirate, measured_bitrate

# spec -> (sample rate, frame rate Hz, streams, vocabulary, published bit/s, exact stream bit/s)
EXPECTED = {
    "encodec@1.5k": (24000, 75.0, 2, 1024, 1500.0, 1500.0),
    "encodec@3k": (24000, 75.0, 4, 1024, 3000.0, 3000.0),
    "encodec@6k": (24000, 75.0, 8, 1024, 6000.0, 6000.0),
    "encodec@12k": (24000, 75.0, 16, 1024, 12000.0, 12000.0),
    "encodec@24k": (24000, 75.0, 32, 1024, 24000.0, 24000.0),
    "dac@16k": (16000, 50.0, 12, 1024, 6000.0, 6000.0),
    "dac@24k": (24000, 75.0, 32, 1024, 24000.0, 24000.0),
    "dac@44k": (44100, 86.1328125, 9, 1024, 8000.0, 7751.953125),
    "mimi@8": (24000, 12.5, 8, 2048, 1100.0, 1100.0),
    "mimi@16": (24000, 12.5, 16, 2048, 2200.0, 2200.0),
    "mimi@32": (24000, 12.5, 32, 2048, 4400.0, 4400.0),
    "snac@24k": (24000, 11.71875, 7, 4096, 980.0, 984.375),
    "speechtokenizer@1": (16000, 50.0, 1, 1024, 500.0, 500.0),
    "speechtokenizer@8": (16000, 50.0, 8, 1024, 4000.0, 4000.0),
    "wavtokenizer@40": (24000, 40.0, 1, 4096, 480.0, 480.0),
    "wavtokenizer@75": (24000, 75.0, 1, 4096, 900.0, 900.0),
}
EXTRA = {  # non-canonical settings: nominal = exact stream rate
    "dac@44k-4q": (44100, 86.1328125, 4, 1024, 44100 / 512 * 40, 44100 / 512 * 40),
    "mimi@3": (24000, 12.5, 3, 2048, 412.5, 412.5),
}


def _randomize_codebooks(model: torch.nn.Module, seed: int) -> None:
    """Random VQ codebooks (libraries initialise EMA codebooks to zeros, which yields all-0 codes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("embed", "embed_sum", "embed_avg"):
                buf.copy_(torch.randn(buf.shape, generator=g))
            elif leaf in ("inited", "initialized"):
                buf.fill_(1)


def _save_hf(model: torch.nn.Module, folder: Path) -> None:
    model.save_pretrained(str(folder))


def _tiny_models() -> dict[str, tuple[str, torch.nn.Module, callable]]:
    """family/model key -> (weights folder relative to the root, model, saver)."""
    out = {}
    torch.manual_seed(0)
    if _has("transformers"):
        from transformers import (DacConfig, DacModel, EncodecConfig, EncodecModel, MimiConfig, MimiModel,
                                  WavTokenizerConfig, WavTokenizerModel)
        # facebook/encodec_24khz: defaults are the 24 kHz model (ratios 8,5,4,2; 1024 codes; 1.5-24 kbit/s).
        out["encodec"] = ("facebook/encodec_24khz",
                          EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, num_lstm_layers=1)), _save_hf)
        for s, (sr, ratios, n_q) in {"16k": (16000, [2, 4, 5, 8], 12), "24k": (24000, [2, 4, 5, 8], 32),
                                     "44k": (44100, [2, 4, 8, 8], 9)}.items():
            cfg = DacConfig(encoder_hidden_size=2, decoder_hidden_size=16, n_codebooks=n_q,
                            downsampling_ratios=ratios, sampling_rate=sr)
            out[f"dac@{s}"] = (f"descript/dac_{s[:2]}khz", DacModel(cfg), _save_hf)
        cfg = MimiConfig(hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=32,
                         num_attention_heads=2, num_key_value_heads=2, codebook_dim=16,
                         vector_quantization_hidden_dimension=16, upsample_groups=32)
        out["mimi"] = ("kyutai/mimi", MimiModel(cfg), _save_hf)
        for s, ratios, repo in (("40", (6, 5, 5, 4), "swiss-ai/wavtokenizer-large-unify-40token"),
                                ("75", (8, 5, 4, 2), "novateur/WavTokenizer-large-speech-75token")):
            cfg = WavTokenizerConfig(upsampling_ratios=ratios, num_filters=4, hidden_size=16, codebook_dim=16,
                                     num_lstm_layers=1, decoder_hidden_size=32, decoder_intermediate_size=32,
                                     decoder_num_layers=1, decoder_attention_num_groups=4)
            out[f"wavtokenizer@{s}"] = (repo, WavTokenizerModel(cfg), _save_hf)
    if _has("snac"):
        from snac import SNAC

        def save_snac(model, folder):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text(json.dumps(model._config))
            torch.save(model.state_dict(), folder / "pytorch_model.bin")

        for s, cfg in {
            # hubertsiuzdak/snac_24khz config.json with encoder_dim 48 -> 4, decoder_dim 1024 -> 16
            "24k": dict(sampling_rate=24000, encoder_dim=4, encoder_rates=[2, 4, 8, 8], decoder_dim=16,
                        decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
                        vq_strides=[4, 2, 1], noise=True, depthwise=True),
            # hubertsiuzdak/snac_32khz with local attention kept (window 32 -> padding frames)
            "32k": dict(sampling_rate=32000, encoder_dim=4, encoder_rates=[2, 3, 8, 8], decoder_dim=64,
                        decoder_rates=[8, 8, 3, 2], attn_window_size=32, codebook_size=4096, codebook_dim=8,
                        vq_strides=[8, 4, 2, 1], noise=True, depthwise=True),
        }.items():
            model = SNAC(**cfg)
            model._config = cfg
            out[f"snac@{s}"] = (f"hubertsiuzdak/snac_{s[:2]}khz", model, save_snac)
    if _has("speechtokenizer") and _has("einops"):
        cfg = {"sample_rate": 16000, "n_filters": 4, "dimension": 32, "semantic_dimension": 16,
               "strides": [8, 5, 4, 2], "lstm_layers": 1, "bidirectional": True, "dilation_base": 2,
               "residual_kernel_size": 3, "n_residual_layers": 1, "activation": "ELU", "n_q": 8,
               "codebook_size": 1024}

        def save_st(model, folder):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text(json.dumps(cfg))
            torch.save(model.state_dict(), folder / "SpeechTokenizer.pt")

        model = neural.speechtokenizer_model_module().SpeechTokenizer(cfg)
        out["speechtokenizer"] = ("fnlp/SpeechTokenizer/speechtokenizer_hubert_avg", model, save_st)
    return out


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _model_key(spec: str) -> str:
    family, _, setting = spec.partition("@")
    if family in ("dac", "snac", "wavtokenizer"):
        return f"{family}@{setting.split('-')[0]}"
    return family


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they cost 5x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(weights root, {model key: in-memory model}) with every tiny model saved under the root."""
    root = tmp_path_factory.mktemp("weights")
    models = {}
    for i, (key, (rel, model, save)) in enumerate(_tiny_models().items()):
        _randomize_codebooks(model, seed=i)
        model.eval()
        save(model, root / rel)
        models[key] = model
    return root, models


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No user weights and no real Hugging Face cache leak into these tests."""
    monkeypatch.delenv(neural.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if _has("huggingface_hub"):
        import huggingface_hub.constants

        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    neural.clear_model_cache()


def _test_signal(n: int, sr: int) -> torch.Tensor:
    """A deterministic speech-like test signal: two chirps plus noise, [n] float32."""
    t = torch.arange(n, dtype=torch.float64) / sr
    x = 0.3 * torch.sin(2 * math.pi * (150 + 400 * t) * t) + 0.2 * torch.sin(2 * math.pi * 1100 * t)
    x += 0.02 * torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    return x.float()


# ---- spec parsing ---------------------------------------------------------------------------


def test_specs_are_the_published_settings():
    assert set(neural.specs()) == set(EXPECTED)
    from baselines.registry import FAMILIES

    assert {s.split("@")[0] for s in neural.specs()} == {f for f, m in FAMILIES.items() if m == "baselines.neural"}


@pytest.mark.parametrize("spec", ["encodec@5k", "dac@8k", "dac@44k-10q", "mimi@33", "mimi@0",
                                  "speechtokenizer@9", "wavtokenizer@50", "snac@16k"])
def test_unknown_setting_lists_valid_ones(spec):
    family = spec.split("@")[0]
    with pytest.raises(ValueError, match=rf"valid {family} specs: {family}@"):
        neural.build(spec)


def test_bad_device_is_a_value_error():
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        resolve_device("gpu0")


# ---- missing weights ------------------------------------------------------------------------


def test_missing_weights_say_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv(neural.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(CodecUnavailable) as err:
        neural.build("encodec@6k")
    msg = str(err.value)
    assert f"Put config.json and model.safetensors or pytorch_model.bin into {tmp_path / 'facebook/encodec_24khz'}" in msg
    assert "hf download facebook/encodec_24khz" in msg
    if _has("huggingface_hub"):
        assert "Hugging Face cache (no facebook/encodec_24khz)" in msg

    incomplete = tmp_path / "fnlp/SpeechTokenizer/speechtokenizer_hubert_avg"
    incomplete.mkdir(parents=True)
    (incomplete / "config.json").write_text("{}")
    with pytest.raises(CodecUnavailable, match=r"speechtokenizer_hubert_avg \(lacks SpeechTokenizer.pt\)"):
        neural.build("speechtokenizer@8")
    with pytest.raises(CodecUnavailable, match="convert_wavtokenizer_checkpoint.py"):
        neural.build("wavtokenizer@75")


def test_missing_weights_without_a_folder_name_the_variable():
    with pytest.raises(CodecUnavailable, match=rf"\${neural.WEIGHTS_ENV}/kyutai/mimi \(set {neural.WEIGHTS_ENV}"):
        neural.build("mimi@8")


def test_weights_are_found_in_the_hugging_face_cache(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--kyutai--mimi" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (cache / "models--kyutai--mimi" / "refs").mkdir()
    (cache / "models--kyutai--mimi" / "refs" / "main").write_text("0123abc")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(CodecUnavailable, match=r"0123abc \(lacks model.safetensors\|pytorch_model.bin\)"):
        neural.find_weights("mimi@8", neural.MIMI)
    (snapshot / "model.safetensors").write_bytes(b"")
    assert neural.find_weights("mimi@8", neural.MIMI) == snapshot
    with pytest.raises(CodecUnavailable):
        neural.find_weights("mimi@8", neural.MIMI, weights_dir=tmp_path / "none", use_hf_cache=False)


def test_registry_lists_codecs_without_weights_as_skipped():
    from baselines.registry import build_codecs

    codecs, skipped = build_codecs("dac@16k,snac@24k")
    assert codecs == []
    assert [s for s, _ in skipped] == ["dac@16k", "snac@24k"]
    assert all("weights not found" in r or "needs the" in r for _, r in skipped)


# ---- real loading path with tiny random models ------------------------------------------------


def _build(spec: str, weights) -> neural.NeuralCodec:
    root, models = weights
    if _model_key(spec) not in models:
        pytest.skip(f"package for {spec} not installed")
    return neural.build(spec, weights_dir=root)


@pytest.mark.parametrize("spec", [*EXPECTED, *EXTRA])
def test_codec_shapes_rates_and_bitrate(spec, weights):
    sr, frame_rate, n_streams, vocab, published, exact = {**EXPECTED, **EXTRA}[spec]
    codec = _build(spec, weights)
    assert codec.name == spec and codec.sample_rate == sr
    assert codec.frame_rate == pytest.approx(frame_rate, rel=1e-12)
    assert codec.vocab_sizes == (vocab,) * n_streams
    assert codec.nominal_bitrate() == pytest.approx(published)

    frame_hop = round(sr / frame_rate)
    n_frames = 6
    wav = _test_signal(n_frames * frame_hop, sr)
    enc = codec.encode(wav)
    assert enc.codes.dtype == torch.int64 and enc.codes.shape == (n_streams, n_frames + enc.padded_frames)
    assert int(enc.codes.min()) >= 0 and int(enc.codes.max()) < vocab
    if n_streams > 1:  # residual stages of random codebooks must not all pick one entry
        assert len(torch.unique(enc.codes)) > 1
    bitrate = measured_bitrate(enc, wav.shape[0] / sr)
    assert bitrate == pytest.approx(exact, rel=1e-9)
    assert abs(bitrate - published) / published <= BITRATE_TOLERANCE

    out = codec.decode(enc)
    assert out.shape == wav.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().sum() > 0

    # A partial last frame is payload: one more frame, decoded to exactly the input length.
    odd = _test_signal(n_frames * frame_hop + 37, sr)
    enc_odd = codec.encode(odd)
    assert enc_odd.codes.shape[1] - enc_odd.padded_frames == n_frames + 1
    assert codec.decode(enc_odd).shape == odd.shape


@pytest.mark.parametrize("spec", ["encodec@6k", "dac@16k", "mimi@8", "snac@24k", "speechtokenizer@8",
                                  "wavtokenizer@40"])
def test_loaded_weights_are_the_saved_weights(spec, weights):
    """Codes from the folder-loaded codec equal those of the in-memory model that was saved."""
    codec = _build(spec, weights)
    reference = neural.make_codec(neural.parse_spec(spec), weights[1][_model_key(spec)])
    wav = _test_signal(codec.sample_rate // 2, codec.sample_rate)
    assert torch.equal(codec.encode(wav).codes, reference.encode(wav).codes)
    files = neural.SETTINGS[spec].source.files_in(codec_folder(weights[0], spec))
    assert codec.weights_hash == neural.hash_files(files)
    assert len(codec.weights_hash) == 16


def codec_folder(root: Path, spec: str) -> Path:
    return neural.SETTINGS[spec].source.candidates(root)[0]


def test_snac_levels_fold_and_padding_frames(weights):
    codec = _build("snac@32k", weights)
    assert codec.stream_groups == (0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
    # SNAC 32 kHz pads to 384 * lcm(8, 32) = 12288 samples: 5 coarse frames of audio -> 8 frames.
    wav = _test_signal(5 * 3072, 32000)
    enc = codec.encode(wav)
    assert enc.codes.shape == (15, 8) and enc.padded_frames == 3 and enc.stream_groups == codec.stream_groups
    levels = weights[1]["snac@32k"].encode(wav.view(1, 1, -1))
    codes, groups = fold_multirate([lv[0] for lv in levels])
    assert torch.equal(enc.codes, codes) and groups == codec.stream_groups
    assert codec.nominal_bitrate() == 1900.0  # published "1.9 kbps"
    assert measured_bitrate(enc, wav.shape[0] / 32000) == pytest.approx(1875.0, rel=1e-12)  # padding excluded
    assert codec.decode(enc).shape == wav.shape


def test_batch_encoding_matches_single_for_a_causal_codec(weights):
    codec = _build("encodec@3k", weights)  # the 24 kHz EnCodec is causal
    a, b = _test_signal(9600, 24000), _test_signal(3000, 24000)
    batch = codec.encode_batch([a, b, torch.zeros(0)])
    assert [e.num_samples for e in batch] == [9600, 3000, 0]
    assert torch.equal(batch[1].codes, codec.encode(b).codes)
    assert batch[2].codes.shape == (4, 0) and codec.decode(batch[2]).shape == (0,)
    decoded = codec.decode_batch(batch[:2])
    assert [d.shape[0] for d in decoded] == [9600, 3000]
    assert torch.allclose(decoded[1], codec.decode(batch[1]), atol=1e-5)


def test_real_speech_round_trip_length(weights, speech_16k):
    wav, sr, _ = speech_16k
    wav = wav[: 2 * sr]  # 2 s of real speech
    codec = _build("speechtokenizer@8", weights)
    assert sr == codec.sample_rate
    x = torch.from_numpy(np.ascontiguousarray(wav))
    enc = codec.encode(x)
    assert enc.codes.shape == (8, math.ceil(len(wav) / 320))
    assert codec.decode(enc).shape == x.shape


def test_registry_builds_from_the_weights_variable(weights, monkeypatch):
    from baselines.registry import build_codec

    monkeypatch.setenv(neural.WEIGHTS_ENV, str(weights[0]))
    codec = _build("mimi@8", weights)  # skips when transformers is missing
    assert type(build_codec("mimi@8")) is type(codec)


def test_wrong_model_in_folder_is_reported(weights, tmp_path):
    root, models = weights
    if "dac@16k" not in models:
        pytest.skip("transformers not installed")
    models["dac@16k"].save_pretrained(str(tmp_path / "descript/dac_44khz"))
    with pytest.raises(CodecUnavailable, match=r"is not descript/dac_44khz: sample rate 16000 Hz \(expected 44100\)"):
        neural.build("dac@44k", weights_dir=tmp_path)


def test_bad_inputs_are_value_errors(weights):
    codec = _build("dac@16k", weights)
    with pytest.raises(ValueError, match=r"mono waveform of shape \[T\], got shape \(2, 100\)"):
        codec.encode(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="NaN or Inf"):
        codec.encode(torch.tensor([0.0, float("nan")]))
    other = _build("mimi@8", weights).encode(torch.zeros(1920))
    with pytest.raises(ValueError, match="vocab_sizes"):
        codec.decode(other)


def test_speechtokenizer_glue_leaves_the_real_package_alone():
    if not _has("speechtokenizer"):
        pytest.skip("speechtokenizer not installed")
    module = neural.speechtokenizer_model_module()
    assert hasattr(module, "SpeechTokenizer")
    assert "speechtokenizer" not in sys.modules or hasattr(sys.modules["speechtokenizer"], "SpeechTokenizer")
