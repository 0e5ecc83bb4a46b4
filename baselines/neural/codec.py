"""The encode / decode plumbing every neural codec shares (:class:`NeuralCodec`).

Token layout: ``Encoded.codes`` is [n_streams, n_frames] int64 at the codec's frame rate (SNAC's
finer levels are folded into rows at the coarsest rate, ``metrics.tokens.fold_multirate``, with
``Encoded.stream_groups``). Frames that encode only padding added by the codec (SNAC) are counted
in ``Encoded.padded_frames``; a partly filled last frame is payload. ``decode`` trims or zero-pads
to exactly ``num_samples`` (DAC 16/24 kHz decoders return 8 samples less than 320 x n_frames).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from audiocore.codec import Encoded
from audiocore.device import resolve_device
from baselines.neural.weights import hash_files, hash_state_dict

def _check_wav(wav: torch.Tensor, name: str) -> torch.Tensor:
    """Validate an encoder input and return it as float32 [T] on the CPU (not modified later)."""
    if not isinstance(wav, torch.Tensor):
        raise ValueError(f"{name}.encode expects a torch.Tensor of shape [T], got {type(wav).__name__}")
    if wav.dim() != 1:
        raise ValueError(f"{name}.encode expects a mono waveform of shape [T], got shape {tuple(wav.shape)}")
    x = wav.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}.encode: input waveform contains NaN or Inf")
    return x


class NeuralCodec:
    """Shared encode/decode plumbing for one neural codec at one setting.

    A subclass supplies `_encode_tokens` (waveforms [B, 1, L] -> codes [B, S, T]) and
    `_decode_tokens` (codes [B, S, T] -> waveforms [B, L']); this class validates inputs, batches
    utterances of different lengths (right zero-padding), slices each utterance's frames, counts
    codec padding frames, moves tensors between devices and trims decoded audio to length.

    Args:
        name: canonical spec ("encodec@6k").
        model: the torch module (moved to `device`, put in eval mode).
        sample_rate: native rate in Hz.
        frame_hop: input samples per token frame (for folded multi-rate codecs: per coarsest frame).
        vocab_sizes: one vocabulary size per row of the codes.
        nominal: published bitrate in bit/s; None = the exact stream rate of the tokens.
        device: torch device for the model and the computation.
        weights_files: files the weights came from (hashed for `weights_hash`); None = hash
            the in-memory state dict.
        stream_groups: level of each row for folded multi-rate codecs (empty otherwise).
        pad_multiple: the model pads its input to a multiple of this many samples (1 = no
            padding beyond the last partial frame); frames beyond ceil(L / frame_hop) are
            reported as `Encoded.padded_frames`.
    """

    def __init__(self, name: str, model: torch.nn.Module, *, sample_rate: int, frame_hop: int,
                 vocab_sizes: Sequence[int], nominal: float | None, device: str | torch.device = "cpu",
                 weights_files: Sequence[Path] | None = None, stream_groups: Sequence[int] = (),
                 pad_multiple: int = 1) -> None:
        self.name = name
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        self.sample_rate = int(sample_rate)
        self.frame_hop = int(frame_hop)
        self.frame_rate = self.sample_rate / self.frame_hop
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.stream_groups = tuple(int(g) for g in stream_groups)
        self.pad_multiple = int(pad_multiple)
        self._nominal = nominal
        self._weights_files = None if weights_files is None else tuple(weights_files)
        self._weights_hash: str | None = None

    # ---- hooks -------------------------------------------------------------------------------

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, 1, L] on `self.device` -> int64 codes [B, S, T]."""
        raise NotImplementedError

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 codes [B, S, T] on `self.device` -> waveforms [B, L'] (L' >= roughly T * frame_hop)."""
        raise NotImplementedError

    def _input_length(self, num_samples: int) -> int:
        """Samples the model is fed for an input of `num_samples` (default: as is, the library
        handles a partial last frame itself)."""
        return num_samples

    # ---- frame arithmetic ----------------------------------------------------------------------

    def payload_frames(self, num_samples: int) -> int:
        """Frames that carry input audio: ceil(num_samples / frame_hop)."""
        return -(-num_samples // self.frame_hop)

    def total_frames(self, num_samples: int) -> int:
        """Frames the model emits for `num_samples`, including frames of codec padding."""
        padded = -(-num_samples // self.pad_multiple) * self.pad_multiple
        return -(-padded // self.frame_hop)

    @property
    def hop_length(self) -> int:
        """Input samples per frame of the model's finest token stream (= `frame_hop` here)."""
        return self.frame_hop

    # ---- public API --------------------------------------------------------------------------

    @property
    def weights_hash(self) -> str:
        """16 hex digits identifying the weights (sha256 of the weight files, or of the state dict)."""
        if self._weights_hash is None:
            self._weights_hash = (hash_state_dict(self.model) if self._weights_files is None
                                  else hash_files(self._weights_files))
        return self._weights_hash

    def nominal_bitrate(self) -> float:
        """The published bitrate (bit/s); for non-canonical settings the exact stream rate."""
        if self._nominal is not None:
            return float(self._nominal)
        return self.frame_rate * sum(math.log2(v) for v in self.vocab_sizes)

    def encode(self, wav: torch.Tensor) -> Encoded:
        """Encode a mono waveform [T] (float32 at `sample_rate`) into codes [S, n_frames] int64."""
        return self.encode_batch([wav])[0]

    def encode_batch(self, wavs: Sequence[torch.Tensor]) -> list[Encoded]:
        """Encode several mono waveforms [T_i] in one forward pass (right zero-padded to the longest).

        A single waveform is fed exactly as the library expects it. In a batch, a shorter
        utterance is zero-padded: with non-causal encoders (DAC, SNAC, SpeechTokenizer,
        WavTokenizer) its last frames can then differ slightly from encoding it alone; the causal
        ones (EnCodec 24 kHz, Mimi) give identical codes.
        """
        xs = [_check_wav(w, self.name) for w in wavs]
        lengths = [int(x.shape[0]) for x in xs]
        out: list[Encoded | None] = [None] * len(xs)
        active = [i for i, n in enumerate(lengths) if n > 0]
        if active:
            width = max(self._input_length(lengths[i]) for i in active)
            batch = torch.zeros(len(active), 1, width)
            for row, i in enumerate(active):
                batch[row, 0, : lengths[i]] = xs[i]
            with torch.inference_mode():
                codes = self._encode_tokens(batch.to(self.device)).to("cpu", torch.int64)
            expected = max(self.total_frames(lengths[i]) for i in active)
            if codes.shape[-1] != expected:
                raise RuntimeError(f"{self.name}: model returned {codes.shape[-1]} frames for {width} samples, "
                                   f"expected {expected}; the frame arithmetic of this adapter is wrong")
            for row, i in enumerate(active):
                out[i] = self._wrap(codes[row], lengths[i])
        for i, n in enumerate(lengths):
            if n == 0:
                out[i] = Encoded(torch.zeros(len(self.vocab_sizes), 0, dtype=torch.int64), self.vocab_sizes,
                                 self.frame_rate, None, 0, stream_groups=self.stream_groups)
        return [e for e in out if e is not None]

    def _wrap(self, codes: torch.Tensor, num_samples: int) -> Encoded:
        """codes [S, T_batch] of one utterance -> its `Encoded` (own frames only)."""
        total = self.total_frames(num_samples)
        if codes.shape[1] < total or codes.shape[0] != len(self.vocab_sizes):
            raise RuntimeError(f"{self.name}: model returned codes of shape {tuple(codes.shape)} for "
                               f"{num_samples} samples; expected [{len(self.vocab_sizes)}, >= {total}]")
        codes = codes[:, :total].contiguous()
        return Encoded(codes=codes, vocab_sizes=self.vocab_sizes, frame_rate=self.frame_rate,
                       payload_bytes=None, num_samples=num_samples,
                       padded_frames=total - self.payload_frames(num_samples), stream_groups=self.stream_groups)

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Decode to a float32 waveform [enc.num_samples] at `sample_rate` (CPU)."""
        return self.decode_batch([enc])[0]

    def decode_batch(self, encs: Sequence[Encoded]) -> list[torch.Tensor]:
        """Decode several `Encoded` in one pass (codes right-padded with token 0 to the longest)."""
        for e in encs:
            self._check_encoded(e)
        out = [torch.zeros(e.num_samples) for e in encs]
        active = [i for i, e in enumerate(encs) if e.codes.shape[1] > 0]
        if active:
            width = max(encs[i].codes.shape[1] for i in active)
            codes = torch.zeros(len(active), len(self.vocab_sizes), width, dtype=torch.int64)
            for row, i in enumerate(active):
                codes[row, :, : encs[i].codes.shape[1]] = encs[i].codes
            with torch.inference_mode():
                wav = self._decode_tokens(codes.to(self.device)).to("cpu", torch.float32)
            for row, i in enumerate(active):
                n = min(encs[i].num_samples, wav.shape[-1])
                out[i][:n] = wav[row, :n]
        return out

    def _check_encoded(self, enc: Encoded) -> None:
        if enc.codes is None or tuple(enc.vocab_sizes) != self.vocab_sizes:
            raise ValueError(f"{self.name}.decode: Encoded has vocab_sizes {enc.vocab_sizes}, expected "
                             f"{self.vocab_sizes} (was it made by another codec?)")
        if enc.codes.numel() == 0:
            return
        lo, hi = int(enc.codes.min()), int(enc.codes.max())
        if lo < 0 or hi >= min(self.vocab_sizes):
            raise ValueError(f"{self.name}.decode: token ids span [{lo}, {hi}], outside [0, {min(self.vocab_sizes)})")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, sample_rate={self.sample_rate}, "
                f"frame_rate={self.frame_rate:g}, streams={len(self.vocab_sizes)}, device={self.device})")
