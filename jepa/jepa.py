"""Stage 1: JEPA pre-training with an EMA target encoder (spec §4.3, §4.4, §10.2).

    z_ctx  = context_encoder(wav with masked frames zeroed)     # "input" (default, no leak)
           | context_encoder(wav)                                # "latent" (reference, leaks)
    z_tgt  = target_encoder(wav)                                 # EMA copy, no grad, eval mode
           | layer_norm over C of it, no affine                  # target_norm="layernorm"
    z_pred = predictor(z_ctx * m + mask_token * (1 - m))
    mse    = sum over masked valid frames of (z_pred - z_tgt)^2 / (N_masked * C)
    loss   = mse + variance_weight * mean_c relu(1 - std_c(z_pred over masked valid frames))

After every optimiser step call :meth:`JEPA.update_target` (theta_tgt <- tau theta_tgt + (1-tau) theta).
The paper has neither the target normalisation nor the variance term (target_norm="none",
variance_weight=0, the defaults of this module; ``jepa.config.Stage1Config`` turns them on).
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

TARGET_NORMS = ("none", "layernorm")
VARIANCE_TARGET = 1.0
"""The std per channel below which the variance hinge acts (VICReg's gamma)."""


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
        target_norm: "none" (the paper) or "layernorm": the targets are normalised over the
            channels of each frame without affine parameters (I-JEPA, data2vec), which removes
            the trivial solution of shrinking the target scale.
        variance_weight: weight of the VICReg-style hinge mean_c relu(1 - std_c) on the
            per-channel std of the predictions over batch x masked frames (0 = off, the paper).

    Attributes:
        context_encoder: the online encoder (trained; the one the codec uses).
        target_encoder: deep copy of the online encoder, frozen (requires_grad False), always
            in eval mode, updated only by :meth:`update_target`.
        predictor: :class:`Predictor`.
        mask_token: [1, C, 1] learned vector, truncated normal std 0.02.
    """

    def __init__(self, cfg: ModelConfig, target_norm: str = "none", variance_weight: float = 0.0) -> None:
        super().__init__()
        if target_norm not in TARGET_NORMS:
            raise ValueError(f"target_norm={target_norm!r} is not valid; choose one of {TARGET_NORMS}")
        if variance_weight < 0:
            raise ValueError(f"variance_weight must be >= 0, got {variance_weight}")
        self.cfg = cfg
        self.target_norm = target_norm
        self.variance_weight = float(variance_weight)
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
              ``loss``: the scalar objective, mse + variance_weight * variance;
              ``mse``: scalar masked MSE (0 with a graph when no frame is masked);
              ``variance``: the hinge mean_c relu(1 - std_c) on the predictions of masked valid
                frames (0 when the weight is 0 or fewer than 2 such frames; detached then);
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
            if self.target_norm == "layernorm":
                z_tgt = F.layer_norm(z_tgt.transpose(1, 2).float(), (z_tgt.shape[1],)).transpose(1, 2).to(z_tgt.dtype)
        m = visible[:, None, :].to(z_ctx.dtype)
        z_pred = self.predictor(z_ctx * m + self.mask_token * (1.0 - m))

        target = (~visible) & frame_valid  # [B, T_z]
        n_masked = target.sum()
        sq = (z_pred - z_tgt).pow(2).sum(dim=1)  # [B, T_z]
        mse = (sq * target).sum() / (n_masked.clamp_min(1) * z_pred.shape[1])
        variance = z_pred.new_zeros(())
        if self.variance_weight > 0:
            predicted = z_pred.transpose(1, 2)[target].float()  # [N_masked, C]
            if predicted.shape[0] > 1:
                std = (predicted.var(dim=0, unbiased=True) + 1e-4).sqrt()
                variance = F.relu(VARIANCE_TARGET - std).mean()
        loss = mse + self.variance_weight * variance if self.variance_weight > 0 else mse

        with torch.no_grad():
            valid = z_pred.transpose(1, 2)[frame_valid]  # [N_valid, C]
            pred_std = valid.float().std(dim=0, unbiased=False).mean() if valid.shape[0] > 1 else valid.new_zeros(())
        return {"loss": loss, "mse": mse, "variance": variance, "pred_std": pred_std, "n_masked": n_masked}
