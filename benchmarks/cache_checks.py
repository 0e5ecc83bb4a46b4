"""Plausibility checks of cache entries on read (``benchmarks.store.ResultCache.get(check=...)``).

The cache key makes a stale entry unreachable, and the entry's own stored address refuses one
copied to another key; these checks refuse a well-formed entry whose contents cannot be right:
a PESQ above its scale, an STOI outside [-1, 1], a reconstruction of another length or codec.
Each returns None for a plausible entry, else the reason (the entry is then a counted miss and
recomputed).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

#: Closed ranges of the signal metrics (NaN is allowed only with its ``<key>_error``).
SIGNAL_RANGES: dict[str, tuple[float, float]] = {
    "pesq_wb": (-0.5, 4.65), "pesq_nb": (-0.5, 4.65), "stoi": (-1.0, 1.0), "estoi": (-1.0, 1.0),
    "si_sdr": (-math.inf, math.inf), "si_sdr_aligned": (-math.inf, math.inf),
    "delay_ms": (-1000.0, 1000.0), "mel_distance": (0.0, math.inf),
}
#: Ranges of ASR columns (rates are >= 0; dWER may be negative).
ASR_RANGES: dict[str, tuple[float, float]] = {"wer": (0.0, math.inf), "cer": (0.0, math.inf)}
#: Ranges of perceptual columns by name prefix (MOS scales 1..5 with margin; cosine similarity).
PERCEPTUAL_RANGES: dict[str, tuple[float, float]] = {
    "dnsmos": (0.0, 5.5), "distillmos": (0.0, 5.5), "utmos": (0.0, 5.5), "spk_sim": (-1.0, 1.0),
}
Check = Callable[[dict[str, Any], dict[str, np.ndarray]], "str | None"]


def _ranges(values: dict[str, Any], ranges: dict[str, tuple[float, float]], prefix: bool = False) -> str | None:
    for key, value in values.items():
        if key.endswith("_error") or key.endswith("_s"):
            continue
        bounds = next((r for name, r in ranges.items() if key == name or (prefix and key.startswith(name))), None)
        if bounds is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{key} = {value!r} is not a number"
        if math.isnan(value):
            if not values.get(f"{key}_error"):
                return f"{key} is NaN without a reason"
        elif not bounds[0] <= value <= bounds[1]:
            return f"{key} = {value} outside [{bounds[0]}, {bounds[1]}]"
    return None


def signal(values: dict[str, Any], arrays: dict[str, np.ndarray]) -> str | None:
    """A ``signal`` entry: every metric present and in :data:`SIGNAL_RANGES`, trimmed_samples >= 0."""
    missing = [k for k in SIGNAL_RANGES if k not in values]
    if missing:
        return f"missing {', '.join(missing)}"
    trimmed = values.get("trimmed_samples")
    if not isinstance(trimmed, int) or trimmed < 0:
        return f"trimmed_samples = {trimmed!r} is not a count"
    return _ranges(values, SIGNAL_RANGES)


def asr(values: dict[str, Any], arrays: dict[str, np.ndarray]) -> str | None:
    """An ``asr`` entry: WER and CER >= 0 (or NaN with a reason)."""
    return _ranges(values, ASR_RANGES)


def perceptual(values: dict[str, Any], arrays: dict[str, np.ndarray]) -> str | None:
    """A ``perceptual`` entry: MOS columns within their scale, speaker similarity in [-1, 1]."""
    return _ranges(values, PERCEPTUAL_RANGES, prefix=True)


RECONSTRUCTION_KEYS = ("vocab_sizes", "frame_rate", "payload_bytes", "num_samples", "padded_frames",
                       "decoded_samples", "encode_s", "decode_s", "device")


def reconstruction(codec_name: str, codec_sr: int, source_samples: int, metric_sr: int) -> Check:
    """The check of a ``reconstruction`` entry of ``codec_name`` for a source of ``source_samples``
    samples at the codec's rate ``codec_sr``: the codec matches, the fields are there, the
    encoded length is the source's, ``wav16k`` is a finite 1-D float array as long as the decoded
    output at ``metric_sr``, codes are integers inside the vocabularies, times and payload >= 0."""
    def check(values: dict[str, Any], arrays: dict[str, np.ndarray]) -> str | None:
        missing = [k for k in RECONSTRUCTION_KEYS if k not in values]
        if missing:
            return f"missing {', '.join(missing)}"
        if values.get("codec", codec_name) != codec_name:
            return f"entry is of codec {values.get('codec')!r}, not {codec_name!r}"
        if abs(int(values["num_samples"]) - source_samples) > 1:
            return f"num_samples {values['num_samples']} != {source_samples} samples of the source at {codec_sr} Hz"
        wav = arrays.get("wav16k")
        if wav is None or wav.ndim != 1 or wav.dtype.kind != "f" or not np.isfinite(wav).all():
            return "wav16k is missing, not a 1-D float array, or not finite"
        expected = int(values["decoded_samples"]) * metric_sr / codec_sr
        if abs(wav.shape[0] - expected) > 2:
            return f"wav16k holds {wav.shape[0]} samples, the decoded output {expected:.0f}"
        for k in ("encode_s", "decode_s"):
            if not isinstance(values[k], (int, float)) or not values[k] >= 0:
                return f"{k} = {values[k]!r} is not a time"
        payload = values["payload_bytes"]
        if payload is not None and (not isinstance(payload, (int, float)) or not payload >= 0):
            return f"payload_bytes = {payload!r} is not a size"
        codes = arrays.get("codes")
        if codes is not None:
            vocab = [int(v) for v in values["vocab_sizes"]]
            if codes.ndim != 2 or codes.dtype.kind not in "iu" or codes.shape[0] != len(vocab):
                return f"codes of shape {codes.shape} / dtype {codes.dtype} do not match {len(vocab)} vocabularies"
            if codes.size and (codes.min() < 0 or (codes.max(axis=1) >= np.array(vocab)).any()):
                return "codes outside their vocabularies"
        return None
    return check
