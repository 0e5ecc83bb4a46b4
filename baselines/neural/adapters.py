"""One adapter per neural codec family: the library's API turned into ``encode`` / ``decode`` tokens."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from baselines.neural.codec import NeuralCodec
from baselines.neural.settings import FAMILIES, NeuralSetting
from metrics.tokens import fold_multirate, unfold_multirate

def _check_n_q(name: str, n_q: int, available: int) -> int:
    """`n_q` if the model has that many codebooks, else ValueError naming the valid range."""
    if not 1 <= n_q <= available:
        raise ValueError(f"{name}: {n_q} codebooks requested, the model has 1..{available}")
    return n_q


class EncodecCodec(NeuralCodec):
    """EnCodec (transformers `EncodecModel`, 24 kHz, no chunking) at one target bandwidth.

    Args:
        bandwidth: target bandwidth in kbit/s; must be in `config.target_bandwidths`.
        (others: see `NeuralCodec`.)
    """

    def __init__(self, name: str, model: torch.nn.Module, bandwidth: float, **kw: Any) -> None:
        cfg = model.config
        if bandwidth not in cfg.target_bandwidths:
            raise ValueError(f"{name}: bandwidth {bandwidth} kbit/s not in the model's {cfg.target_bandwidths}")
        if cfg.chunk_length_s is not None:
            raise ValueError(f"{name}: chunked EnCodec models (chunk_length_s={cfg.chunk_length_s}, e.g. 48 kHz) "
                             "are not supported; use the 24 kHz model")
        self.bandwidth = float(bandwidth)
        n_q = model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth)
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.hop_length,
                         vocab_sizes=[cfg.codebook_size] * n_q, **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, bandwidth=self.bandwidth).audio_codes[0]  # [1, B, S, T] -> [B, S, T]

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes[None], [None]).audio_values[:, 0]


class DacCodec(NeuralCodec):
    """Descript Audio Codec (transformers `DacModel`) using its first `n_q` codebooks.

    The input is zero-padded to a whole number of hops (as DAC's own `preprocess` does).
    """

    def __init__(self, name: str, model: torch.nn.Module, n_q: int, **kw: Any) -> None:
        cfg = model.config
        self.n_q = _check_n_q(name, n_q, cfg.n_codebooks)
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.hop_length,
                         vocab_sizes=[cfg.codebook_size] * n_q, **kw)

    def _input_length(self, num_samples: int) -> int:
        """Whole hops: DAC's reference `preprocess` right-pads with zeros to a multiple of the hop."""
        return -(-num_samples // self.frame_hop) * self.frame_hop

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, n_quantizers=self.n_q).audio_codes[:, : self.n_q]

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(audio_codes=codes).audio_values


class MimiCodec(NeuralCodec):
    """Kyutai Mimi (transformers `MimiModel`) with its first `n_q` codebooks (first = semantic)."""

    def __init__(self, name: str, model: torch.nn.Module, n_q: int, **kw: Any) -> None:
        cfg = model.config
        self.n_q = _check_n_q(name, n_q, cfg.num_quantizers)
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.frame_size,
                         vocab_sizes=[cfg.codebook_size] * n_q, **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, num_quantizers=self.n_q).audio_codes

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes).audio_values[:, 0]


class WavTokenizerCodec(NeuralCodec):
    """WavTokenizer (transformers `WavTokenizerModel`): one codebook, Vocos-style decoder."""

    def __init__(self, name: str, model: torch.nn.Module, **kw: Any) -> None:
        cfg = model.config
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.hop_length,
                         vocab_sizes=[cfg.codebook_size], **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x).audio_codes

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes).audio_values[:, 0]


class SnacCodec(NeuralCodec):
    """SNAC (the `snac` package): one RVQ level per temporal resolution, folded to the coarsest.

    Level i runs at sample_rate / (hop * vq_strides[i]); the codes are `fold_multirate`-ed into
    sum_i(vq_strides[0] / vq_strides[i]) rows at the coarsest rate (1 + 2 + 4 = 7 rows at
    11.72 Hz for snac_24khz). SNAC pads its input to a multiple of hop * lcm(vq_strides[0],
    attn_window_size); whole coarse frames of that padding are `Encoded.padded_frames`.
    """

    def __init__(self, name: str, model: torch.nn.Module, **kw: Any) -> None:
        strides = [int(s) for s in model.vq_strides]
        hop = int(model.hop_length)
        ratios = [strides[0] // s for s in strides]
        groups = [g for g, r in enumerate(ratios) for _ in range(r)]
        pad = hop * math.lcm(strides[0], int(model.attn_window_size or 1))
        self._level_hop = hop
        super().__init__(name, model, sample_rate=model.sampling_rate, frame_hop=hop * strides[0],
                         vocab_sizes=[model.codebook_size] * len(groups), stream_groups=groups,
                         pad_multiple=pad, **kw)

    @property
    def hop_length(self) -> int:
        """Input samples per frame of the finest level (512 for snac_24khz)."""
        return self._level_hop

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.model.encode(x)  # list of [B, T_i]
        return torch.stack([fold_multirate([lv[b] for lv in levels])[0] for b in range(x.shape[0])])

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        per_item = [unfold_multirate(c, self.stream_groups) for c in codes]  # B x levels x [T_i]
        levels = [torch.stack([item[i] for item in per_item]) for i in range(len(per_item[0]))]
        return self.model.decode(levels)[:, 0]


class SpeechTokenizerCodec(NeuralCodec):
    """SpeechTokenizer (RVQ with a HuBERT-distilled first layer) using its first `n_q` layers."""

    def __init__(self, name: str, model: torch.nn.Module, n_q: int, **kw: Any) -> None:
        self.n_q = _check_n_q(name, n_q, model.n_q)
        super().__init__(name, model, sample_rate=model.sample_rate, frame_hop=int(model.downsample_rate),
                         vocab_sizes=[int(model.quantizer.bins)] * n_q, **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, n_q=self.n_q).permute(1, 0, 2)  # [S, B, T] -> [B, S, T]

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes.permute(1, 0, 2))[:, 0]


def make_codec(setting: NeuralSetting, model: torch.nn.Module, device: str = "cpu",
               weights_files: Sequence[Path] | None = None) -> NeuralCodec:
    """Wrap an already constructed `model` as the codec of `setting` (no architecture checks)."""
    kw: dict[str, Any] = {"nominal": setting.nominal, "device": device, "weights_files": weights_files}
    if setting.family == "encodec":
        return EncodecCodec(setting.spec, model, setting.option, **kw)
    if setting.family == "dac":
        return DacCodec(setting.spec, model, setting.n_q, **kw)
    if setting.family == "mimi":
        return MimiCodec(setting.spec, model, setting.n_q, **kw)
    if setting.family == "wavtokenizer":
        return WavTokenizerCodec(setting.spec, model, **kw)
    if setting.family == "snac":
        return SnacCodec(setting.spec, model, **kw)
    if setting.family == "speechtokenizer":
        return SpeechTokenizerCodec(setting.spec, model, setting.n_q, **kw)
    raise ValueError(f"unknown neural codec family '{setting.family}'; families: {', '.join(FAMILIES)}")
