"""audiocore.audio: loading real speech, every kind of bad input as a real file, resampling, checks."""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import soundfile as sf

from audiocore.audio import (
    RESAMPLER,
    AudioError,
    DownmixWarning,
    audio_checksum,
    check_waveform,
    clipped_fraction,
    load_audio,
    read_audio,
    resample,
)


@pytest.fixture(scope="module")
def flac_row(eval_rows):
    return next(r for r in eval_rows if r["set"] == "librispeech_test_clean")


@pytest.fixture(scope="module")
def flac_path(eval_manifest, flac_row):
    """A real 16 kHz FLAC from the evaluation set (read in place)."""
    return eval_manifest.parent / flac_row["path"]


@pytest.fixture(scope="module")
def speech(flac_path):
    wav, sr = sf.read(flac_path, dtype="float32")
    return wav, sr


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


# --- good input --------------------------------------------------------------------------

def test_load_real_flac_matches_soundfile(flac_path, flac_row, speech):
    wav, sr = load_audio(flac_path)
    row = flac_row
    assert sr == int(row["sample_rate"]) == 16000
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert wav.shape[0] == int(row["num_samples"])
    np.testing.assert_array_equal(wav, speech[0])


def test_read_audio_info(flac_path):
    wav, info = read_audio(flac_path, target_sr=24000)
    assert info.source_sample_rate == 16000 and info.sample_rate == 24000
    assert info.channels == 1 and not info.downmixed and info.decoder == "soundfile"
    assert info.duration_s == pytest.approx(wav.shape[0] / 24000, abs=1e-3)
    assert 0.05 < info.peak < 1.0


def test_resample_preserves_tone_and_length():
    sr_in, sr_out, f0 = 16000, 24000, 1000.0
    t = np.arange(sr_in) / sr_in
    x = (0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == (sr_out,)
    assert _peak_hz(y, sr_out) == pytest.approx(f0, abs=2.0)
    ref = 0.5 * np.sin(2 * np.pi * f0 * np.arange(sr_out) / sr_out)
    # VHQ is near-transparent away from the edges.
    assert np.max(np.abs(y[1000:-1000] - ref[1000:-1000])) < 1e-3
    assert RESAMPLER.startswith("soxr VHQ ")


def test_resample_identity_and_bad_rates():
    x = np.ones(10, np.float32)
    assert resample(x, 16000, 16000) is x
    for bad in (0, -8000, 16000.0, True):
        with pytest.raises(ValueError, match="positive integer"):
            resample(x, bad, 16000)


@pytest.mark.parametrize("source_sr", [8000, 48000])
def test_other_source_rates_resampled(tmp_path, source_sr):
    f0 = 440.0
    t = np.arange(2 * source_sr) / source_sr
    tone = 0.3 * np.sin(2 * np.pi * f0 * t)
    path = tmp_path / f"tone_{source_sr}.wav"
    sf.write(path, tone, source_sr, subtype="PCM_16")
    wav, sr = load_audio(path, target_sr=16000)
    assert sr == 16000
    assert wav.shape[0] == 2 * 16000
    assert _peak_hz(wav, 16000) == pytest.approx(f0, abs=1.0)
    rms = float(np.sqrt(np.mean(wav[2000:-2000] ** 2)))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.01)


def test_stereo_is_downmixed_and_reported(tmp_path, speech):
    x, sr = speech
    left, right = x, 0.5 * np.roll(x, 800)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    wav, info = read_audio(path)
    assert info.channels == 2 and info.downmixed
    np.testing.assert_allclose(wav, (left + right) / 2, atol=2 / 32768)
    with pytest.warns(DownmixWarning, match="stereo.flac: 2 channels averaged to mono"):
        mono, _ = load_audio(path)
    np.testing.assert_array_equal(mono, wav)


def test_mono_load_does_not_warn(flac_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(flac_path)


def test_m4a_decoded_through_pyav(tmp_path, speech):
    av = pytest.importorskip("av")
    x, sr = speech
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    wav, info = read_audio(path)
    assert info.decoder == "pyav" and info.source_sample_rate == sr
    # AAC adds encoder priming/padding (< 3 frames of 1024 samples).
    assert 0 <= wav.shape[0] - x.shape[0] < 3 * 1024
    rms_in, rms_out = np.sqrt(np.mean(x**2)), np.sqrt(np.mean(wav**2))
    assert rms_out == pytest.approx(rms_in, rel=0.1)


def test_clipping_is_loaded_and_detected(tmp_path, speech):
    x, sr = speech
    path = tmp_path / "clipped.wav"
    sf.write(path, np.clip(8 * x, -1, 1), sr, subtype="PCM_16")
    wav, _ = load_audio(path)
    assert clipped_fraction(wav) > 0.01
    assert clipped_fraction(x) == 0.0
    assert clipped_fraction(np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="threshold"):
        clipped_fraction(x, threshold=1.5)


# --- bad input: each a real file ----------------------------------------------------------

def _expect(path, pattern, reason):
    """load_audio(path) raises AudioError matching ``pattern``, naming the file, with ``reason``."""
    from audiocore.audio import AUDIO_ERROR_REASONS

    with pytest.raises(AudioError, match=pattern) as info:
        load_audio(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert info.value.reason == reason and reason in AUDIO_ERROR_REASONS
    return message


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.flac", "file not found", "file_not_found")


def test_directory(tmp_path):
    _expect(tmp_path, "is a directory", "not_a_file")


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    _expect(path, r"empty file \(0 bytes\)", "empty_file")


def test_wav_with_no_frames(tmp_path):
    path = tmp_path / "noframes.wav"
    sf.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    assert path.stat().st_size > 0
    _expect(path, r"no audio samples \(0 frames\)", "no_samples")


def test_truncated_flac(tmp_path, flac_path):
    data = flac_path.read_bytes()
    path = tmp_path / "truncated.flac"
    path.write_bytes(data[: len(data) * 6 // 10])
    _expect(path, "corrupt or truncated", "corrupt_audio")


def test_text_file_with_audio_extension(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    _expect(path, "not a readable audio file", "not_audio")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = np.sin(np.linspace(0, 100, 16000)).astype(np.float32) * 0.1
    x[1234] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    _expect(path, "non-finite samples", "non_finite_samples")


# --- in-memory checks and checksums -------------------------------------------------------

def test_check_waveform():
    out = check_waveform([0, 1, -1], "list")
    assert out.dtype == np.float32 and out.shape == (3,)
    with pytest.raises(AudioError, match=r"decoded: expected a 1-D mono waveform \[T\], got shape \(2, 5\)"):
        check_waveform(np.zeros((2, 5)), "decoded")
    with pytest.raises(AudioError, match="no audio samples"):
        check_waveform(np.zeros(0), "x")
    with pytest.raises(AudioError, match=r"1 NaN, 1 Inf of 4"):
        check_waveform(np.array([0.0, np.nan, np.inf, 1.0]), "x")
    with pytest.raises(AudioError, match="numeric"):
        check_waveform(np.array(["a", "b"]), "x")


def test_audio_checksum(tmp_path, flac_path):
    assert audio_checksum(flac_path) == hashlib.sha256(flac_path.read_bytes()).hexdigest()
    copy = tmp_path / "copy.flac"
    copy.write_bytes(flac_path.read_bytes()[:-1] + b"\x00")
    assert audio_checksum(copy, chunk_bytes=4096) != audio_checksum(flac_path)
    with pytest.raises(AudioError, match="file not found"):
        audio_checksum(tmp_path / "missing.wav")
