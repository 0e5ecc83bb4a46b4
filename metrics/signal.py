"""Signal-level quality metrics: PESQ (NB/WB), STOI, ESTOI, SI-SDR (raw and delay-aligned), log-mel distance.

Every function is pure: it copies its inputs, never modifies them, and returns a `MetricValue`.
A metric that cannot be computed returns `MetricValue(nan, reason)`; a failure is never turned
into a plausible number. Programming errors (arrays that are not 1-D, a non-positive sample
rate) raise `ValueError`.

Conventions shared by all functions:
    ref, est: 1-D float arrays (any float dtype, nominally in [-1, 1]) at sample rate `sr` (Hz).
        When their lengths differ, both are trimmed to the shorter one (the runner's stated
        alignment rule). Only `si_sdr_aligned` searches for a delay; PESQ aligns internally.
    Non-finite samples (NaN/Inf) make every metric NaN with a reason.
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

PESQ_MIN_SECONDS = 0.25
"""Shorter inputs are refused (the ITU P.862 model needs several 32 ms frames of speech)."""
MAX_DELAY_S = 0.1
"""Default delay search range of `si_sdr_aligned`: +-100 ms."""
STOI_MIN_SECONDS = (256 + 30 * 128 + 1) / 10000
"""Shortest input pystoi can score: 30 frames of 256 samples, hop 128, at its internal 10 kHz,
after its silence removal drops one frame (0.4097 s; found by search, 4096 samples fail). Shorter
inputs crash inside pystoi (< 1 frame) or make it return a substitute 1e-5."""

LONG_AUDIO_S = 60.0
"""Inputs longer than this are scored on segments (`signal_metrics`): the PESQ C library crashes
the process (segfault) on inputs of about 200 s and more (works at 120 s), and whole-signal STOI,
FFT cross-correlation and mel spectrograms need memory that grows with the length (about 2 GB
per 10 minutes each)."""
SEGMENT_S = 30.0
"""Longest segment (s) a long input is cut into: equal consecutive segments of at most this length."""

MEL_N_FFT = 1024
MEL_HOP = 256
MEL_N_MELS = 80
MEL_LOG_FLOOR = 1e-5


class MetricValue(NamedTuple):
    """A metric result: `value` is NaN exactly when `error` says why it could not be computed."""

    value: float
    error: str | None = None


def _fail(reason: str) -> MetricValue:
    return MetricValue(math.nan, reason)


def _prepare(ref: np.ndarray, est: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Copy to float64, validate shapes and rate, trim to the shorter length.

    Returns (ref, est, reason) where reason is set when the signals cannot be scored.
    """
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer in Hz, got {sr!r}")
    r = np.array(ref, dtype=np.float64, copy=True)
    e = np.array(est, dtype=np.float64, copy=True)
    if r.ndim != 1 or e.ndim != 1:
        raise ValueError(f"metrics expect 1-D arrays [T]; got reference {r.shape} and estimate {e.shape}")
    n = min(r.shape[0], e.shape[0])
    r, e = r[:n], e[:n]
    if n == 0:
        return r, e, "empty signal (0 samples)"
    if not np.isfinite(r).all():
        return r, e, "reference contains NaN or Inf"
    if not np.isfinite(e).all():
        return r, e, "estimate contains NaN or Inf"
    return r, e, None


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr VHQ resampling of a 1-D float64 array (no-op when the rates agree)."""
    if sr_in == sr_out:
        return x
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="VHQ")


def _pesq(ref: np.ndarray, est: np.ndarray, sr: int, target_sr: int, mode: str) -> MetricValue:
    r, e, reason = _prepare(ref, est, sr)
    if reason:
        return _fail(reason)
    if r.shape[0] < PESQ_MIN_SECONDS * sr:
        return _fail(f"too short for PESQ: {r.shape[0] / sr:.3f} s < {PESQ_MIN_SECONDS} s")
    if not np.any(r):
        return _fail("reference is silent (all zeros): PESQ finds no utterance")
    try:
        from pesq import PesqError, pesq
    except ImportError as exc:
        return _fail(f"pesq package not installed (pip install pesq): {exc}")
    r = _resample(r, sr, target_sr)
    e = _resample(e, sr, target_sr)
    try:
        value = float(pesq(target_sr, r, e, mode))
    except PesqError as exc:
        return _fail(f"PESQ failed: {type(exc).__name__}: {exc}".rstrip(": "))
    except (ValueError, ArithmeticError) as exc:  # e.g. NaN after pesq's internal normalisation
        return _fail(f"PESQ failed: {type(exc).__name__}: {exc}")
    if not math.isfinite(value):
        return _fail(f"PESQ returned a non-finite score ({value})")
    return MetricValue(value)


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> MetricValue:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO, range about 1.04..4.64) at 16 kHz.

    Inputs at another rate are resampled to 16 kHz with soxr VHQ. NaN with a reason when the
    audio is shorter than 0.25 s, contains no detectable utterance (e.g. silence), or the
    `pesq` package raises.
    """
    return _pesq(ref, est, sr, 16000, "wb")


def pesq_nb(ref: np.ndarray, est: np.ndarray, sr: int) -> MetricValue:
    """Narrow-band PESQ (ITU-T P.862 with the P.862.1 MOS-LQO mapping, about 1.0..4.55) at 8 kHz.

    Inputs are resampled to 8 kHz with soxr VHQ. Failure behaviour as for `pesq_wb`.
    """
    return _pesq(ref, est, sr, 8000, "nb")


def _stoi(ref: np.ndarray, est: np.ndarray, sr: int, extended: bool) -> MetricValue:
    r, e, reason = _prepare(ref, est, sr)
    if reason:
        return _fail(reason)
    try:
        from pystoi import stoi as pystoi_stoi
    except ImportError as exc:
        return _fail(f"pystoi package not installed (pip install pystoi): {exc}")
    name = "ESTOI" if extended else "STOI"
    if r.shape[0] < STOI_MIN_SECONDS * sr:
        return _fail(f"too short for {name}: {r.shape[0] / sr:.3f} s < {STOI_MIN_SECONDS:.4f} s "
                     f"(30 frames of 25.6 ms with 50 % overlap)")
    if not np.any(r):
        # pystoi keeps every frame of an all-zero reference (they are all equally loud) and
        # returns 0.0, a plausible-looking score for a signal that has no speech to compare.
        return _fail(f"reference is silent (all zeros): {name} has no speech to compare")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(pystoi_stoi(r, e, sr, extended=extended))
        except Exception as exc:  # pystoi raises bare Exception / numpy errors
            return _fail(f"{name} failed: {type(exc).__name__}: {exc}")
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            # pystoi returns a substitute 1e-5 here; we report the failure instead.
            return _fail(f"{name}: fewer than 30 non-silent 25.6 ms frames (audio too short or silent)")
    if not math.isfinite(value):
        return _fail(f"{name} is not finite ({value}); is the estimate silent?")
    return MetricValue(value)


def stoi(ref: np.ndarray, est: np.ndarray, sr: int) -> MetricValue:
    """Short-time objective intelligibility (Taal et al. 2011) via pystoi, range 0..1.

    pystoi resamples internally to 10 kHz and drops frames more than 40 dB below the loudest.
    No alignment: a delayed estimate loses STOI points. NaN with a reason when the input is
    shorter than `STOI_MIN_SECONDS`, the reference is all zeros, fewer than 30 non-silent frames
    remain after pystoi's silence removal, or the result is not finite.
    """
    return _stoi(ref, est, sr, extended=False)


def estoi(ref: np.ndarray, est: np.ndarray, sr: int) -> MetricValue:
    """Extended STOI (Jensen & Taal 2016) via pystoi, range about -1..1 (1 = identical).

    Failure behaviour as for `stoi`.
    """
    return _stoi(ref, est, sr, extended=True)


def _si_sdr(r: np.ndarray, e: np.ndarray) -> MetricValue:
    """SI-SDR in dB of already prepared, equally long float64 arrays."""
    r = r - r.mean()
    e = e - e.mean()
    ref_energy = float(np.dot(r, r))
    if ref_energy == 0.0:
        return _fail("reference is silent (zero energy after removing the mean)")
    target = (np.dot(e, r) / ref_energy) * r
    noise = e - target
    noise_energy = float(np.dot(noise, noise))
    target_energy = float(np.dot(target, target))
    if noise_energy == 0.0:
        return MetricValue(math.inf)
    if target_energy == 0.0:
        return _fail("estimate is orthogonal to the reference (or silent): SI-SDR is -inf")
    return MetricValue(10.0 * math.log10(target_energy / noise_energy))


def si_sdr(ref: np.ndarray, est: np.ndarray, sr: int) -> MetricValue:
    """Scale-invariant SDR (Le Roux et al. 2019) in dB, both signals made zero-mean, no alignment.

    `sr` is only validated (SI-SDR does not depend on it). Returns +inf for an estimate that is an
    exact scaled copy of the reference; NaN with a reason for a silent reference or an estimate
    orthogonal to it.
    """
    r, e, reason = _prepare(ref, est, sr)
    if reason:
        return _fail(reason)
    return _si_sdr(r, e)


def estimate_delay(ref: np.ndarray, est: np.ndarray, max_delay: int) -> int:
    """Integer delay (samples) of `est` relative to `ref` by FFT cross-correlation.

    Args:
        ref, est: 1-D float arrays, any lengths.
        max_delay: search range in samples, lags in [-max_delay, +max_delay].

    Returns:
        d maximising sum_n ref[n] * est[n + d] (positive: `est` lags `ref`); 0 for silent input.
    """
    r = np.asarray(ref, dtype=np.float64)
    e = np.asarray(est, dtype=np.float64)
    if max_delay < 0:
        raise ValueError(f"max_delay must be >= 0 samples, got {max_delay}")
    n = r.shape[0] + e.shape[0]
    if n == 0:
        return 0
    n_fft = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.conj(np.fft.rfft(r, n_fft)) * np.fft.rfft(e, n_fft), n_fft)
    lags = np.arange(-max_delay, max_delay + 1)
    values = corr[lags % n_fft]
    if not np.any(values):
        return 0
    return int(lags[np.argmax(values)])


def si_sdr_aligned(
    ref: np.ndarray, est: np.ndarray, sr: int, max_delay_s: float = MAX_DELAY_S
) -> tuple[MetricValue, int | None]:
    """SI-SDR (dB) after removing the integer delay that maximises the cross-correlation.

    The delay is searched within +-max_delay_s by FFT cross-correlation of the (length-trimmed)
    signals; both are then cut to their overlap and scored with `si_sdr`.

    Returns:
        (value, delay_samples): delay in samples at `sr`, positive when `est` lags `ref`; None
        when the signals cannot be scored (value is then NaN with a reason).
    """
    r, e, reason = _prepare(ref, est, sr)
    if reason:
        return _fail(reason), None
    if not np.any(r) or not np.any(e):
        return _fail("reference or estimate is silent: no delay can be estimated"), None
    max_lag = min(int(round(max_delay_s * sr)), r.shape[0] - 1)
    d = estimate_delay(r, e, max_lag)
    if d >= 0:
        r_al, e_al = r[: r.shape[0] - d], e[d:]
    else:
        r_al, e_al = r[-d:], e[: e.shape[0] + d]
    return _si_sdr(r_al, e_al), d


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int = MEL_N_FFT, n_mels: int = MEL_N_MELS) -> torch.Tensor:
    """Triangular HTK-mel filterbank from 0 Hz to sr/2, peak 1, shape [n_mels, n_fft // 2 + 1]."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sr / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None)).to(torch.float64)


def log_mel(x: np.ndarray, sr: int) -> torch.Tensor:
    """log10 mel power spectrogram [n_mels, n_frames] of a 1-D float64 array.

    torch.stft with a periodic Hann window of MEL_N_FFT samples, hop MEL_HOP, centred (reflect
    padding), power spectrum, MEL_N_MELS HTK-mel bands over 0..sr/2, log10(max(mel, 1e-5)).
    At 16 kHz: 64 ms windows, 16 ms hop.
    """
    wav = torch.from_numpy(x)
    pad_mode = "reflect" if wav.shape[0] > MEL_N_FFT // 2 else "constant"
    spec = torch.stft(wav, MEL_N_FFT, MEL_HOP, window=torch.hann_window(MEL_N_FFT, dtype=torch.float64),
                      center=True, pad_mode=pad_mode, return_complex=True)
    power = spec.abs().square()
    return torch.log10(torch.clamp(mel_filterbank(sr) @ power, min=MEL_LOG_FLOOR))


def mel_distance(ref: np.ndarray, est: np.ndarray, sr: int) -> MetricValue:
    """Mean absolute difference of log10 mel spectrograms (`log_mel`), in log10 units (0 = identical).

    Sensitive to level and to delay (no alignment). NaN with a reason only for empty or
    non-finite input.
    """
    r, e, reason = _prepare(ref, est, sr)
    if reason:
        return _fail(reason)
    with torch.inference_mode():
        value = float((log_mel(r, sr) - log_mel(e, sr)).abs().mean())
    return MetricValue(value)


def segment_bounds(n: int, sr: int, segment_s: float = SEGMENT_S) -> list[tuple[int, int]]:
    """(start, stop) sample indices of ceil(n / (segment_s * sr)) equal consecutive segments of ``n`` samples."""
    k = max(1, math.ceil(n / (segment_s * sr)))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _segmented(ref: np.ndarray, est: np.ndarray, sr: int) -> dict[str, float | str]:
    """`signal_metrics` of a long pair: each metric is the length-weighted mean over the segments
    of `segment_bounds` where it is defined (``delay_ms``: the median of the segments' delays);
    NaN with the first segment's reason where no segment defines it. Memory is bounded by one
    segment, and PESQ never sees more than `SEGMENT_S` seconds."""
    n = min(len(ref), len(est))
    parts = [(b - a, signal_metrics(ref[a:b], est[a:b], sr)) for a, b in segment_bounds(n, sr)]
    out: dict[str, float | str] = {}
    for key in parts[0][1]:
        if key.endswith("_error"):
            continue
        ok = [(w, float(m[key])) for w, m in parts if not math.isnan(float(m[key]))]
        if not ok:
            out[key] = math.nan
            out[f"{key}_error"] = str(parts[0][1].get(f"{key}_error", "undefined on every segment"))
        elif key == "delay_ms":
            out[key] = float(np.median([v for _, v in ok]))
        else:
            w = np.array([w for w, _ in ok], dtype=np.float64)
            v = np.array([v for _, v in ok], dtype=np.float64)
            out[key] = float(v[0]) if np.isinf(v).all() else float(np.sum(w * v) / w.sum())
    out["signal_segments"] = f"{len(parts)} segments of <= {SEGMENT_S:g} s (input {n / sr:.1f} s > {LONG_AUDIO_S:g} s)"
    return out


def signal_metrics(ref: np.ndarray, est: np.ndarray, sr: int) -> dict[str, float | str]:
    """All signal metrics of one (reference, estimate) pair as a flat dict.

    Keys: pesq_wb, pesq_nb, stoi, estoi, si_sdr, si_sdr_aligned, delay_ms, mel_distance (floats,
    NaN allowed), plus `<key>_error` (str) for each NaN value. `delay_ms` is the delay found by
    `si_sdr_aligned`, in milliseconds (positive: estimate lags).

    Inputs longer than `LONG_AUDIO_S` are scored on segments of at most `SEGMENT_S` seconds
    (length-weighted means; see `_segmented`), and the dict then also holds ``signal_segments``,
    a sentence saying so.
    """
    if isinstance(sr, (int, np.integer)) and sr > 0 and min(len(ref), len(est)) > LONG_AUDIO_S * sr:
        return _segmented(ref, est, sr)
    aligned, delay = si_sdr_aligned(ref, est, sr)
    values: dict[str, MetricValue] = {
        "pesq_wb": pesq_wb(ref, est, sr),
        "pesq_nb": pesq_nb(ref, est, sr),
        "stoi": stoi(ref, est, sr),
        "estoi": estoi(ref, est, sr),
        "si_sdr": si_sdr(ref, est, sr),
        "si_sdr_aligned": aligned,
        "delay_ms": MetricValue(1000.0 * delay / sr) if delay is not None else _fail(aligned.error or "no delay"),
        "mel_distance": mel_distance(ref, est, sr),
    }
    out: dict[str, float | str] = {}
    for key, mv in values.items():
        out[key] = mv.value
        if mv.error is not None:
            out[f"{key}_error"] = mv.error
    return out
