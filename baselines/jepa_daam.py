"""The project's own tokenizer, JEPA-DAAM, as a benchmark codec.

Specs:
    jepa-daam@small   the checkpoint shipped in `jepa/checkpoints/jepa_daam_small.safetensors`
                      (SMALL configuration trained on this repository's CPU; see its MODEL_CARD.md)
    jepa-daam:PATH    any `JEPACodec.save` checkpoint (e.g. from `python -m jepa.train export`)

The codec runs at 24 kHz; one frame every 0.4 s carries 19 tokens (18 of vocabulary 16384 and
one of 16), 256 bits, so the nominal bitrate is 640 bit/s (paper-spec §2). Encoding pads the
input with zeros to whole hops plus one extra hop (the JEPACodec padding rule) and decoding trims
the output to the input length.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from audiocore.codec import CodecUnavailable, Encoded
from audiocore.device import resolve_device
from audiocore.hashing import file_sha256

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "jepa" / "checkpoints"
SHIPPED: dict[str, Path] = {"small": CHECKPOINT_DIR / "jepa_daam_small.safetensors"}
"""Setting -> shipped checkpoint."""


class JEPADAAMCodec:
    """`audiocore.codec.Codec` around a loaded `jepa.codec.JEPACodec`.

    Args:
        name: canonical spec ("jepa-daam@small" or "jepa-daam:PATH").
        codec: the loaded JEPACodec (eval mode, on its device).
        checkpoint: the safetensors file it came from (hashed for `weights_hash`).
    """

    def __init__(self, name: str, codec: torch.nn.Module, checkpoint: Path) -> None:
        self.name = name
        self.codec = codec
        self.checkpoint = Path(checkpoint)
        self.sample_rate = int(codec.sample_rate)
        self.frame_rate = float(codec.frame_rate)
        self.vocab_sizes = tuple(codec.vocab_sizes)
        self._weights_hash: str | None = None

    @property
    def weights_hash(self) -> str:
        """First 16 hex digits of the checkpoint file's SHA-256."""
        if self._weights_hash is None:
            self._weights_hash = file_sha256(self.checkpoint)[:16]
        return self._weights_hash

    def nominal_bitrate(self) -> float:
        """bits per frame x frame rate, from the config (640 bit/s for the FSQ 4^128 / 2.5 Hz setup)."""
        return float(self.codec.nominal_bitrate())

    def encode(self, wav: torch.Tensor) -> Encoded:
        """wav [T] float32 at 24 kHz -> codes [19, ceil(T / 9600)] int64."""
        return self.codec.encode(wav)

    def encode_batch(self, wavs: Sequence[torch.Tensor]) -> list[Encoded]:
        """Several waveforms [T_i] at once (batched by padded length)."""
        return self.codec.encode_batch(list(wavs))

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Encoded -> waveform [enc.num_samples] float32 at 24 kHz."""
        return self.codec.decode(enc)

    def decode_batch(self, encs: Sequence[Encoded]) -> list[torch.Tensor]:
        return self.codec.decode_batch(list(encs))


def specs() -> list[str]:
    """Every canonical spec this backend offers (for `--codecs all`)."""
    return [f"jepa-daam@{setting}" for setting in SHIPPED]


def _checkpoint_for(spec: str) -> Path:
    spec = spec.strip()
    if spec.startswith("jepa-daam:"):
        path = spec[len("jepa-daam:"):]
        if not path:
            raise ValueError("jepa-daam:PATH needs a checkpoint path after the colon")
        return Path(path).expanduser()
    if spec.startswith("jepa-daam@"):
        setting = spec[len("jepa-daam@"):]
        if setting not in SHIPPED:
            raise ValueError(f"unknown jepa-daam setting {setting!r}; valid: "
                             f"{', '.join(specs())} or jepa-daam:PATH")
        return SHIPPED[setting]
    raise ValueError(f"not a jepa-daam spec: {spec!r}; valid: {', '.join(specs())} or jepa-daam:PATH")


def build(spec: str, device: str = "cpu") -> JEPADAAMCodec:
    """Load the codec named by `spec` on `device` ("cpu", "cuda", "auto").

    Raises:
        ValueError: unknown setting or malformed spec.
        CodecUnavailable: the checkpoint file is missing or is not a JEPACodec checkpoint.
    """
    path = _checkpoint_for(spec)
    if not path.is_file():
        hint = ("train and export one with `python -m jepa.train` (see docs/training.md)"
                if spec.strip().startswith("jepa-daam@") else "check the path")
        raise CodecUnavailable(f"{spec}: checkpoint {path} not found; {hint}")
    from jepa.codec import JEPACodec

    try:
        codec = JEPACodec.load(path, device=resolve_device(device))
    except ValueError as err:
        raise CodecUnavailable(f"{spec}: {path} is not a usable JEPA-DAAM checkpoint: {err}") from err
    name = spec.strip() if spec.strip().startswith("jepa-daam:") else f"jepa-daam@{spec.split('@', 1)[1]}"
    return JEPADAAMCodec(name, codec, path)
