"""JEPA-DAAM: the paper's speech tokenizer (24 kHz speech <-> FSQ tokens), usable on its own.

    from jepa import JEPACodec
    codec = JEPACodec.load(DEFAULT_CHECKPOINT)          # the shipped jepa-daam@small-50hz
    enc = codec.encode(wav_24k)                          # Encoded: codes [19, n_frames]
    wav = codec.decode(enc)

Depends only on the bottom layer (``audiocore``), never on the benchmark suite.
"""
from __future__ import annotations

from jepa.codec import DEFAULT_CHECKPOINT, JEPACodec
from jepa.codec.tokens import load_tokens, save_tokens
from jepa.config import PAPER, PRESETS, SMALL, JEPADAAMConfig, get_config, load_config

__all__ = [
    "DEFAULT_CHECKPOINT",
    "PAPER",
    "PRESETS",
    "SMALL",
    "JEPACodec",
    "JEPADAAMConfig",
    "get_config",
    "load_config",
    "load_tokens",
    "save_tokens",
]
