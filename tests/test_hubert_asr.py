"""HuBERT-large CTC (metrics.asr.hubert), offline: a randomly initialised HubertForCTC with the
structure of facebook/hubert-large-ls960-ft (layer-norm conv front end, stable layer norm, the
32-symbol LibriSpeech character vocabulary), saved as ``<dir>/facebook/hubert-large-ls960-ft/``
and loaded back through ``load_asr`` -- the real loading path. The fast test shrinks the
transformer; the slow one builds the full 24-layer, 1024-wide model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metrics.asr import AsrUnavailable, load_asr
from metrics.asr import hubert as H
from helpers import random_model, save_random_model

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U",
         "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]


def _model(tiny: bool):
    from transformers import HubertConfig, HubertForCTC

    return random_model(HubertForCTC, HubertConfig, tiny,
                        full=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
                        tiny_extra=dict(num_conv_pos_embeddings=16), vocab_size=len(VOCAB), feat_extract_norm="layer",
                        do_stable_layer_norm=True, conv_bias=True, pad_token_id=0)


def _save(model, root):
    folder = save_random_model(model, root, H.HUBERT_SOURCE.repo_id, do_normalize=True, return_attention_mask=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    return folder


def _check(model, root, speech_16k):
    backend = load_asr("hubert-ctc", weights_dir=root)
    wav = speech_16k[0][:48000]
    x = torch.from_numpy((wav - wav.mean()) / np.sqrt(wav.var() + 1e-7))[None]
    with torch.inference_mode():
        expected = model(input_values=x).logits[0]
    assert torch.allclose(backend.logits(wav), expected, atol=1e-4)
    text = backend.transcribe([wav])[0]
    assert isinstance(text, str) and set(text) <= set("".join(VOCAB[4:]).replace("|", " "))
    info = backend.info()
    assert info["backend"] == "hubert-ctc" and info["decoding"] == "greedy CTC"
    assert info["weights"]["origin"] == "weights-dir" and info["weights"]["repo_id"] == "facebook/hubert-large-ls960-ft"


def test_random_hubert_ctc_loads_from_a_weights_folder(tmp_path, speech_16k):
    model = _model(tiny=True)
    _save(model, tmp_path)
    _check(model, tmp_path, speech_16k)


@pytest.mark.slow
def test_full_size_random_hubert_large(tmp_path, speech_16k):
    model = _model(tiny=False)
    assert sum(p.numel() for p in model.parameters()) > 300e6
    _save(model, tmp_path)
    _check(model, tmp_path, speech_16k)


def test_greedy_ctc_collapses_repeats_and_blanks(tmp_path):
    folder = _save(_model(tiny=True), tmp_path)
    backend = load_asr(f"hubert-ctc:{folder}")
    ids = [VOCAB.index(c) for c in ["<s>", "H", "H", "<pad>", "E", "L", "<pad>", "L", "O", "|", "|", "W", "O", "R", "L", "D"]]
    v = backend._vocab
    assert H.ctc_greedy_text(ids, v["tokens"], v["blank"], v["delimiter"], v["silent"]) == "HELLO WORLD"


def test_missing_weights_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AsrUnavailable) as e:
        load_asr("hubert-ctc", weights_dir=tmp_path, download=True)
    assert "downloads are off (HF_HUB_OFFLINE=1)" in str(e.value) and "\n" not in str(e.value)


def test_a_folder_missing_the_vocabulary_is_named(tmp_path):
    folder = _save(_model(tiny=True), tmp_path)
    (folder / "vocab.json").unlink()
    with pytest.raises(AsrUnavailable, match="lacks vocab.json"):
        load_asr(f"hubert-ctc:{folder}")
