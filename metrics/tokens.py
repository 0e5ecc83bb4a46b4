"""Token economics: exact bitrate, token and frame rates, multi-rate folding.

Everything here is computed from what a codec's `encode` returned (`audiocore.codec.Encoded`),
never from what the codec claims:

* **Bitrate of a token codec** is the information capacity of the payload frames:
  ``bits_per_frame = sum_s log2(V_s)`` over the streams (rows of `Encoded.codes`), and
  ``bitrate = n_payload_frames * bits_per_frame / duration_s`` where
  ``n_payload_frames = n_frames - Encoded.padded_frames``. Mixed vocabularies are exact:
  JEPA-DAAM's 18 groups of 16384 plus one group of 16 give 18*14 + 4 = 256 bits per frame,
  640 bit/s at 2.5 Hz (not 47.5 tok/s * 14 bit = 665 bit/s).
* **Header tokens** (`Encoded.header_codes`, sent once per utterance, e.g. JEPA-DAAM's loudness
  gain) add ``sum log2(V_h)`` bits and ``len(header)`` tokens per utterance to the counts above.
* **Bitrate of a bitstream codec** (Opus, MP3, Codec2...) is ``payload_bytes * 8 / duration_s``.
* **Multi-rate codecs** (SNAC: one RVQ level per temporal resolution) are represented in
  `Encoded.codes` at their *coarsest* frame rate, each finer level folded into consecutive rows
  (see `fold_multirate`). The arithmetic above then stays exact with one frame rate per codec.

Codebook health (usage, entropy, perplexity over a corpus) is in `metrics.codebook`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from audiocore.codec import Encoded

#: Relative difference between measured and nominal bitrate above which a row is flagged.
BITRATE_TOLERANCE = 0.05



# --------------------------------------------------------------------------------------------
# Bit and frame arithmetic
# --------------------------------------------------------------------------------------------


def check_vocab_sizes(vocab_sizes: Sequence[int]) -> tuple[int, ...]:
    """``vocab_sizes`` as a tuple of ints; ValueError naming any size below 1."""
    sizes = tuple(int(v) for v in vocab_sizes)
    bad = [v for v in sizes if v < 1]
    if bad:
        raise ValueError(f"vocabulary sizes must be integers >= 1, got {bad} in {sizes}")
    return sizes


def bits_per_frame(vocab_sizes: Sequence[int]) -> float:
    """Exact information capacity of one frame: ``sum_s log2(V_s)`` in bits.

    Args:
        vocab_sizes: one vocabulary size per stream (row of `Encoded.codes`).

    Returns:
        Bits per frame (float; e.g. 256.0 for 18 x 16384 + 1 x 16).
    """
    return float(sum(math.log2(v) for v in check_vocab_sizes(vocab_sizes)))


def stream_bitrate(vocab_sizes: Sequence[int], frame_rate: float) -> float:
    """Bitrate of an unbounded token stream: ``frame_rate * sum_s log2(V_s)`` in bit/s.

    This is the codec's exact *stream* rate (no clip edges, no padding); `measured_bitrate`
    gives the per-clip rate from a real `Encoded`.

    Args:
        vocab_sizes: one vocabulary size per stream.
        frame_rate: frames per second of the streams (Hz), > 0.
    """
    if not frame_rate > 0:
        raise ValueError(f"frame_rate must be > 0 Hz, got {frame_rate}")
    return frame_rate * bits_per_frame(vocab_sizes)


def payload_frames(enc: Encoded) -> int:
    """Number of frames of `enc.codes` that carry payload: ``n_frames - enc.padded_frames``."""
    if enc.codes is None:
        raise ValueError("Encoded has no codes (bitstream or waveform codec); payload frames are undefined")
    n_frames = int(enc.codes.shape[1])
    if not 0 <= enc.padded_frames <= n_frames:
        raise ValueError(f"Encoded.padded_frames={enc.padded_frames} must lie in [0, n_frames={n_frames}]")
    return n_frames - enc.padded_frames


def _check_duration(duration_s: float) -> float:
    duration_s = float(duration_s)
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a finite number of seconds > 0, got {duration_s}")
    return duration_s


def measured_bitrate(enc: Encoded, duration_s: float) -> float:
    """Measured bitrate of one encoded utterance, in bit/s.

    Token codecs: ``(payload_frames(enc) * bits_per_frame(enc.vocab_sizes) + header bits) /
    duration_s`` (padding frames excluded; header bits = sum log2 of the header vocabularies). Bitstream codecs: ``enc.payload_bytes * 8 / duration_s``.

    Args:
        enc: what the codec's `encode` returned.
        duration_s: duration of the original (unpadded) audio in seconds.

    Raises:
        ValueError: if `enc` has neither codes nor payload_bytes, or duration_s <= 0.
    """
    duration_s = _check_duration(duration_s)
    if enc.codes is not None:
        header_bits = bits_per_frame(enc.header_vocab_sizes) if enc.header_vocab_sizes else 0.0
        return (payload_frames(enc) * bits_per_frame(enc.vocab_sizes) + header_bits) / duration_s
    if enc.payload_bytes is not None:
        if enc.payload_bytes < 0:
            raise ValueError(f"Encoded.payload_bytes must be >= 0, got {enc.payload_bytes}")
        return enc.payload_bytes * 8.0 / duration_s
    raise ValueError("Encoded has neither codes nor payload_bytes: no payload to measure")


def bitrate_deviation(measured: float, nominal: float | None) -> float:
    """Relative deviation ``(measured - nominal) / nominal``; NaN when there is no nominal."""
    if nominal is None or not nominal > 0 or not math.isfinite(measured):
        return float("nan")
    return (measured - nominal) / nominal


def bitrate_columns(enc: Encoded, duration_s: float, nominal: float | None) -> dict[str, Any]:
    """The bitrate columns of one results row.

    Args:
        enc: what `encode` returned.
        duration_s: duration of the original audio (s).
        nominal: what the codec claims (`Codec.nominal_bitrate()`), bit/s, or None.

    Returns:
        ``bitrate_measured`` (bit/s), ``bitrate_nominal`` (bit/s or None),
        ``bitrate_deviation`` (relative, NaN without a nominal), ``bitrate_warning``
        (True when ``|deviation| > BITRATE_TOLERANCE``), plus ``bitrate_measured_error`` /
        ``bitrate_deviation_error`` when the corresponding value is NaN.
    """
    row: dict[str, Any] = {"bitrate_nominal": nominal}
    try:
        row["bitrate_measured"] = measured_bitrate(enc, duration_s)
    except ValueError as err:
        row["bitrate_measured"] = float("nan")
        row["bitrate_measured_error"] = str(err)
    dev = bitrate_deviation(row["bitrate_measured"], nominal)
    row["bitrate_deviation"] = dev
    row["bitrate_warning"] = bool(math.isfinite(dev) and abs(dev) > BITRATE_TOLERANCE)
    if math.isnan(dev):
        row["bitrate_deviation_error"] = (
            "codec claims no nominal bitrate" if nominal is None or not nominal > 0 else "measured bitrate is NaN"
        )
    return row


def token_rates(enc: Encoded, duration_s: float) -> dict[str, Any]:
    """Token and frame rates of one encoded utterance (payload frames only).

    Args:
        enc: what `encode` returned.
        duration_s: duration of the original audio (s).

    Returns:
        ``tokens_per_s`` = (n_streams * n_payload_frames + n_header_tokens) / duration_s, ``frames_per_s`` =
        n_payload_frames / duration_s, ``n_streams`` and ``n_frames`` (the shape of
        `enc.codes`), ``n_payload_frames``. For codecs without codes: rates NaN, counts 0,
        and ``tokens_per_s_error`` / ``frames_per_s_error`` say why.
    """
    duration_s = _check_duration(duration_s)
    if enc.codes is None:
        reason = "not a token codec (Encoded.codes is None)"
        return {"tokens_per_s": float("nan"), "frames_per_s": float("nan"), "n_streams": 0, "n_frames": 0,
                "n_payload_frames": 0, "tokens_per_s_error": reason, "frames_per_s_error": reason}
    n_streams, n_frames = (int(s) for s in enc.codes.shape)
    n_payload = payload_frames(enc)
    n_header = len(enc.header_codes)
    return {"tokens_per_s": (n_streams * n_payload + n_header) / duration_s, "frames_per_s": n_payload / duration_s,
            "n_streams": n_streams, "n_frames": n_frames, "n_payload_frames": n_payload}


def stream_rates(enc: Encoded, duration_s: float,
                 stream_groups: Sequence[int] | None = None) -> list[dict[str, float | int]]:
    """Per-stream token rates, with folded multi-rate rows grouped back into their levels.

    Args:
        enc: what `encode` returned (token codec).
        duration_s: duration of the original audio (s).
        stream_groups: for each row of `enc.codes`, the logical stream (level) it belongs to,
            as returned by `fold_multirate`; None = every row is its own stream.

    Returns:
        One dict per logical stream, in group order: ``stream``, ``rows``, ``vocab_size``,
        ``tokens_per_s`` (= frames/s of that stream), ``bitrate`` (bit/s).
    """
    duration_s = _check_duration(duration_s)
    groups = check_groups(stream_groups, enc.vocab_sizes)
    per_row_fps = payload_frames(enc) / duration_s
    out = []
    for g in sorted(set(groups)):
        rows = [i for i, gi in enumerate(groups) if gi == g]
        v = enc.vocab_sizes[rows[0]]
        tps = len(rows) * per_row_fps
        out.append({"stream": g, "rows": len(rows), "vocab_size": v, "tokens_per_s": tps,
                    "bitrate": tps * math.log2(v)})
    return out


# --------------------------------------------------------------------------------------------
# Multi-rate codecs (SNAC): fold finer levels into rows at the coarsest frame rate
# --------------------------------------------------------------------------------------------


def fold_multirate(levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Represent streams at different frame rates as one [rows, T_c] block at the coarsest rate.

    Level i has ``T_i = r_i * T_c`` tokens where T_c is the length of the coarsest level. It is
    folded into r_i consecutive rows: row j of level i holds ``level_i[j::r_i]`` (phase j of each
    coarse frame), so coarse frame t holds the r_i tokens ``level_i[r_i*t : r_i*(t+1)]``. The
    frame rate of the block is the coarsest level's rate and every token is counted once:
    SNAC 24 kHz (levels at 11.72, 23.44, 46.88 Hz, V = 4096) becomes 1 + 2 + 4 = 7 rows at
    11.71875 Hz, i.e. 82.03 tokens/s and 7 * 12 * 11.71875 = 984.375 bit/s.

    Args:
        levels: one 1-D integer tensor [T_i] per level, coarsest first or in any order; every
            T_i must be a positive multiple of min(T_i).

    Returns:
        (codes [sum r_i, T_c] int64, stream_groups) where stream_groups[row] is the index of
        the level the row came from.
    """
    if not levels:
        raise ValueError("fold_multirate needs at least one level")
    lengths = [int(x.shape[-1]) for x in levels]
    if any(x.dim() != 1 for x in levels):
        raise ValueError(f"each level must be 1-D [T_i], got shapes {[tuple(x.shape) for x in levels]}")
    t_c = min(lengths)
    if t_c == 0 or any(n % t_c for n in lengths):
        raise ValueError(f"level lengths {lengths} must be positive multiples of the coarsest length {t_c}")
    rows, groups = [], []
    for i, x in enumerate(levels):
        r = lengths[i] // t_c
        rows.append(x.reshape(t_c, r).T)  # [r, T_c]: row j = x[j::r]
        groups.extend([i] * r)
    return torch.cat(rows, dim=0).to(torch.int64), tuple(groups)


def unfold_multirate(codes: torch.Tensor, stream_groups: Sequence[int]) -> list[torch.Tensor]:
    """Inverse of `fold_multirate`: codes [rows, T_c] -> one 1-D tensor [r_i * T_c] per level."""
    if codes.dim() != 2 or codes.shape[0] != len(stream_groups):
        raise ValueError(f"codes of shape {tuple(codes.shape)} do not match {len(stream_groups)} stream_groups")
    levels = []
    for g in sorted(set(stream_groups)):
        rows = [i for i, gi in enumerate(stream_groups) if gi == g]
        levels.append(codes[rows].T.reshape(-1))  # interleave phases back: [T_c, r] -> [T_c * r]
    return levels


def check_groups(stream_groups: Sequence[int] | None, vocab_sizes: Sequence[int]) -> tuple[int, ...]:
    """The level of each row (``stream_groups``; one level per row when empty), checked against
    ``vocab_sizes``: one entry per row, and the rows of one level share a vocabulary size."""
    if stream_groups is None or len(stream_groups) == 0:
        return tuple(range(len(vocab_sizes)))
    groups = tuple(int(g) for g in stream_groups)
    if len(groups) != len(vocab_sizes):
        raise ValueError(f"stream_groups has {len(groups)} entries but there are {len(vocab_sizes)} streams")
    for g in set(groups):
        vs = {vocab_sizes[i] for i, gi in enumerate(groups) if gi == g}
        if len(vs) != 1:
            raise ValueError(f"rows of stream group {g} have different vocabulary sizes {sorted(vs)}")
    return groups
