"""Token economics: exact bitrate, token and frame rates, and codebook health.

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

Codebook health (usage, entropy, perplexity) is accumulated over a whole corpus by
`CodebookStats`, which stores one int64 histogram per stream and can be saved, loaded and merged.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from audiocore.codec import Encoded

#: Relative difference between measured and nominal bitrate above which a row is flagged.
BITRATE_TOLERANCE = 0.05

_STATS_FORMAT = "codebook_stats/v1"


# --------------------------------------------------------------------------------------------
# Bit and frame arithmetic
# --------------------------------------------------------------------------------------------


def _check_vocab_sizes(vocab_sizes: Sequence[int]) -> tuple[int, ...]:
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
    return float(sum(math.log2(v) for v in _check_vocab_sizes(vocab_sizes)))


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
    groups = _check_groups(stream_groups, enc.vocab_sizes)
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


def _check_groups(stream_groups: Sequence[int] | None, vocab_sizes: Sequence[int]) -> tuple[int, ...]:
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


# --------------------------------------------------------------------------------------------
# Codebook health over a corpus
# --------------------------------------------------------------------------------------------


def histogram_stats(counts: np.ndarray) -> dict[str, float | int]:
    """Usage and entropy of one histogram of token counts.

    Args:
        counts: int64 array [V] of occurrence counts, V = vocabulary size.

    Returns:
        ``vocab_size`` V, ``n_tokens`` N, ``used`` (entries with count > 0), ``usage`` = used / V,
        ``entropy_bits`` H = -sum p log2 p with p = count / N, ``normalized_entropy`` = H / log2 V
        (NaN for V = 1), ``perplexity`` = 2^H. Entropy-derived values are NaN when N = 0.
    """
    v = int(counts.shape[0])
    n = int(counts.sum())
    used = int(np.count_nonzero(counts))
    if n == 0:
        nan = float("nan")
        return {"vocab_size": v, "n_tokens": 0, "used": 0, "usage": nan, "entropy_bits": nan,
                "normalized_entropy": nan, "perplexity": nan}
    p = counts[counts > 0] / n
    h = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    return {"vocab_size": v, "n_tokens": n, "used": used, "usage": used / v, "entropy_bits": h,
            "normalized_entropy": h / math.log2(v) if v > 1 else float("nan"), "perplexity": 2.0 ** h}


class CodebookStats:
    """Corpus-level codebook usage accumulator: one int64 histogram per stream.

    Memory is ``8 * sum_s V_s`` bytes (2.4 MB for JEPA-DAAM's 18 x 16384 + 16). `update` on a
    [19, 40] block costs microseconds (docs/token-economics.md).

    Definitions used by `summary`:
      * per stream: the histogram of that stream's token ids (rows with the same
        ``stream_groups`` id, e.g. the folded rows of one SNAC level, share one histogram);
      * ``pooled``: for each distinct vocabulary size V, the histogram summed over all streams
        of that size (token id k counted as the same symbol in every such stream) -- meaningful
        when those streams share an alphabet (JEPA-DAAM's 18 groups of 4^7 FSQ codes);
      * ``total``: the frame as a whole, with stream-independent bookkeeping:
        ``entropy_bits_per_frame`` = sum_s H_s (an upper bound on the joint entropy, i.e. what an
        ideal per-stream entropy coder would spend), ``capacity_bits_per_frame`` = sum_s log2 V_s,
        ``normalized_entropy`` = their ratio, ``usage`` = sum_s used_s / sum_s V_s,
        ``perplexity_mean`` = mean_s 2^H_s.

    Args:
        vocab_sizes: one vocabulary size per row of the code blocks; None = taken from the
            first `update`.
        stream_groups: optional logical stream of each row (see `fold_multirate`).
    """

    def __init__(self, vocab_sizes: Sequence[int] | None = None,
                 stream_groups: Sequence[int] | None = None) -> None:
        self.vocab_sizes: tuple[int, ...] | None = None
        self.stream_groups: tuple[int, ...] | None = None
        self._counts: np.ndarray = np.zeros(0, dtype=np.int64)
        self._row_offsets: np.ndarray = np.zeros(0, dtype=np.int64)
        self._row_vocab: np.ndarray = np.zeros(0, dtype=np.int64)
        self._group_slices: list[tuple[int, int, int]] = []  # (group id, start, stop) into _counts
        self._pending_groups = None if stream_groups is None else tuple(int(g) for g in stream_groups)
        if vocab_sizes is not None:
            self._init(vocab_sizes, self._pending_groups)

    # ---- layout ----------------------------------------------------------------------------

    def _init(self, vocab_sizes: Sequence[int], stream_groups: Sequence[int] | None) -> None:
        sizes = _check_vocab_sizes(vocab_sizes)
        groups = _check_groups(stream_groups, sizes)
        order = sorted(set(groups))
        start, starts, slices = 0, {}, []
        for g in order:
            v = sizes[groups.index(g)]
            starts[g] = start
            slices.append((g, start, start + v))
            start += v
        self.vocab_sizes, self.stream_groups = sizes, groups
        self._counts = np.zeros(start, dtype=np.int64)
        self._row_offsets = np.array([starts[g] for g in groups], dtype=np.int64)
        self._group_slices = slices
        self._row_vocab = np.array(sizes, dtype=np.int64)

    @property
    def n_tokens(self) -> int:
        """Total number of tokens counted so far (all streams)."""
        return int(self._counts.sum())

    def counts(self, stream: int) -> np.ndarray:
        """Read-only view of the int64 histogram [V] of logical stream `stream`."""
        for g, a, b in self._group_slices:
            if g == stream:
                view = self._counts[a:b]
                view.flags.writeable = False
                return view
        raise ValueError(f"unknown stream {stream}; streams are {[g for g, _, _ in self._group_slices]}")

    # ---- accumulation ----------------------------------------------------------------------

    def update(self, codes: torch.Tensor | np.ndarray, vocab_sizes: Sequence[int]) -> None:
        """Add one block of codes.

        Args:
            codes: integer token ids [S, T] (rows = streams); exclude padding frames first
                (or use `update_encoded`).
            vocab_sizes: S vocabulary sizes; must match the sizes of earlier updates.

        Raises:
            ValueError: on a shape / vocabulary mismatch, a non-integer dtype, or a token id
                outside [0, V_s) of its stream.
        """
        if self.vocab_sizes is None:
            self._init(vocab_sizes, self._pending_groups)
        elif tuple(int(v) for v in vocab_sizes) != self.vocab_sizes:
            raise ValueError(f"vocab_sizes {tuple(vocab_sizes)} differ from the accumulator's {self.vocab_sizes}")
        arr = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        if arr.ndim != 2 or arr.shape[0] != len(self.vocab_sizes):
            raise ValueError(f"codes must be [{len(self.vocab_sizes)}, T], got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"codes must be integer token ids, got dtype {arr.dtype}")
        if arr.shape[1] == 0:
            return
        arr = arr.astype(np.int64, copy=False)
        lo, hi = arr.min(axis=1), arr.max(axis=1)
        bad = np.flatnonzero((lo < 0) | (hi >= self._row_vocab))
        if bad.size:
            s = int(bad[0])
            raise ValueError(f"stream {s}: token ids span [{lo[s]}, {hi[s]}] but the vocabulary is "
                             f"[0, {self.vocab_sizes[s]})")
        flat = (arr + self._row_offsets[:, None]).ravel()
        if 4 * flat.size < self._counts.size:
            np.add.at(self._counts, flat, 1)  # small blocks: touch only the hit entries
        else:
            self._counts += np.bincount(flat, minlength=self._counts.size)

    def update_encoded(self, enc: Encoded, stream_groups: Sequence[int] | None = None) -> None:
        """Add the payload frames of one `Encoded` (padding frames excluded).

        Args:
            enc: what a token codec's `encode` returned.
            stream_groups: only used when this is the first update and the accumulator was made
                without them (see `fold_multirate`).
        """
        if enc.codes is None:
            raise ValueError("Encoded has no codes: codebook statistics need a token codec")
        if self.vocab_sizes is None and stream_groups is not None:
            self._pending_groups = tuple(int(g) for g in stream_groups)
        self.update(enc.codes[:, : payload_frames(enc)], enc.vocab_sizes)

    def merge(self, other: CodebookStats) -> CodebookStats:
        """A new accumulator holding the counts of both (same vocabularies and groups)."""
        if other.vocab_sizes is None:
            return CodebookStats.from_dict(self.to_dict())
        if self.vocab_sizes is None:
            return CodebookStats.from_dict(other.to_dict())
        if (self.vocab_sizes, self.stream_groups) != (other.vocab_sizes, other.stream_groups):
            raise ValueError(f"cannot merge CodebookStats with vocab_sizes/groups {self.vocab_sizes}/"
                             f"{self.stream_groups} and {other.vocab_sizes}/{other.stream_groups}")
        out = CodebookStats(self.vocab_sizes, self.stream_groups)
        out._counts = self._counts + other._counts
        return out

    # ---- results ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Codebook health: ``streams`` (one dict per logical stream, see `histogram_stats`, plus
        ``stream``), ``pooled`` (one dict per distinct vocabulary size, plus ``streams`` = the
        stream ids pooled) and ``total`` (see the class docstring)."""
        if self.vocab_sizes is None:
            return {"streams": [], "pooled": [], "total": self._total([])}
        streams = []
        for g, a, b in self._group_slices:
            streams.append({"stream": g, **histogram_stats(self._counts[a:b])})
        pooled = []
        for v in sorted({s["vocab_size"] for s in streams}):
            members = [(g, a, b) for g, a, b in self._group_slices if b - a == v]
            hist = np.sum([self._counts[a:b] for _, a, b in members], axis=0)
            pooled.append({"streams": [g for g, _, _ in members], **histogram_stats(hist)})
        return {"streams": streams, "pooled": pooled, "total": self._total(streams)}

    def _total(self, streams: list[dict[str, Any]]) -> dict[str, float | int]:
        n = sum(s["n_tokens"] for s in streams)
        if not streams or n == 0:
            nan = float("nan")
            return {"n_tokens": n, "usage": nan, "entropy_bits_per_frame": nan,
                    "capacity_bits_per_frame": nan, "normalized_entropy": nan, "perplexity_mean": nan}
        # A logical stream made of r folded rows carries r tokens per frame.
        rows = {g: self.stream_groups.count(g) for g in set(self.stream_groups)}
        h = sum(rows[s["stream"]] * s["entropy_bits"] for s in streams)
        cap = sum(rows[s["stream"]] * math.log2(s["vocab_size"]) for s in streams)
        return {"n_tokens": n,
                "usage": sum(s["used"] for s in streams) / sum(s["vocab_size"] for s in streams),
                "entropy_bits_per_frame": h, "capacity_bits_per_frame": cap,
                "normalized_entropy": h / cap if cap > 0 else float("nan"),
                "perplexity_mean": float(np.mean([s["perplexity"] for s in streams]))}

    def table_columns(self) -> dict[str, float | str]:
        """Flat per-codec columns for summary tables: ``codebook_usage``,
        ``codebook_entropy_bits_per_frame``, ``codebook_capacity_bits_per_frame``,
        ``codebook_normalized_entropy``, ``codebook_perplexity_mean`` (from ``total``), with
        ``codebook_error`` when no token has been counted."""
        t = self.summary()["total"]
        cols: dict[str, float | str] = {
            "codebook_usage": t["usage"], "codebook_entropy_bits_per_frame": t["entropy_bits_per_frame"],
            "codebook_capacity_bits_per_frame": t["capacity_bits_per_frame"],
            "codebook_normalized_entropy": t["normalized_entropy"],
            "codebook_perplexity_mean": t["perplexity_mean"]}
        if t["n_tokens"] == 0:
            cols["codebook_error"] = "no tokens counted"
        return cols

    # ---- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; histograms stored sparsely (nonzero ids and their counts)."""
        hists = []
        for _, a, b in self._group_slices:
            h = self._counts[a:b]
            nz = np.flatnonzero(h)
            hists.append({"ids": nz.tolist(), "counts": h[nz].tolist()})
        return {"format": _STATS_FORMAT,
                "vocab_sizes": None if self.vocab_sizes is None else list(self.vocab_sizes),
                "stream_groups": None if self.stream_groups is None else list(self.stream_groups),
                "histograms": hists}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodebookStats:
        """Rebuild an accumulator saved with `to_dict`."""
        if data.get("format") != _STATS_FORMAT:
            raise ValueError(f"not a CodebookStats dict: format {data.get('format')!r}, expected {_STATS_FORMAT!r}")
        out = cls(data["vocab_sizes"], data["stream_groups"]) if data["vocab_sizes"] is not None else cls()
        if len(data["histograms"]) != len(out._group_slices):
            raise ValueError(f"{len(data['histograms'])} histograms for {len(out._group_slices)} streams")
        for (g, a, b), h in zip(out._group_slices, data["histograms"]):
            ids = np.asarray(h["ids"], dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= b - a):
                raise ValueError(f"stream {g}: histogram ids outside [0, {b - a})")
            out._counts[a + ids] = np.asarray(h["counts"], dtype=np.int64)
        return out


def merge_all(stats: Iterable[CodebookStats]) -> CodebookStats:
    """Merge any number of accumulators (e.g. one per worker or per resumed run)."""
    out = CodebookStats()
    for s in stats:
        out = out.merge(s)
    return out
