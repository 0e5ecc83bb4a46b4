"""The one interface every codec implements, and the record `encode` returns.

A codec turns a mono waveform at its native sample rate into either discrete tokens
(`Encoded.codes`) or a real bitstream (`Encoded.payload_bytes`), and back. The benchmark
runner resamples into and out of `Codec.sample_rate`; metrics never see codec internals.

This contract lives in the bottom layer (`audiocore`) so that the model (`jepa`), the metrics
(`metrics.tokens`) and the adapters (`baselines`) share it without importing one another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class Encoded:
    """What a codec's `encode` returns.

    Attributes:
        codes: token ids of shape [n_streams, n_frames], int64, or None for waveform /
            bitstream codecs.
        vocab_sizes: one vocabulary size per stream; the exact payload of one frame is
            sum(log2 V) bits. Empty for bitstream codecs.
        frame_rate: frames per second of `codes` (Hz); for bitstream codecs, the codec's
            packet rate (e.g. 50 Hz for 20 ms Opus frames), 0.0 where meaningless.
        payload_bytes: real payload size in bytes for bitstream codecs (Opus, MP3, Codec2...),
            without container overhead; None for token codecs.
        num_samples: length of the input in samples at the codec's sample rate, so that
            decode can trim padding and return exactly this many samples.
        payload: codec-private data needed to decode (e.g. the list of packets); never
            counted as payload by itself — `payload_bytes` is the number that counts.
        padded_frames: number of trailing frames in `codes` that only encode padding
            (not counted as payload when measuring bitrate).
        header_codes: tokens sent once per utterance besides the frames (JEPA-DAAM's loudness
            gain index); empty for most codecs.
        header_vocab_sizes: one vocabulary per header token; the header costs
            sum(log2 V) bits per utterance, counted in the measured bitrate and token rate.
        stream_groups: for multi-rate codecs folded to the coarsest rate (SNAC, see
            `metrics.tokens.fold_multirate`), one entry per row of `codes`: the index of the
            original level that row belongs to (SNAC 24 kHz, levels of 1, 2 and 4 rows:
            (0, 1, 1, 2, 2, 2, 2)); empty for single-rate codecs.
    """

    codes: torch.Tensor | None
    vocab_sizes: tuple[int, ...]
    frame_rate: float
    payload_bytes: int | None
    num_samples: int
    payload: Any = field(default=None, compare=False, repr=False)
    padded_frames: int = 0
    stream_groups: tuple[int, ...] = ()
    header_codes: tuple[int, ...] = ()
    header_vocab_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.codes is not None:
            if self.codes.dim() != 2:
                raise ValueError(f"Encoded.codes must be [n_streams, n_frames], got shape {tuple(self.codes.shape)}")
            if self.codes.shape[0] != len(self.vocab_sizes):
                raise ValueError(
                    f"Encoded has {self.codes.shape[0]} streams but {len(self.vocab_sizes)} vocab sizes"
                )
        if self.num_samples < 0:
            raise ValueError(f"Encoded.num_samples must be >= 0, got {self.num_samples}")
        if len(self.header_codes) != len(self.header_vocab_sizes):
            raise ValueError(f"Encoded has {len(self.header_codes)} header codes but "
                             f"{len(self.header_vocab_sizes)} header vocab sizes")
        if any(not 0 <= c < v for c, v in zip(self.header_codes, self.header_vocab_sizes)):
            raise ValueError(f"Encoded.header_codes {self.header_codes} lie outside their vocabularies "
                             f"{self.header_vocab_sizes}")


@runtime_checkable
class Codec(Protocol):
    """A speech codec at one fixed setting.

    Attributes:
        name: canonical spec string, e.g. "opus@6k", "codec2@700C", "jepa-daam@small".
        sample_rate: native sample rate in Hz; `encode` takes and `decode` returns audio at it.
    """

    name: str
    sample_rate: int

    def encode(self, wav: torch.Tensor) -> Encoded:
        """Encode a mono waveform `wav` of shape [T], float32 in [-1, 1], at `sample_rate`."""
        ...

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Decode to a waveform of shape [enc.num_samples], float32, at `sample_rate`."""
        ...

    def nominal_bitrate(self) -> float | None:
        """The bitrate the codec claims at this setting, in bit/s (None when it claims none)."""
        ...


class CodecUnavailable(RuntimeError):
    """Raised when a codec's backend (package, encoder, weights) is missing; the message says
    exactly what is missing and how to get it."""
