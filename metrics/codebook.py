"""Codebook health over a corpus: usage, entropy, entropy / log2 V and perplexity of token ids.

`CodebookStats` stores one int64 histogram per stream (rows of `Encoded.codes`, or logical streams
of a folded multi-rate codec via ``stream_groups``) and can be saved, loaded and merged, so a
corpus is counted once however it is split across runs or processes.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from audiocore.codec import Encoded
from metrics.tokens import check_groups, check_vocab_sizes, payload_frames

_STATS_FORMAT = "codebook_stats/v1"


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
        sizes = check_vocab_sizes(vocab_sizes)
        groups = check_groups(stream_groups, sizes)
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
