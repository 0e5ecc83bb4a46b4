"""Tests for metrics.signal: identity sanity, known SNR and shift, failure reasons, purity."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics import signal as sm

SR = 16000


@pytest.fixture(scope="module")
def speech(speech_16k) -> np.ndarray:
    wav, sr, _ = speech_16k
    assert sr == SR
    return wav.astype(np.float64)


def _noise_at_snr(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise made exactly orthogonal to zero-mean x, scaled to the given SNR."""
    rng = np.random.default_rng(seed)
    xc = x - x.mean()
    n = rng.standard_normal(x.shape[0])
    n -= n.mean()
    n -= (n @ xc) / (xc @ xc) * xc
    return n * math.sqrt((xc @ xc) / (n @ n) / 10 ** (snr_db / 10))


def test_identity_pesq_stoi(speech):
    assert sm.pesq_wb(speech, speech, SR).value > 4.4
    assert sm.pesq_nb(speech, speech, SR).value > 4.4
    assert sm.stoi(speech, speech, SR).value == pytest.approx(1.0, abs=1e-6)
    assert sm.estoi(speech, speech, SR).value == pytest.approx(1.0, abs=1e-6)
    assert sm.mel_distance(speech, speech, SR).value == 0.0


def test_degradation_lowers_scores(speech):
    noisy = speech + _noise_at_snr(speech, 5.0)
    assert sm.pesq_wb(speech, noisy, SR).value < 2.5
    assert sm.stoi(speech, noisy, SR).value < 0.95
    assert sm.mel_distance(speech, noisy, SR).value > 0.1


def test_si_sdr_matches_constructed_snr(speech):
    for snr in (0.0, 10.0, 25.0):
        est = 0.5 * (speech - speech.mean()) + 0.5 * _noise_at_snr(speech, snr)
        assert sm.si_sdr(speech, est, SR).value == pytest.approx(snr, abs=0.01)


@pytest.mark.parametrize("shift", [37, -37, 0])
def test_si_sdr_aligned_finds_known_shift(speech, shift):
    est = np.roll(speech, shift)
    if shift > 0:
        est[:shift] = 0.0
    elif shift < 0:
        est[shift:] = 0.0
    raw = sm.si_sdr(speech, est, SR).value
    aligned, delay = sm.si_sdr_aligned(speech, est, SR)
    assert delay == shift
    assert aligned.value > 80.0 and aligned.error is None
    if shift:
        assert raw < 10.0  # misalignment costs many dB without alignment


def test_estimate_delay_respects_search_range(speech):
    est = np.concatenate([np.zeros(500), speech])
    assert sm.estimate_delay(speech, est, 600) == 500
    assert abs(sm.estimate_delay(speech, est, 100)) <= 100


def test_pesq_on_silence_is_nan_with_reason(speech):
    silence = np.zeros(SR * 2)
    for fn in (sm.pesq_wb, sm.pesq_nb):
        mv = fn(silence, silence, SR)
        assert math.isnan(mv.value) and mv.error
        mv = fn(speech, np.zeros_like(speech), SR)
        assert math.isnan(mv.value) or mv.value < 1.5  # a silent estimate never scores well


def test_too_short_gives_nan_with_reason(speech):
    short = speech[: SR // 10]
    for fn in (sm.pesq_wb, sm.pesq_nb, sm.stoi, sm.estoi):
        mv = fn(short, short, SR)
        assert math.isnan(mv.value), fn.__name__
        assert "short" in mv.error, mv.error


def test_nonfinite_and_bad_shapes(speech):
    bad = speech.copy()
    bad[100] = np.nan
    for fn in (sm.pesq_wb, sm.stoi, sm.si_sdr, sm.mel_distance):
        mv = fn(speech, bad, SR)
        assert math.isnan(mv.value) and "NaN" in mv.error
    with pytest.raises(ValueError, match="1-D"):
        sm.si_sdr(speech[None, :], speech, SR)
    with pytest.raises(ValueError, match="sample rate"):
        sm.stoi(speech, speech, 0)


def test_silent_reference_si_sdr():
    z = np.zeros(SR)
    mv = sm.si_sdr(z, np.ones(SR), SR)
    assert math.isnan(mv.value) and "silent" in mv.error
    mv, delay = sm.si_sdr_aligned(z, z, SR)
    assert math.isnan(mv.value) and delay is None


def test_mel_distance_of_20db_gain_is_two_log10_units(speech):
    # power scales by 100 -> log10 mel differs by exactly 2 wherever both are above the 1e-5
    # floor, and by less where the floor clamps (empty bands of band-limited speech)
    value = sm.mel_distance(speech, 0.1 * speech, SR).value
    assert 1.7 < value <= 2.0 + 1e-9


def test_signal_metrics_keys_errors_and_purity(speech):
    ref = speech.astype(np.float32)
    est = np.concatenate([np.zeros(80, np.float32), ref[:-80]]) * np.float32(0.7)
    ref_before, est_before = ref.copy(), est.copy()
    out = sm.signal_metrics(ref, est, SR)
    np.testing.assert_array_equal(ref, ref_before)
    np.testing.assert_array_equal(est, est_before)
    keys = {"pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_sdr_aligned", "delay_ms", "mel_distance"}
    assert keys <= set(out)
    assert out["delay_ms"] == pytest.approx(5.0)
    assert out["si_sdr_aligned"] > 80.0
    for k in keys:
        assert math.isnan(out[k]) == (f"{k}_error" in out), k

    silent = sm.signal_metrics(np.zeros(SR), np.zeros(SR), SR)
    for k in keys:
        if math.isnan(silent[k]):
            assert isinstance(silent[f"{k}_error"], str) and silent[f"{k}_error"]
    assert math.isnan(silent["pesq_wb"]) and math.isnan(silent["si_sdr"])


def test_different_lengths_trim_to_shorter(speech):
    mv = sm.si_sdr(speech, speech[:-1000], SR)
    assert mv.value == math.inf
