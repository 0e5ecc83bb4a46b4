"""Stage-2 reconstruction losses that know which samples are real (departure D5 of docs/model.md).

* :class:`MultiScaleMelLoss`: DAC's multi-scale log-mel L1 (Kumar et al. 2023): for every window
  length n (32 ... 2048 samples, hop n/4, Hann, centred) the magnitude STFT goes through a
  Slaney mel filterbank of m bands (5 ... 320) and the loss is mean |log10 max(mel_hat, 1e-5) -
  log10 max(mel, 1e-5)|, summed over the scales (DAC sums, so its weight 15 applies to the sum).
* :class:`MaskedMRSTFTLoss`: the paper's MR-STFT loss (spec §7.3) with a sample mask.
* :func:`generator_loss`: L_G = l1*L1 + stft*L_STFT + mel*L_mel + gan*(Adv + fm*FM).

Masks: ``mask`` is [B, 1, L] (1 = real audio, 0 = padding that a short utterance or the
collate added). The reconstruction is multiplied by the mask first, so padding matches the
target's zeros exactly and cannot leak into frames of real audio; then every mean runs over real
samples (L1) or over STFT frames whose centre is a real sample. ``mask=None`` means every
sample is real and gives exactly the unmasked losses.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jepa.config import Stage2Config
from jepa.hifigan import DiscOutput, feature_matching_loss, generator_adversarial_loss

LOG_FLOOR = 1e-5


def sample_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """[B, 1, length] float mask with ones on the first lengths[b] samples of row b."""
    return (torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]).to(torch.float32)[:, None, :]


def frame_weights(mask: torch.Tensor, hop: int, n_frames: int) -> torch.Tensor:
    """[B, n_frames] weights of centred STFT frames: 1 where the frame's centre sample (t*hop) is real."""
    centres = torch.clamp(torch.arange(n_frames, device=mask.device) * hop, max=mask.shape[-1] - 1)
    return mask.reshape(mask.shape[0], -1)[:, centres]


def masked_l1(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """mean |x_hat - x| over real samples; x_hat, x, mask [B, 1, L] (F.l1_loss without a mask)."""
    if mask is None:
        return F.l1_loss(x_hat, x)
    return ((x_hat - x).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def _frame_mean(diff: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of diff [B, F, T] over bins and the frames with weight 1 (all frames when None)."""
    if weights is None:
        return diff.mean()
    return (diff * weights[:, None, :]).sum() / (weights.sum().clamp_min(1.0) * diff.shape[1])


def _signal_rows(wav_hat: torch.Tensor, wav: torch.Tensor, mask: torch.Tensor | None,
                 what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(wav_hat * mask, wav) as float32 rows [N, L] for the STFT (no masking when mask is None).

    Raises:
        ValueError: wav_hat and wav differ in shape (``what`` names the loss)."""
    if wav_hat.shape != wav.shape:
        raise ValueError(f"{what} needs equal shapes, got {tuple(wav_hat.shape)} and {tuple(wav.shape)}")
    if mask is not None:
        wav_hat = wav_hat * mask
    return wav_hat.reshape(-1, wav_hat.shape[-1]).float(), wav.reshape(-1, wav.shape[-1]).float()


@lru_cache(maxsize=32)
def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Slaney-scale, area-normalised triangular mel filters from 0 Hz to sample_rate/2 (what
    ``librosa.filters.mel`` returns by default, and DAC uses): float32 [n_mels, n_fft // 2 + 1].
    Bands narrower than one FFT bin come out all-zero (as in librosa)."""
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), m * f_sp)

    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


class MultiScaleMelLoss(nn.Module):
    """DAC's multi-scale log-mel L1 loss, summed over scales (see the module docstring).

    Args:
        sample_rate: Hz (24 000).
        windows: Hann window lengths n in samples; hop n // 4.
        n_mels: mel bands per window (same length as `windows`).
    Shapes: forward(wav_hat, wav [B, 1, L], mask [B, 1, L] or None) -> scalar.
    """

    def __init__(self, sample_rate: int, windows: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
                 n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320)) -> None:
        super().__init__()
        if len(windows) != len(n_mels) or not windows:
            raise ValueError(f"windows {tuple(windows)} and n_mels {tuple(n_mels)} must be non-empty and of equal length")
        self.sample_rate, self.windows, self.n_mels = sample_rate, tuple(windows), tuple(n_mels)
        for n, m in zip(self.windows, self.n_mels):
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)
            self.register_buffer(f"mel_{n}", slaney_mel_filterbank(sample_rate, n, m), persistent=False)

    @classmethod
    def from_config(cls, cfg: Stage2Config, sample_rate: int) -> "MultiScaleMelLoss":
        return cls(sample_rate, cfg.mel_windows, cfg.mel_bins)

    def log_mel(self, wav: torch.Tensor, n: int) -> torch.Tensor:
        """log10 mel magnitude [B, n_mels, frames] of wav [B, L] at window n."""
        spec = torch.stft(wav, n, n // 4, n, getattr(self, f"window_{n}"), center=True, return_complex=True).abs()
        return torch.log10(torch.clamp(getattr(self, f"mel_{n}") @ spec, min=LOG_FLOOR))

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x_hat, x = _signal_rows(wav_hat, wav, mask, "mel loss")
        total = x_hat.new_zeros(())
        for n in self.windows:
            a, b = self.log_mel(x_hat, n), self.log_mel(x, n)
            weights = None if mask is None else frame_weights(mask, n // 4, a.shape[-1])
            total = total + _frame_mean((a - b).abs(), weights)
        return total


class MaskedMRSTFTLoss(nn.Module):
    """The paper's MR-STFT loss (spec §7.3) with means over real frames only.

    Mean over resolutions of L1(|S_hat|, |S|) + L1(log(|S_hat| + 1e-5), log(|S| + 1e-5)), plus
    ``sc_weight`` times the spectral convergence ||S| - |S_hat||_F / ||S||_F (0 = off, the
    reference). STFT: Hann window of length n_fft, torch defaults (center=True, reflect padding).
    With a mask, the reconstruction is multiplied by it and the L1 means run over frames whose
    centre is a real sample; without one it is the plain (unmasked) loss.

    Args:
        fft_sizes / hop_sizes: one entry per resolution (2048..128 / 512..32).
        sc_weight: weight of the optional spectral-convergence term.
    Shapes: forward(wav_hat, wav [B, 1, L] or [B, L], mask [B, 1, L] or None) -> scalar.
    """

    def __init__(self, fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128),
                 hop_sizes: Sequence[int] = (512, 256, 128, 64, 32), sc_weight: float = 0.0) -> None:
        super().__init__()
        if len(fft_sizes) != len(hop_sizes):
            raise ValueError(f"fft_sizes {tuple(fft_sizes)} and hop_sizes {tuple(hop_sizes)} differ in length")
        self.fft_sizes = tuple(fft_sizes)
        self.hop_sizes = tuple(hop_sizes)
        self.sc_weight = sc_weight
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    @classmethod
    def from_config(cls, cfg: Stage2Config) -> "MaskedMRSTFTLoss":
        return cls(cfg.stft_fft_sizes, cfg.stft_hop_sizes, cfg.lambda_sc)

    def _magnitude(self, x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        window = getattr(self, f"window_{n_fft}")
        return torch.stft(x, n_fft, hop, n_fft, window, return_complex=True).abs()

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x_hat, x = _signal_rows(wav_hat, wav, mask, "STFT loss")
        total = x_hat.new_zeros(())
        for n_fft, hop in zip(self.fft_sizes, self.hop_sizes):
            s_hat, s = self._magnitude(x_hat, n_fft, hop), self._magnitude(x, n_fft, hop)
            if mask is None:
                total = total + F.l1_loss(s_hat, s) + F.l1_loss(torch.log(s_hat + 1e-5), torch.log(s + 1e-5))
            else:
                weights = frame_weights(mask, hop, s.shape[-1])
                total = total + _frame_mean((s_hat - s).abs(), weights) + \
                    _frame_mean((torch.log(s_hat + 1e-5) - torch.log(s + 1e-5)).abs(), weights)
            if self.sc_weight:  # padded frames are zero in both, so the norms need no mask
                total = total + self.sc_weight * torch.linalg.norm(s - s_hat) / torch.linalg.norm(s).clamp_min(1e-8)
        return total / len(self.fft_sizes)


def generator_loss(wav_hat: torch.Tensor, wav: torch.Tensor, stft_loss: MaskedMRSTFTLoss, cfg: Stage2Config,
                   mel_loss: MultiScaleMelLoss | None = None, mask: torch.Tensor | None = None,
                   mpd_fake: DiscOutput | None = None, mpd_real: DiscOutput | None = None,
                   msd_fake: DiscOutput | None = None, msd_real: DiscOutput | None = None) -> dict[str, torch.Tensor]:
    """The stage-2 generator objective:

        L_G = l1 * L1 + stft * L_STFT + mel * L_mel + gan * (Adv_MPD + Adv_MSD + fm * (FM_MPD + FM_MSD))

    (spec §7.3 plus the mel term; with lambda_mel = 0 and no mask it is the paper's
    L1 + MR-STFT + GAN objective). The GAN terms are added only when all four
    discriminator outputs are given; pass them computed on ``wav_hat * mask``.

    Args:
        wav_hat / wav: [B, 1, L] reconstruction and target (trimmed to the same length).
        stft_loss / mel_loss: the spectral losses (mel_loss None or lambda_mel 0: no mel term).
        cfg: loss weights.
        mask: [B, 1, L] real-sample mask or None (all real).
        mpd_fake / msd_fake: discriminator outputs on the reconstruction (not detached);
        mpd_real / msd_real: outputs on wav (features are detached inside).
    Returns:
        dict with ``loss`` (total) and the terms ``l1``, ``stft``, and when active ``mel``,
        ``adv``, ``fm``.
    """
    terms = {"l1": masked_l1(wav_hat if mask is None else wav_hat * mask, wav, mask),
             "stft": stft_loss(wav_hat, wav, mask)}
    loss = cfg.lambda_l1 * terms["l1"] + cfg.lambda_stft * terms["stft"]
    if mel_loss is not None and cfg.lambda_mel:
        terms["mel"] = mel_loss(wav_hat, wav, mask)
        loss = loss + cfg.lambda_mel * terms["mel"]
    disc = (mpd_fake, mpd_real, msd_fake, msd_real)
    if all(d is not None for d in disc):
        terms["adv"] = generator_adversarial_loss(mpd_fake[0]) + generator_adversarial_loss(msd_fake[0])
        terms["fm"] = feature_matching_loss(mpd_real[1], mpd_fake[1]) + feature_matching_loss(msd_real[1], msd_fake[1])
        loss = loss + cfg.lambda_gan * (terms["adv"] + cfg.lambda_fm * terms["fm"])
    elif any(d is not None for d in disc):
        raise ValueError("generator_loss needs all four discriminator outputs (mpd/msd, fake/real) or none")
    terms["loss"] = loss
    return terms
