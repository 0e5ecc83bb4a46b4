"""JEPACodec: 24 kHz speech <-> token streams (spec §1, §5, §6, §10.8, §10.16).

The numbers below are the paper's (2.5 Hz, 19 streams); the frame-rate presets differ only in the
hop, the FSQ width behind the optional projection (``fsq_dim``) and the packing.

    encode: wav [L] -> loudness normalisation (gain index = header token; off for the paper)
            -> zero-pad to whole hops (+1 hop, see below) -> online encoder -> FSQ indices
            -> mixed-radix pack -> Encoded(codes [19, n_frames] int64, vocab 18 x 16384 + 16, 2.5 Hz)
    decode: codes -> unpack -> grid values (2*idx - 3)/4 -> HiFi-GAN decoder -> trim to L samples
            -> undo the gain

**Padding rule (deterministic, spec §10.8 / §10.16).** The encoder turns n hops (9600 n samples)
into n - 1 frames, and the decoder turns T frames into 9600 T + 384 samples. With the default
``extra_hop=True`` the input of L samples is right-padded with zeros to (ceil(L / 9600) + 1) hops,
giving ceil(L / 9600) frames whose decoded output (9600 ceil(L/9600) + 384 >= L samples) covers the
whole input; it is then trimmed to L. Every frame carries real audio, so ``padded_frames`` is 0 and
the measured bitrate is 256 bits x ceil(L/9600) / (L / 24000 s) (640 bit/s for whole hops).
``extra_hop=False`` is the reference behaviour: pad to ceil(L / 9600) hops, get one frame fewer,
and the last ~0.38-0.78 s of the output are zeros.

Tokens depend on the whole utterance (DAAM, GroupNorm and attention use clip statistics), so
each utterance is encoded on its own padded length; :meth:`JEPACodec.encode_batch` batches only
utterances with the same padded length, which leaves every utterance's tokens as if encoded alone
(up to floating-point differences between batched and single kernels).

Token files live in :mod:`jepa.codec.tokens`, the ``python -m jepa.codec encode|decode`` command
line in ``jepa/codec/__main__.py``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from audiocore.codec import Encoded
from audiocore.hashing import state_dict_sha256
from jepa.config import JEPADAAMConfig, config_from_dict, config_to_dict
from jepa.encoder import Encoder
from jepa.fsq import FSQ, pack, token_vocab_sizes, unpack
from jepa import loudness
from jepa.hifigan import Generator

CHECKPOINT_FORMAT = "jepa-daam-codec"
FORMAT_VERSION = "1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "jepa_daam_small-50hz.safetensors"


def config_hash(cfg: JEPADAAMConfig) -> str:
    """First 16 hex digits of the SHA-256 of the model section of `cfg` (canonical JSON)."""
    text = json.dumps(config_to_dict(cfg)["model"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Run in eval mode (no dropout) and restore the previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class JEPACodec(nn.Module):
    """Encoder + FSQ + decoder of the JEPA-DAAM tokenizer, with file-level encode/decode.

    Args:
        config: full experiment config; only ``config.model`` shapes the network.
        extra_hop: pad one extra hop so the decoded output covers the whole input (default;
            see the module docstring). False reproduces the reference padding.

    Attributes:
        encoder: online :class:`~jepa.encoder.Encoder`; fsq: :class:`~jepa.fsq.FSQ`;
        decoder: :class:`~jepa.hifigan.Generator`; config: the config.
    """

    def __init__(self, config: JEPADAAMConfig, extra_hop: bool = True) -> None:
        super().__init__()
        if not isinstance(config, JEPADAAMConfig):
            raise ValueError(f"JEPACodec needs a JEPADAAMConfig, got {type(config).__name__}")
        self.config = config
        self.extra_hop = extra_hop
        m = config.model
        self.encoder = Encoder(m)
        # Optional projection to a narrow FSQ width (ModelConfig.fsq_dim; None = the paper).
        self.quant_in: nn.Module = nn.Identity() if m.fsq_dim is None else nn.Conv1d(m.latent_dim, m.fsq_dim, 1)
        self.quant_out: nn.Module = nn.Identity() if m.fsq_dim is None else nn.Conv1d(m.fsq_dim, m.latent_dim, 1)
        self.fsq = FSQ(m.fsq_levels, m.quant_dim, m.fsq_temperature)
        self.decoder = Generator(m)
        self.eval()

    # ---- derived numbers ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"jepa-daam@{self.config.name}"

    @property
    def sample_rate(self) -> int:
        return self.config.model.sample_rate

    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.model.frame_rate

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Vocabulary of each of the token streams (18 x 16384 + 16 for the paper)."""
        m = self.config.model
        return token_vocab_sizes(m.fsq_radices, m.pack_group)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def nominal_bitrate(self) -> float:
        """Exact nominal bitrate in bit/s (640 for the paper configuration)."""
        return self.config.model.bitrate

    @property
    def header_vocab_sizes(self) -> tuple[int, ...]:
        """Vocabulary of each per-utterance header token: (gain levels,) with loudness
        normalisation, () without."""
        m = self.config.model
        return () if m.loudness_target_db is None else (m.loudness_gain_levels,)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for an input of `num_samples` samples under the padding rule."""
        hops = -(-num_samples // self.hop_length) + (1 if self.extra_hop else 0)
        return self.encoder.num_frames(hops * self.hop_length)

    # ---- input checks -------------------------------------------------------------------------
    def _check_wav(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None, what: str = "wav") -> torch.Tensor:
        """Validate one waveform and return it as float32 [L] on the CPU."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(
                f"{what}: sample rate {sample_rate} Hz is not supported; {self.name} takes "
                f"{self.sample_rate} Hz mono (resample first, e.g. audiocore.audio.load_audio(path, {self.sample_rate}))"
            )
        wav = torch.as_tensor(wav)
        if wav.dim() == 2 and wav.shape[0] == 1:
            wav = wav[0]
        if wav.dim() != 1:
            raise ValueError(
                f"{what}: expected a mono waveform of shape [L] (or [1, L]), got shape {tuple(wav.shape)}; "
                "use encode_batch for [B, L]"
            )
        if not wav.is_floating_point():
            raise ValueError(f"{what}: expected float samples in [-1, 1], got dtype {wav.dtype}")
        if wav.numel() == 0:
            raise ValueError(f"{what}: the waveform is empty (0 samples)")
        if wav.numel() < self.hop_length:
            raise ValueError(
                f"{what}: {wav.numel()} samples is too short; at least one frame ({self.hop_length} samples = "
                f"{self.hop_length / self.sample_rate:.2f} s at {self.sample_rate} Hz) is needed"
            )
        if not bool(torch.isfinite(wav).all()):
            raise ValueError(f"{what}: the waveform contains NaN or Inf samples")
        return wav.detach().to("cpu", torch.float32)

    # ---- differentiable pieces (training) --------------------------------------------------------
    def normalize_loudness(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [B, 1, L] -> (wav at the target level [B, 1, L], gain index [B] int64); the
        identity and 0 dB indices when loudness normalisation is off (see jepa.loudness)."""
        return loudness.normalize(wav, self.config.model)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder latents -> decoder input through the optional projection and FSQ.

        Args:
            z: [B, latent_dim, T] encoder output.
        Returns:
            (z_q [B, latent_dim, T]: what the decoder takes, straight-through gradients when z
            requires grad; idx [B, T, quant_dim] int64 FSQ level indices).
        """
        z_q, idx = self.fsq(self.quant_in(z))
        return self.quant_out(z_q), idx

    def code_usage_deficit(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable distance of the FSQ level usage from uniform for encoder latents
        z [B, latent_dim, T] (scalar in [0, 1], see :meth:`jepa.fsq.FSQ.usage_deficit`)."""
        return self.fsq.usage_deficit(self.quant_in(z))

    def reconstruct(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward on loudness-normalised audio: wav [B, 1, L] (whole hops) ->
        (y_hat [B, 1, hop*T + 384], idx [B, T, quant_dim])."""
        z_q, idx = self.quantize(self.encoder(wav))
        return self.decoder(z_q), idx

    # ---- encode ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_tokens(self, wav: torch.Tensor) -> torch.Tensor:
        """Tokens of already padded (and, if configured, loudness-normalised) audio.

        Args:
            wav: [B, 1, L] float32, L a whole number of hops (at least 2).
        Returns:
            tokens [B, T_z, n_streams] int64 (on the codec's device).
        """
        m = self.config.model
        with _eval_mode(self):
            idx = self.fsq.quantize_indices(self.quant_in(self.encoder(wav.to(self.device))))
        return pack(idx, m.fsq_radices, m.pack_group, m.pack_order)

    def encode(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> Encoded:
        """Encode one utterance.

        Args:
            wav: [L] or [1, L] float mono waveform at 24 kHz, at least one hop (9600 samples) long.
            sample_rate: optional check; anything but the codec's rate raises ValueError.
        Returns:
            Encoded with codes [n_streams, n_frames] int64 on the CPU, the vocab sizes, the frame
            rate (2.5 Hz) and num_samples = L.
        Raises:
            ValueError: wrong rank / dtype / sample rate, empty, too short, NaN or Inf.
        """
        return self.encode_batch([self._check_wav(wav, sample_rate)])[0]

    def encode_batch(self, wavs: Sequence[torch.Tensor | np.ndarray] | torch.Tensor,
                     sample_rate: int | None = None) -> list[Encoded]:
        """Encode several utterances, batching those with the same padded length.

        Args:
            wavs: a list of [L_i] waveforms, or a [B, L] tensor.
            sample_rate: optional check, as in :meth:`encode`.
        Returns:
            one Encoded per input, in order.
        """
        if isinstance(wavs, torch.Tensor):
            if wavs.dim() != 2:
                raise ValueError(f"encode_batch: expected [B, L] or a list of [L], got shape {tuple(wavs.shape)}")
            wavs = list(wavs)
        checked = [self._check_wav(w, sample_rate, what=f"wav[{i}]") for i, w in enumerate(wavs)]
        hops = [-(-w.numel() // self.hop_length) + (1 if self.extra_hop else 0) for w in checked]
        results: list[Encoded | None] = [None] * len(checked)
        for n_hops in sorted(set(hops)):
            members = [i for i, h in enumerate(hops) if h == n_hops]
            length = n_hops * self.hop_length
            batch = torch.zeros(len(members), 1, length)
            gains = []
            for row, i in enumerate(members):  # the gain is measured on the utterance, not its padding
                normalised, gain = self.normalize_loudness(checked[i][None, None])
                batch[row, 0, : checked[i].numel()] = normalised[0, 0]
                gains.append(int(gain[0]))
            tokens = self.encode_tokens(batch).cpu()
            for row, i in enumerate(members):
                header = (gains[row],) if self.header_vocab_sizes else ()
                results[i] = Encoded(
                    codes=tokens[row].T.contiguous(),
                    vocab_sizes=self.vocab_sizes,
                    frame_rate=self.frame_rate,
                    payload_bytes=None,
                    num_samples=checked[i].numel(),
                    header_codes=header,
                    header_vocab_sizes=self.header_vocab_sizes,
                )
        return results  # type: ignore[return-value]

    # ---- decode ------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Waveform from tokens: unpack -> grid values -> decoder.

        Args:
            tokens: [B, T, n_streams] integer tokens.
        Returns:
            wav [B, hop*T + 384] float32 on the codec's device (untrimmed decoder output).
        """
        m = self.config.model
        idx = unpack(tokens.to(self.device), m.fsq_radices, m.pack_group, m.pack_order)
        with _eval_mode(self), parametrize.cached():  # weight norm computed once per call
            return self.decoder(self.quant_out(self.fsq.dequantize(idx)))[:, 0]

    def _check_encoded(self, enc: Encoded, what: str) -> None:
        if not isinstance(enc, Encoded) or enc.codes is None:
            raise ValueError(f"{what}: expected an Encoded with token codes, got {type(enc).__name__}")
        if tuple(enc.vocab_sizes) != self.vocab_sizes:
            raise ValueError(
                f"{what}: tokens have vocab sizes {tuple(enc.vocab_sizes)} but {self.name} uses {self.vocab_sizes}"
            )
        if not math.isclose(enc.frame_rate, self.frame_rate):
            raise ValueError(f"{what}: frame rate {enc.frame_rate} Hz does not match {self.name}'s {self.frame_rate} Hz")
        if enc.codes.shape[1] < 1:
            raise ValueError(f"{what}: no frames to decode")
        if enc.codes.dtype.is_floating_point:
            raise ValueError(f"{what}: codes must be integers, got {enc.codes.dtype}")
        if tuple(enc.header_vocab_sizes) != self.header_vocab_sizes:
            raise ValueError(f"{what}: header vocab sizes {tuple(enc.header_vocab_sizes)} do not match "
                             f"{self.name}'s {self.header_vocab_sizes} (loudness gain token)")

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Decode one utterance to a float32 CPU waveform of exactly ``enc.num_samples`` samples."""
        return self.decode_batch([enc])[0]

    def decode_batch(self, encs: Sequence[Encoded]) -> list[torch.Tensor]:
        """Decode several utterances, batching those with the same number of frames.

        Returns:
            one float32 CPU waveform [num_samples] per input, in order (trimmed, or zero-padded
            when the decoder output is shorter, which happens only with extra_hop=False).
        """
        for i, enc in enumerate(encs):
            self._check_encoded(enc, f"encoded[{i}]")
        frames = [enc.codes.shape[1] for enc in encs]
        results: list[torch.Tensor | None] = [None] * len(encs)
        for n in sorted(set(frames)):
            members = [i for i, f in enumerate(frames) if f == n]
            tokens = torch.stack([encs[i].codes.T.long() for i in members])
            wav = self.decode_tokens(tokens).float().cpu()
            if self.header_vocab_sizes:
                gains = torch.tensor([encs[i].header_codes[0] for i in members], dtype=torch.int64)
                wav = loudness.restore(wav, gains, self.config.model)
            for row, i in enumerate(members):
                out = wav[row, : encs[i].num_samples]
                if out.numel() < encs[i].num_samples:
                    out = torch.nn.functional.pad(out, (0, encs[i].num_samples - out.numel()))
                results[i] = out.clone()
        return results  # type: ignore[return-value]

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the weights as safetensors with the config JSON and a content hash in the metadata.

        Metadata keys: ``format``, ``format_version``, ``config`` (JSON of the whole config),
        ``extra_hop`` (JSON bool) and ``content_sha256`` (:func:`state_dict_sha256` of the
        tensors), which :meth:`load` verifies.
        """
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "config": json.dumps(config_to_dict(self.config)),
            "extra_hop": json.dumps(self.extra_hop),
            "content_sha256": state_dict_sha256(state),
        }
        save_file(state, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "JEPACodec":
        """Load a checkpoint written by :meth:`save`, checking it before any weight is used.

        Only safetensors is read (no pickle). Checks, each failing with a ValueError that names
        the file: readable safetensors (a truncated or corrupt file fails here), JEPACodec
        metadata with a valid config, the tensors' ``content_sha256`` when the file carries one
        (flipped bytes in the tensor data fail here; files written before the hash existed skip
        this check), no NaN/Inf in any tensor, and exactly the tensor names and shapes that the
        config's model has (a header for another config or missing tensors fail here).
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"JEPA-DAAM checkpoint {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for corrupt headers/data
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): "
                             f"{' '.join(str(err).split())}") from err
        if metadata.get("format") != CHECKPOINT_FORMAT or "config" not in metadata:
            raise ValueError(f"{path} is not a JEPACodec checkpoint (metadata format={metadata.get('format')!r})")
        try:
            config = config_from_dict(json.loads(metadata["config"]))
            extra_hop = json.loads(metadata.get("extra_hop", "true"))
        except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: invalid config in the checkpoint metadata: {err}") from err
        expected_hash = metadata.get("content_sha256")
        if expected_hash is not None:
            actual = state_dict_sha256(state)
            if actual != expected_hash:
                raise ValueError(f"{path}: tensor data does not match the checkpoint's content_sha256 "
                                 f"(stored {expected_hash[:16]}..., computed {actual[:16]}...): the file was "
                                 f"corrupted or edited after it was saved")
        _check_finite(state, path)
        # The config is untrusted until the file's tensors match the model it describes: compare
        # on the meta device (no memory, no time) before building the real model.
        with torch.device("meta"):
            skeleton = cls(config, extra_hop=bool(extra_hop))
        _check_tensor_layout(state, skeleton.state_dict(), path, config)
        codec = cls(config, extra_hop=bool(extra_hop))
        codec.load_state_dict(state, strict=True)
        return codec.to(device).eval()

    @classmethod
    def from_stage1(cls, jepa_module: nn.Module, cfg: JEPADAAMConfig, extra_hop: bool = True) -> "JEPACodec":
        """A codec whose encoder is a copy of the Stage-1 online (context) encoder; the decoder
        is freshly initialised."""
        codec = cls(cfg, extra_hop=extra_hop)
        codec.encoder.load_state_dict(jepa_module.context_encoder.state_dict(), strict=True)
        return codec


# ---- checkpoint checks -------------------------------------------------------------------------

def _check_finite(state: "dict[str, torch.Tensor]", path: Path) -> None:
    """Raise ValueError naming ``path`` and the first tensor that holds NaN/Inf values."""
    floats = [(name, t) for name, t in state.items() if t.is_floating_point() and t.numel()]
    if not floats or bool(torch.isfinite(torch.cat([t.reshape(-1).float() for _, t in floats])).all()):
        return
    for name, t in floats:
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{path}: tensor {name!r} holds {bad} NaN/Inf values of {t.numel()}: "
                             f"the checkpoint is corrupt")


def _check_tensor_layout(state: "dict[str, torch.Tensor]", expected: "dict[str, torch.Tensor]", path: Path,
                         config: JEPADAAMConfig) -> None:
    """Raise ValueError naming ``path`` when the file's tensors are not exactly those of the model
    built from its config (missing, unexpected, or differently shaped tensors; first 3 of each)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [f"{k} {list(state[k].shape)} in the file vs {list(expected[k].shape)} in the model"
                for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if not (missing or unexpected or reshaped):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped)):
        if items:
            parts.append(f"{len(items)} {label} ({'; '.join(items[:3])}{'; ...' if len(items) > 3 else ''})")
    raise ValueError(f"{path}: tensors do not match the model of the config in its metadata "
                     f"(config {config.name!r}, hash {config_hash(config)}): {', '.join(parts)}")
