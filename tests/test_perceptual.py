"""Non-intrusive quality (metrics.perceptual) and speaker similarity (metrics.speaker) on real speech.

DNSMOS, DistillMOS and Resemblyzer ship their weights in their wheels, so they are tested with
the real models. UTMOS22-strong and WavLM-base-sv need downloaded weights: they are tested with
randomly initialised models of the real architectures, saved in the layout users give
(``<dir>/<repo id>/``) and loaded back through the real loading path.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from metrics import perceptual as P
from metrics import speaker as S
from tests.conftest import EVAL_MANIFEST
from helpers import random_model, save_random_model


def _clip(row, seconds=4.0):
    import soundfile as sf

    wav, sr = sf.read(EVAL_MANIFEST.parent / row["path"], dtype="float32")
    assert sr == 16000
    return wav[: int(seconds * sr)]


@pytest.fixture(scope="module")
def clips(eval_rows):
    """Three 4-s clips of LibriSpeech: two of one speaker, one of another."""
    rows = [r for r in eval_rows if r["set"].startswith("librispeech") and float(r["duration_s"]) > 4.5]
    a = rows[0]
    same = next(r for r in rows if r["speaker"] == a["speaker"] and r["id"] != a["id"])
    other = next(r for r in rows if r["speaker"] != a["speaker"])
    return _clip(a), _clip(same), _clip(other)


def _noisy(x, snr_db=0.0, seed=0):
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return np.clip(x + noise, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def dnsmos():
    return P.load_quality_model("dnsmos")


@pytest.fixture(scope="module")
def distillmos():
    return P.load_quality_model("distillmos")


def test_dnsmos_scores_clean_speech_above_noisy_speech(dnsmos, clips):
    clean, noisy = dnsmos.score(clips[0]), dnsmos.score(_noisy(clips[0]))
    assert set(clean) == set(P.DnsmosModel.columns)
    assert all(1.0 <= v.value <= 5.0 and v.error is None for v in clean.values())
    assert clean["dnsmos_ovrl"].value > noisy["dnsmos_ovrl"].value + 0.5
    assert clean["dnsmos_bak"].value > noisy["dnsmos_bak"].value + 0.5


def test_distillmos_scores_clean_speech_above_noisy_speech(distillmos, clips):
    clean, noisy = distillmos.score(clips[0])["distillmos"], distillmos.score(_noisy(clips[0]))["distillmos"]
    assert 1.0 <= clean.value <= 5.0 and clean.error is None
    assert clean.value > noisy.value + 0.5


def test_distillmos_loads_without_torchaudio_and_leaves_no_placeholder(distillmos):
    import importlib.util

    assert importlib.util.find_spec("torchaudio") is None or "torchaudio" in sys.modules
    mod = sys.modules.get("torchaudio")
    assert mod is None or "placeholder" not in (mod.__doc__ or "")
    assert distillmos.info()["model"] == "distillmos-v7"


@pytest.mark.parametrize("bad,reason", [(np.zeros(100, np.float32), "too short"),
                                        (np.full(16000, np.nan, np.float32), "NaN")])
def test_unscorable_input_is_nan_with_reason(dnsmos, distillmos, bad, reason):
    for model in (dnsmos, distillmos):
        for value in model.score(bad).values():
            assert math.isnan(value.value) and reason in value.error


def test_two_dimensional_input_is_a_value_error(distillmos):
    with pytest.raises(ValueError, match="1-D"):
        distillmos.score(np.zeros((2, 16000), np.float32))


def test_unknown_model_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="dnsmos, distillmos, utmos"):
        P.load_quality_model("pesq")
    with pytest.raises(ValueError, match="resemblyzer, wavlm-sv"):
        S.load_speaker_model("ecapa")


def test_resemblyzer_same_speaker_is_closer_than_another(clips):
    model = S.load_speaker_model("resemblyzer")
    a, same, other = clips
    assert model.similarity(a, a).value == pytest.approx(1.0, abs=1e-5)
    s_same, s_other = model.similarity(a, same).value, model.similarity(a, other).value
    assert s_same > s_other
    silent = model.similarity(a, np.zeros_like(a))
    assert math.isnan(silent.value) and "no speech" in silent.error


def test_missing_downloadable_weights_are_one_line_and_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("JEPA_DAAM_WEIGHTS", raising=False)
    for load, name in ((P.load_quality_model, "utmos"), (S.load_speaker_model, "wavlm-sv")):
        with pytest.raises(P.MetricUnavailable) as e:
            load(name, weights_dir=tmp_path, download=True)
        assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.slow
def test_utmos_random_real_architecture_loads_from_a_weights_folder(tmp_path, clips):
    """UTMOS22-strong (wav2vec 2.0 base + BLSTM, 103 M parameters) with random weights, saved as
    ``<dir>/Blinorot/UTMOS-PyTorch/utmos_state_dict.pt``: the loaded model scores like the saved one."""
    from utmos_pytorch.utmos_torch import UTMOSModel, remove_weight_norm_for_jit

    torch.manual_seed(0)
    model = UTMOSModel().eval()
    folder = tmp_path / P.UTMOS_SOURCE.repo_id
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "utmos_state_dict.pt")
    loaded = P.load_quality_model("utmos", weights_dir=tmp_path)
    assert loaded.info()["weights"]["origin"] == "weights-dir"
    x = clips[0][:32000]
    remove_weight_norm_for_jit(model)
    with torch.inference_mode():
        expected = model(wav=torch.from_numpy(x)[None, None], domains=torch.zeros(1, dtype=torch.int),
                         judge_id=torch.full((1,), 288, dtype=torch.int)).mean(dim=1).item() * 2 + 3
    assert loaded.score(x)["utmos"].value == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_utmos_refuses_a_state_dict_of_another_model(tmp_path):
    folder = tmp_path / P.UTMOS_SOURCE.repo_id
    folder.mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, folder / "utmos_state_dict.pt")
    with pytest.raises(P.MetricUnavailable, match="not a UTMOS22-strong state dict"):
        P.load_quality_model("utmos", weights_dir=tmp_path)


def _wavlm_sv(tiny: bool):
    """WavLMForXVector with wavlm-base-sv's structure (conv front end, relative position bias,
    x-vector TDNN head, 512-d embedding); `tiny` shrinks the transformer for the fast suite."""
    from transformers import WavLMConfig, WavLMForXVector

    return random_model(WavLMForXVector, WavLMConfig, tiny, tiny_extra=dict(
        tdnn_dim=(32, 32, 32, 32, 96), xvector_output_dim=512, num_buckets=32, max_bucket_distance=80))


def _save_wavlm(model, root):
    return save_random_model(model, root, S.WAVLM_SV_SOURCE.repo_id, do_normalize=False)


def _check_wavlm(model, root, clips):
    loaded = S.load_speaker_model("wavlm-sv", weights_dir=root)
    a, same, _ = clips
    with torch.inference_mode():
        e = model(input_values=torch.from_numpy(a)[None]).embeddings[0].numpy()
    assert np.allclose(loaded.embed(a), e / np.linalg.norm(e), atol=1e-4)
    assert loaded.similarity(a, a).value == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= loaded.similarity(a, same).value <= 1.0
    assert loaded.info()["weights"]["origin"] == "weights-dir"


def test_wavlm_sv_random_model_loads_from_a_weights_folder(tmp_path, clips):
    model = _wavlm_sv(tiny=True)
    _save_wavlm(model, tmp_path)
    _check_wavlm(model, tmp_path, clips)


@pytest.mark.slow
def test_wavlm_sv_full_size_random_model(tmp_path, clips):
    model = _wavlm_sv(tiny=False)
    assert sum(p.numel() for p in model.parameters()) > 90e6
    _save_wavlm(model, tmp_path)
    _check_wavlm(model, tmp_path, clips)
