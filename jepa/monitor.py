"""A collapse monitor that sees positional collapse (issue 17 item 4).

JEPA training can collapse so that the encoder output depends only on the frame position, not
on the audio; the old monitor, the std of the predictions over batch x time, still reads about
0.25 then, because positions differ. This monitor instead encodes a fixed set of held-out clips
(equal length, fixed crops, so frame t is the same position in every clip) and measures:

* ``between_clip_std``: the std over clips of the encoder output at each (channel, frame),
  averaged over channels and frames. It is ~0 when the output ignores the audio.
  Calibration (16 eval clips of 4 s): 1.1e-5 for the shipped, collapsed jepa-daam@small;
  0.83 for a fresh SMALL encoder (Kaiming init), 0.96 with the reference init, 0.65 for a fresh
  PAPER encoder. :data:`DEFAULT_MIN_STD` = 0.01 separates them by ~3 orders of magnitude
  either way.
* ``distinct_codes``: the number of distinct FSQ frame codes over all clips and frames (a
  collapsed encoder gives one code per position: T_z codes for N * T_z frames).
* in stage 2 also ``mel_distance``: mean over scales of the multi-scale log10-mel L1 between
  each clip and its reconstruction.

Clips are loudness-normalised like training batches, and the networks run in eval mode under
no_grad (no RNG is drawn, so monitoring does not change training).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from jepa.config import ModelConfig, Stage1Config
from jepa.fsq import FSQ

DEFAULT_MIN_STD = Stage1Config.monitor_min_std
"""Default stop threshold of the between-clip std (see the module docstring)."""

Quantizer = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


def between_clip_std(z: torch.Tensor) -> float:
    """Mean over channels and frames of the std over clips (unbiased) of z [N, C, T]; N >= 2."""
    if z.dim() != 3 or z.shape[0] < 2:
        raise ValueError(f"between_clip_std needs z of shape [N >= 2, C, T], got {tuple(z.shape)}")
    return float(z.detach().float().std(dim=0).mean())


def distinct_codes(idx: torch.Tensor) -> int:
    """Number of distinct frame codes in FSQ indices idx [N, T, D] (over clips and frames)."""
    return int(torch.unique(idx.reshape(-1, idx.shape[-1]), dim=0).shape[0])


def latent_quantizer(cfg: ModelConfig) -> FSQ:
    """A plain FSQ over the latent channels for stage 1 (before any codec exists): the model's
    levels when latent_dim splits into them, else its first level for every channel (a model
    with an fsq_dim projection, which stage 1 does not train: codes of the latent itself)."""
    levels = cfg.fsq_levels if cfg.latent_dim % len(cfg.fsq_levels) == 0 else (cfg.fsq_levels[0],)
    return FSQ(levels, cfg.latent_dim, cfg.fsq_temperature)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode, no grad; each submodule's own mode restored afterwards."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def fixed_crops(waves: list[np.ndarray], n_clips: int, length: int, from_end: bool = False
                ) -> tuple[torch.Tensor, list[int]]:
    """Centre crops of `length` samples of up to `n_clips` utterances at least that long.

    Args:
        waves: mono float32 waveforms.
        n_clips: how many clips to take.
        length: crop length in samples.
        from_end: take the last suitable utterances (a hold-out from training data) instead of
            the first ones.
    Returns:
        (clips [N, 1, length] float32, indices into `waves` of the utterances used, ascending).
    """
    order = range(len(waves) - 1, -1, -1) if from_end else range(len(waves))
    chosen = [i for i in order if waves[i].ndim == 1 and waves[i].shape[0] >= length][:n_clips]
    chosen.sort()
    crops = [waves[i][(waves[i].shape[0] - length) // 2:][:length] for i in chosen]
    clips = torch.from_numpy(np.stack(crops)).unsqueeze(1) if crops else torch.zeros(0, 1, length)
    return clips, chosen


@dataclass
class CollapseMonitor:
    """Measure collapse on held-out clips and decide whether to stop.

    Args:
        clips: [N, 1, L] held-out audio at the model's rate, N >= 2, L whole hops.
        encoder: the online encoder (stage 1: JEPA.context_encoder; stage 2: codec.encoder).
        quantize: z [N, C, T] -> (z_q [N, C, T], idx [N, T, D]) (``JEPACodec.quantize``, or a
            :func:`latent_quantizer`).
        normalize: wav [N, 1, L] -> wav at the training loudness (identity when off).
        min_std: stop when between_clip_std < min_std; None = never stop.
        decoder / mel_loss: stage 2: z_q -> wav_hat, and a MultiScaleMelLoss for the mel distance.
        modules: every module whose mode eval_mode must switch (default: encoder and decoder).
        batch: clips per forward pass.
    """

    clips: torch.Tensor
    encoder: nn.Module
    quantize: Quantizer
    normalize: Callable[[torch.Tensor], torch.Tensor]
    min_std: float | None = DEFAULT_MIN_STD
    decoder: nn.Module | None = None
    mel_loss: nn.Module | None = None
    modules: tuple[nn.Module, ...] = ()
    batch: int = 8
    stage: str = "training"

    def __post_init__(self) -> None:
        if self.clips.dim() != 3 or self.clips.shape[0] < 2 or self.clips.shape[1] != 1:
            raise ValueError(f"the collapse monitor needs >= 2 held-out clips [N, 1, L], got {tuple(self.clips.shape)}")

    def measure(self) -> dict[str, float]:
        """``between_clip_std``, ``distinct_codes``, ``frames`` (N * T_z) and, with a decoder,
        ``mel_distance``."""
        device = next(self.encoder.parameters()).device
        zs, idxs, mels = [], [], []
        modules = self.modules or tuple(m for m in (self.encoder, self.decoder) if m is not None)
        with eval_mode(*modules):
            for start in range(0, self.clips.shape[0], self.batch):
                wav = self.normalize(self.clips[start:start + self.batch].to(device))
                z = self.encoder(wav)
                z_q, idx = self.quantize(z)
                zs.append(z.float().cpu())
                idxs.append(idx.cpu())
                if self.decoder is not None and self.mel_loss is not None:
                    y_hat = self.decoder(z_q)[..., : wav.shape[-1]].float()
                    n = y_hat.shape[-1]
                    mels.append(float(self.mel_loss(y_hat, wav[..., :n].float())) / len(self.mel_loss.windows)
                                * wav.shape[0])
        z, idx = torch.cat(zs), torch.cat(idxs)
        out = {"between_clip_std": between_clip_std(z), "distinct_codes": float(distinct_codes(idx)),
               "frames": float(idx.shape[0] * idx.shape[1])}
        if mels:
            out["mel_distance"] = sum(mels) / self.clips.shape[0]
        return out

    def verdict(self, values: dict[str, float], step: int) -> str | None:
        """A one-line stop message when the between-clip std is below min_std, else None."""
        std = values["between_clip_std"]
        if self.min_std is None or std >= self.min_std:
            return None
        return (f"{self.stage} stopped at step {step}: the encoder collapsed (between-clip std of its output "
                f"{std:.3g} < monitor_min_std {self.min_std:g} on {self.clips.shape[0]} held-out clips; "
                f"{int(values['distinct_codes'])} distinct codes in {int(values['frames'])} frames); "
                f"checkpoint saved, see docs/training.md")
