"""Per-utterance loudness normalisation with a quantised gain (docs/model.md, departure D3).

The encoder sees every utterance at the same RMS level, so its features describe what is said,
not how loud; the level is restored after decoding from a gain index that travels with the
tokens as one header token per utterance (log2(levels) bits, counted in the measured bitrate).

    rms_db     = 20 log10(RMS of the utterance)                       (dBFS)
    gain_index = clip(round((target_db - rms_db) / step_db) + levels // 2, 0, levels - 1)
    gain_db    = (gain_index - levels // 2) * step_db
    normalised = wav * 10^(gain_db / 20);   restored = decoded * 10^(-gain_db / 20)

With the defaults (target -20 dBFS, 1.5 dB steps, 64 levels = 6 bits) gains from -48 to
+46.5 dB are representable; the quantisation error of the level is at most 0.75 dB. Digital
silence (RMS 0) gets the largest gain and stays silence.
"""
from __future__ import annotations

import torch

from jepa.config import ModelConfig

_RMS_FLOOR = 1e-10


def gain_db(gain_index: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Gain in dB of each gain index ([B] int64 -> [B] float32)."""
    return (gain_index.float() - cfg.loudness_gain_levels // 2) * cfg.loudness_gain_step_db


def gain_index(wav: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Quantised gain that brings each utterance to ``cfg.loudness_target_db``.

    Args:
        wav: [B, 1, L] or [B, L] float waveforms (their full length is measured).
    Returns:
        [B] int64 in [0, loudness_gain_levels); all ``levels // 2`` (0 dB) when normalisation is off.
    """
    levels = cfg.loudness_gain_levels
    if cfg.loudness_target_db is None:
        return torch.full((wav.shape[0],), levels // 2, dtype=torch.int64, device=wav.device)
    rms = wav.detach().float().reshape(wav.shape[0], -1).pow(2).mean(dim=1).sqrt().clamp_min(_RMS_FLOOR)
    steps = torch.round((cfg.loudness_target_db - 20 * torch.log10(rms)) / cfg.loudness_gain_step_db)
    return (steps + levels // 2).clamp(0, levels - 1).to(torch.int64)


def normalize(wav: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each utterance to the target level.

    Args:
        wav: [B, 1, L] float waveforms.
    Returns:
        (normalised [B, 1, L], gain_index [B] int64). The identity and 0 dB indices when
        ``cfg.loudness_target_db`` is None.
    """
    index = gain_index(wav, cfg)
    if cfg.loudness_target_db is None:
        return wav, index
    scale = torch.pow(10.0, gain_db(index, cfg) / 20).to(wav.dtype)
    return wav * scale.view(-1, *([1] * (wav.dim() - 1))), index


def restore(wav: torch.Tensor, index: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Undo :func:`normalize` on decoded audio: wav [B, ...] * 10^(-gain_db / 20)."""
    if cfg.loudness_target_db is None:
        return wav
    scale = torch.pow(10.0, -gain_db(index.to(wav.device), cfg) / 20).to(wav.dtype)
    return wav * scale.view(-1, *([1] * (wav.dim() - 1)))
