"""Stage 1: JEPA pre-training with an EMA target encoder (spec §4.3, §4.4, §10.2).

    z_ctx  = context_encoder(wav with masked frames zeroed)     # "input" (default, no leak)
           | context_encoder(wav)                                # "latent" (reference, leaks)
    z_tgt  = target_encoder(wav)                                 # EMA copy, no grad, eval mode
    z_pred = predictor(z_ctx * m + mask_token * (1 - m))
    loss   = sum over masked valid frames of (z_pred - z_tgt)^2 / (N_masked * C)

After every optimiser step call :meth:`JEPA.update_target` (theta_tgt <- tau theta_tgt + (1-tau) theta).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from jepa.config import ModelConfig
from jepa.ema import ema_update
from jepa.encoder import Encoder
from jepa.layers import ConformerBlock, init_weights


class Predictor(nn.Module):
    """Conv1d(C->H, k1) -> [GELU -> Conformer(H) -> Conv1d(H->H or H->C, k1)] x n (spec §4.3).

    Args:
        cfg: uses latent_dim C, predictor_dim H, predictor_layers n, predictor_heads.
    Shapes: z [B, C, T] -> [B, C, T].
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h = cfg.predictor_dim
        layers: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, h, 1)]
        for i in range(cfg.predictor_layers):
            out = cfg.latent_dim if i == cfg.predictor_layers - 1 else h
            layers += [
                nn.GELU(),
                ConformerBlock(h, cfg.predictor_heads, cfg.conformer_ff_mult, cfg.conformer_conv_kernel, cfg.dropout),
                nn.Conv1d(h, out, 1),
            ]
        self.net = nn.Sequential(*layers)
        init_weights(self, cfg.init_std, cfg.init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def frames_to_samples(frame_mask: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """Expand a per-frame mask [B, T] to samples [B, 1, length]: frame t covers samples
    [hop*t, hop*(t+1)); samples past hop*T (the tail that yields no frame) take True."""
    b, t = frame_mask.shape
    samples = frame_mask.repeat_interleave(hop, dim=1)[:, :length]
    if samples.shape[1] < length:
        samples = F.pad(samples, (0, length - samples.shape[1]), value=True)
    return samples[:, None, :]


class JEPA(nn.Module):
    """Context encoder + EMA target encoder + predictor + mask token.

    Args:
        cfg: model configuration; ``cfg.context_masking`` selects "input" (default: the context
            encoder never sees the audio of masked frames) or "latent" (the reference's leak).

    Attributes:
        context_encoder: the online encoder (trained; the one the codec uses).
        target_encoder: deep copy of the online encoder, frozen (requires_grad False), always
            in eval mode, updated only by :meth:`update_target`.
        predictor: :class:`Predictor`.
        mask_token: [1, C, 1] learned vector, truncated normal std 0.02.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.context_encoder = Encoder(cfg)
        self.target_encoder = copy.deepcopy(self.context_encoder)
        self.target_encoder.requires_grad_(False)
        self.target_encoder.eval()
        self.predictor = Predictor(cfg)
        self.mask_token = nn.Parameter(torch.empty(1, cfg.latent_dim, 1))
        std = cfg.mask_token_std
        nn.init.trunc_normal_(self.mask_token, std=std, a=-2 * std, b=2 * std)

    def train(self, mode: bool = True) -> "JEPA":
        """Set train/eval mode; the target encoder stays in eval mode."""
        super().train(mode)
        self.target_encoder.eval()
        return self

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """EMA step of the target encoder towards the context encoder (spec §4.4)."""
        ema_update(self.target_encoder, self.context_encoder, tau)

    def num_frames(self, length: int) -> int:
        """Latent frames for `length` samples (spec §4.2)."""
        return self.context_encoder.num_frames(length)

    def context_features(self, wav: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Context-encoder output z_ctx [B, C, T_z] for wav [B, 1, L] and visible [B, T_z].

        With context_masking="input" the samples of every masked frame are zeroed first, so
        z_ctx does not depend on the audio inside masked spans; with "latent" the encoder sees
        the whole waveform (the reference behaviour)."""
        if self.cfg.context_masking == "input":
            wav = wav * frames_to_samples(visible, self.context_encoder.hop_length, wav.shape[-1]).to(wav.dtype)
        return self.context_encoder(wav)

    def forward(self, wav: torch.Tensor, visible: torch.Tensor,
                frame_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One Stage-1 step's forward pass.

        Args:
            wav: [B, 1, L] float waveform at 24 kHz.
            visible: [B, T_z] bool, True = context, False = target (from :func:`jepa.masking.block_mask`).
            frame_valid: [B, T_z] bool, False for frames that only cover collate padding; those
                frames are excluded from the loss and the monitor. None = all valid.
        Returns:
            dict with
              ``loss``: scalar masked MSE (0 with a graph when no frame is masked);
              ``pred_std``: scalar, mean over channels of the std of z_pred over batch and valid
                frames (detached; collapse monitor, warn below ~0.01);
              ``n_masked``: int64 scalar, number of masked valid frames N_masked.
        """
        t_z = self.num_frames(wav.shape[-1])
        if visible.shape != (wav.shape[0], t_z) or visible.dtype != torch.bool:
            raise ValueError(
                f"visible must be a bool tensor of shape [B, T_z] = {[wav.shape[0], t_z]} for wav "
                f"{tuple(wav.shape)}, got {visible.dtype} {tuple(visible.shape)}"
            )
        if frame_valid is None:
            frame_valid = torch.ones_like(visible)
        elif frame_valid.shape != visible.shape or frame_valid.dtype != torch.bool:
            raise ValueError(
                f"frame_valid must be bool with the shape of visible {tuple(visible.shape)}, got "
                f"{frame_valid.dtype} {tuple(frame_valid.shape)}"
            )
        z_ctx = self.context_features(wav, visible)
        with torch.no_grad():
            z_tgt = self.target_encoder(wav)
        m = visible[:, None, :].to(z_ctx.dtype)
        z_pred = self.predictor(z_ctx * m + self.mask_token * (1.0 - m))

        target = (~visible) & frame_valid  # [B, T_z]
        n_masked = target.sum()
        sq = (z_pred - z_tgt).pow(2).sum(dim=1)  # [B, T_z]
        loss = (sq * target).sum() / (n_masked.clamp_min(1) * z_pred.shape[1])

        with torch.no_grad():
            valid = z_pred.transpose(1, 2)[frame_valid]  # [N_valid, C]
            pred_std = valid.float().std(dim=0, unbiased=False).mean() if valid.shape[0] > 1 else valid.new_zeros(())
        return {"loss": loss, "pred_std": pred_std, "n_masked": n_masked}
