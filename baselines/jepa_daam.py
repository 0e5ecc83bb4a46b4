"""The project's own tokenizer, JEPA-DAAM, as a benchmark codec.

Specs:
    jepa-daam@small-50hz  the checkpoint shipped in `jepa/checkpoints/jepa_daam_small-50hz.safetensors`
                          (the small-50hz preset trained on this repository's CPU; see
                          jepa/checkpoints/MODEL_CARD.md): 50 frames/s, one token of 8,000 per
                          frame plus a 6-bit loudness header per utterance, ~650 bit/s
    jepa-daam@small       `jepa/checkpoints/jepa_daam_small.safetensors`: the paper's 2.5 Hz frame
                          rate at SMALL size (128 FSQ dims x 4 levels, 640 bit/s + the header),
                          trained on this repository's CPU (MODEL_CARD.md)
    jepa-daam@small-12.5hz  `jepa/checkpoints/jepa_daam_small-12.5hz.safetensors`: 12.5 frames/s, 22 FSQ
                          dims x 5 levels per frame (~640 bit/s + the header), trained on this CPU
    jepa-daam@paper       known preset, no checkpoint: listed as skipped with the reason (NOT_SHIPPED)
    jepa-daam:PATH        any `JEPACodec.save` checkpoint (e.g. from `python -m jepa.train export`)

The codec runs at 24 kHz. Encoding pads the input with zeros to whole hops plus one extra hop
(the JEPACodec padding rule) and decoding trims the output to the input length.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from audiocore.codec import CodecUnavailable, Encoded
from audiocore.device import resolve_device
from audiocore.hashing import file_sha256

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "jepa" / "checkpoints"
SHIPPED: dict[str, Path] = {"small-50hz": CHECKPOINT_DIR / "jepa_daam_small-50hz.safetensors",
                            "small-12.5hz": CHECKPOINT_DIR / "jepa_daam_small-12.5hz.safetensors",
                            "small": CHECKPOINT_DIR / "jepa_daam_small.safetensors"}
"""Setting -> shipped checkpoint (each one is tested to depend on its input: tests/test_shipped_checkpoints.py)."""
NOT_SHIPPED: dict[str, str] = {
    "paper": "the PAPER-size model (the published parameter counts) is not trained in this release: it needs a "
             "GPU; train it with `python -m jepa.train stage1 --config paper ...`, then `stage2` and `export` "
             "(docs/training.md), and use jepa-daam:PATH",
}
"""Settings the registry knows but has no trustworthy checkpoint for, with the reason (`--codecs all` lists them as skipped)."""


class JEPADAAMCodec:
    """`audiocore.codec.Codec` around a loaded `jepa.codec.JEPACodec`.

    Args:
        name: canonical spec ("jepa-daam@small-50hz" or "jepa-daam:PATH").
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
        """bits per frame x frame rate, from the config (640 bit/s for the paper's FSQ 4^128 at 2.5 Hz)."""
        return float(self.codec.nominal_bitrate())

    def encode(self, wav: torch.Tensor) -> Encoded:
        """wav [T] float32 at 24 kHz -> codes [tokens_per_frame, ceil(T / hop)] int64 (+ header)."""
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
    """Every canonical spec this backend offers (for `--codecs all`; NOT_SHIPPED ones are skipped with their reason)."""
    return [f"jepa-daam@{setting}" for setting in (*SHIPPED, *NOT_SHIPPED)]


def _checkpoint_for(spec: str) -> Path:
    spec = spec.strip()
    if spec.startswith("jepa-daam:"):
        path = spec[len("jepa-daam:"):]
        if not path:
            raise ValueError("jepa-daam:PATH needs a checkpoint path after the colon")
        return Path(path).expanduser()
    if spec.startswith("jepa-daam@"):
        setting = spec[len("jepa-daam@"):]
        if setting in NOT_SHIPPED:
            raise CodecUnavailable(f"{spec}: {NOT_SHIPPED[setting]}")
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
