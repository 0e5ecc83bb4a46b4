"""Configuration of the JEPA-DAAM tokenizer: architecture, Stage 1 and Stage 2 training.

Every number lives here, tagged with its source in ``../shared/docs/paper-spec.md`` (the spec
beside the checkout; section in brackets). Over 500 lines because this is the one home of every
hyper-parameter, with its source and its paper value beside it; splitting the dataclasses from
the presets would put the same numbers in two places.

Field defaults are the working recipe; where it departs from the paper, the paper's value is in
:data:`REFERENCE_VALUES` (docs/model.md, "Departures"). Presets (:data:`PRESETS`):

* ``paper`` / ``paper-reference``: the paper's sizes, exact to the parameter (spec §9), with the
  working recipe / with every paper value.
* ``small`` / ``small-reference``: the spec's reduced CPU configuration (spec §9, "CPU
  suggestion"): every mechanism, hop 9600 = 2.5 Hz, the 128-d latent, FSQ and packing; only
  widths and depths shrink (~3.4M Stage-1 parameters). ``small_no_daam``: the ablation arm.
* ``small-12.5hz`` / ``small-50hz``: SMALL at other frame rates and ~640 bit/s.

Configs are frozen dataclasses. Change a value with ``dataclasses.replace`` or load a YAML/JSON
file with :func:`load_config`; ``jepa/configs/*.yaml`` hold the presets as files.

Derived quantities (hop length, frame rate, tokens per frame, vocabulary sizes, bitrate) are
properties computed from the numbers, never typed twice.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

_CONTEXT_MASKING = ("input", "latent")
_PACK_ORDERS = ("big", "little")
_MSD_POOLING = ("cumulative", "reference")
_INIT = ("kaiming", "reference")
_DAAM_MODES = ("normalized", "reference")
_LR_SCHEDULES = ("cosine", "constant")
_TARGET_NORMS = ("layernorm", "none")
_SHORT_UTTERANCES = ("pad", "drop")


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, valid))}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the encoder, predictor, FSQ/packing, decoder and discriminators.

    Attributes (spec section in brackets):
        sample_rate: audio sample rate in Hz [§2].
        latent_dim: channels C of the latent z_e [§2].
        enc_channels: encoder widths: input conv output, then the output of each of the 5
            EncoderBlocks [§4.1]; len = len(enc_strides) + 1.
        enc_strides: stride of each EncoderBlock; the hop is their product [§4.1].
        enc_input_kernel: kernel of the first Conv1d (1 -> enc_channels[0]) [§4.1].
        enc_resblocks: ResBlock1 units per EncoderBlock; unit i has dilations (1, 3**i, 5**i) [§4.1].
        enc_resblock_kernel: kernel of the encoder ResBlock1 convs [§4.1].
        conformer_layers / conformer_heads: encoder Conformer stack at width latent_dim [§4.1].
        conformer_ff_mult / conformer_conv_kernel / dropout: Conformer internals [§3].
        use_daam: DAAM gate at the end of every EncoderBlock; False makes it the identity [§10.14].
        daam_components: K Gaussians per gate [§3.1].
        daam_alpha_init / daam_nu_init: gate initialisations (alpha, nu = log 0.5) [§3.1].
        predictor_dim / predictor_layers / predictor_heads: Stage-1 predictor [§4.3].
        mask_token_std: std of the truncated-normal mask-token init [§4.3].
        init_std: std of the truncated-normal init of every linear weight, and of every conv
            weight under ``init="reference"`` [§4.4].
        init: "kaiming" (default; Kaiming-normal convs, scaled residual branches, zero biases) or
            "reference" (truncated normal std init_std everywhere, the paper). Departure D1 of
            docs/model.md: the reference init makes the SMALL encoder's signal vanish.
        daam_mode: "normalized" (default): the Gaussian means delta_k are in units of the
            projection's std over time and the variance floor is relative to the projection's
            mean square; "reference": delta_k in raw units and an absolute floor of 1e-6, which
            exceeds the variance of small activations and turns the gate off (D2).
        daam_delta_spread: initial delta_k = linspace(-spread, spread, K) (0 = the paper: all
            K components identical, so they get identical gradients and never separate) (D2).
        context_masking: "input" zeros the audio of masked frames before the context encoder
            and swaps in the mask token (default, no leak); "latent" reproduces the reference,
            which masks only the latents (leaks the targets) [§10.2].
        fsq_levels: FSQ levels; C is split into len(fsq_levels) equal contiguous groups [§5].
        fsq_temperature: T in z' = tanh(z/T)*T [§5].
        fsq_dim: None (the paper) quantises the latent_dim channels directly; an integer adds a
            1x1 projection latent_dim -> fsq_dim before FSQ and fsq_dim -> latent_dim after it,
            so low bit budgets per frame (frame rates above 2.5 Hz at 640 bit/s) are possible (D4).
        loudness_target_db: None (the paper) feeds the waveform as it is; a number (dBFS)
            scales every utterance to that RMS before encoding and restores its level after
            decoding. The gain is quantised (loudness_gain_step_db, loudness_gain_levels) and
            sent once per utterance as a header token, counted in the bitrate (D3).
        pack_group: FSQ dims per token G [§6]; pack_order: "big" (paper) or "little" (code) [§10.3].
        dec_channels: decoder widths: un-projection output, then each upsampling stage [§7.1].
        dec_strides: upsampling factor of each decoder stage; product equals the hop [§7.1].
        mrf_kernels / mrf_dilations: MRF ResBlock1 kernels and dilations [§7.1].
        dec_output_kernel: kernel of the final Conv1d(->1) before tanh [§7.1].
        weight_norm: weight norm on decoder and discriminator convs (False = reference) [§10.7].
        mpd_periods / mpd_channels / mpd_kernel / mpd_stride: multi-period discriminator [§7.2].
        msd_scales: number of MSD sub-discriminators [§7.2].
        msd_channels / msd_kernels / msd_strides / msd_groups: one MSD sub-discriminator's
            layers before the post conv [§7.2].
        msd_pooling: "cumulative" (x1, x2, x4; default) or "reference" (x1, x2, x2) [§10.10].
        min_input_samples: shortest accepted input (4 hops -> 3 frames) [§10.18].
    """

    sample_rate: int = 24_000
    latent_dim: int = 128
    # Encoder [§4.1]
    enc_channels: tuple[int, ...] = (64, 128, 256, 384, 512, 512)
    enc_strides: tuple[int, ...] = (8, 8, 5, 5, 6)
    enc_input_kernel: int = 7
    enc_resblocks: int = 8
    enc_resblock_kernel: int = 3
    conformer_layers: int = 8
    conformer_heads: int = 16
    conformer_ff_mult: int = 4
    conformer_conv_kernel: int = 31
    dropout: float = 0.1
    # DAAM [§3.1]
    use_daam: bool = True
    daam_components: int = 4
    daam_alpha_init: float = 0.05
    daam_nu_init: float = math.log(0.5)
    daam_mode: str = "normalized"
    daam_delta_spread: float = 1.0
    # Predictor, masking [§4.3, §4.4]
    predictor_dim: int = 256
    predictor_layers: int = 2
    predictor_heads: int = 16
    mask_token_std: float = 0.02
    init_std: float = 0.02
    init: str = "kaiming"
    context_masking: str = "input"
    # FSQ and packing [§5, §6]
    fsq_levels: tuple[int, ...] = (4, 4, 4, 4)
    fsq_temperature: float = 1.0
    fsq_dim: int | None = None
    pack_group: int = 7
    pack_order: str = "big"
    # Decoder [§7.1]
    dec_channels: tuple[int, ...] = (512, 512, 384, 256, 128, 64)
    dec_strides: tuple[int, ...] = (6, 5, 5, 8, 8)
    mrf_kernels: tuple[int, ...] = (3, 7, 11)
    mrf_dilations: tuple[int, ...] = (1, 3, 5)
    dec_output_kernel: int = 7
    weight_norm: bool = True
    # Discriminators [§7.2]
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    mpd_kernel: int = 5
    mpd_stride: int = 3
    msd_scales: int = 3
    msd_channels: tuple[int, ...] = (16, 64, 256, 1024, 1024, 1024)
    msd_kernels: tuple[int, ...] = (15, 41, 41, 41, 41, 5)
    msd_strides: tuple[int, ...] = (1, 4, 4, 4, 4, 1)
    msd_groups: tuple[int, ...] = (1, 4, 16, 64, 256, 1)
    msd_pooling: str = "cumulative"
    # Loudness normalisation (not in the paper, departure D3)
    loudness_target_db: float | None = -20.0
    loudness_gain_step_db: float = 1.5
    loudness_gain_levels: int = 64
    # Input validation [§10.18]
    min_input_samples: int = 38_400

    def __post_init__(self) -> None:
        _check_choice("context_masking", self.context_masking, _CONTEXT_MASKING)
        _check_choice("pack_order", self.pack_order, _PACK_ORDERS)
        _check_choice("msd_pooling", self.msd_pooling, _MSD_POOLING)
        _check_choice("init", self.init, _INIT)
        _check_choice("daam_mode", self.daam_mode, _DAAM_MODES)
        if self.fsq_dim is not None and self.fsq_dim < 1:
            raise ValueError(f"fsq_dim must be None or >= 1, got {self.fsq_dim}")
        if self.loudness_gain_levels < 2 or self.loudness_gain_step_db <= 0:
            raise ValueError(f"loudness_gain_levels ({self.loudness_gain_levels}) must be >= 2 and "
                             f"loudness_gain_step_db ({self.loudness_gain_step_db}) > 0")
        if len(self.enc_channels) != len(self.enc_strides) + 1:
            raise ValueError(
                f"enc_channels needs len(enc_strides)+1 = {len(self.enc_strides) + 1} entries, "
                f"got {len(self.enc_channels)}: {self.enc_channels}"
            )
        if len(self.dec_channels) != len(self.dec_strides) + 1:
            raise ValueError(
                f"dec_channels needs len(dec_strides)+1 = {len(self.dec_strides) + 1} entries, "
                f"got {len(self.dec_channels)}: {self.dec_channels}"
            )
        if math.prod(self.dec_strides) != math.prod(self.enc_strides):
            raise ValueError(
                f"decoder upsampling {math.prod(self.dec_strides)} (dec_strides={self.dec_strides}) must equal "
                f"the encoder hop {math.prod(self.enc_strides)} (enc_strides={self.enc_strides})"
            )
        if self.quant_dim % len(self.fsq_levels) != 0:
            raise ValueError(
                f"the quantised width {self.quant_dim} (fsq_dim, or latent_dim without it) must split evenly "
                f"into len(fsq_levels)={len(self.fsq_levels)} groups"
            )
        if any(level < 2 for level in self.fsq_levels):
            raise ValueError(f"every FSQ level must be >= 2, got fsq_levels={self.fsq_levels}")
        if self.latent_dim % self.conformer_heads != 0:
            raise ValueError(f"latent_dim={self.latent_dim} is not divisible by conformer_heads={self.conformer_heads}")
        if self.predictor_dim % self.predictor_heads != 0:
            raise ValueError(
                f"predictor_dim={self.predictor_dim} is not divisible by predictor_heads={self.predictor_heads}"
            )
        msd_lists = (self.msd_channels, self.msd_kernels, self.msd_strides, self.msd_groups)
        if len({len(x) for x in msd_lists}) != 1:
            raise ValueError(
                "msd_channels, msd_kernels, msd_strides and msd_groups must have equal lengths, got "
                f"{[len(x) for x in msd_lists]}"
            )
        if self.pack_group < 1:
            raise ValueError(f"pack_group must be >= 1, got {self.pack_group}")

    # ---- derived quantities (spec §2) -------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of the encoder strides (9600 for PAPER)."""
        return math.prod(self.enc_strides)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (2.5 Hz for PAPER)."""
        return self.sample_rate / self.hop_length

    @property
    def quant_dim(self) -> int:
        """Channels that FSQ quantises: fsq_dim, or latent_dim when there is no projection."""
        return self.latent_dim if self.fsq_dim is None else self.fsq_dim

    @property
    def fsq_radices(self) -> tuple[int, ...]:
        """FSQ level of every quantised dim, length quant_dim (128 x 4 for PAPER)."""
        per_group = self.quant_dim // len(self.fsq_levels)
        return tuple(level for level in self.fsq_levels for _ in range(per_group))

    @property
    def tokens_per_frame(self) -> int:
        """ceil(quant_dim / pack_group): 19 for PAPER."""
        return -(-self.quant_dim // self.pack_group)

    @property
    def header_bits(self) -> float:
        """Bits sent once per utterance besides the frames: the loudness gain (0 when off)."""
        return 0.0 if self.loudness_target_db is None else math.log2(self.loudness_gain_levels)

    @property
    def bits_per_frame(self) -> float:
        """Exact information per frame, sum of log2 of every FSQ level (256 for PAPER)."""
        return sum(math.log2(r) for r in self.fsq_radices)

    @property
    def bitrate(self) -> float:
        """Nominal bitrate in bit/s: bits_per_frame * frame_rate (640 for PAPER)."""
        return self.bits_per_frame * self.frame_rate


@dataclass(frozen=True)
class Stage1Config:
    """Stage 1 (JEPA pre-training) hyper-parameters [§4.4, §4.5].

    Attributes:
        optimizer: only "adamw" is used by the paper.
        lr / betas / weight_decay: AdamW settings; lr is the peak of the schedule.
        lr_schedule: "cosine" (default): linear warm-up over warmup_steps, then cosine decay to
            lr * lr_final_fraction at the last step; "constant" (the paper): lr after the
            warm-up (warmup_steps 0 = the paper's constant lr from step 1).
        warmup_steps / lr_final_fraction: the schedule's warm-up length and final lr fraction.
        steps: optimiser steps (24k in the paper).
        batch_size: global batch (64 = 32 x 2 GPUs in the paper).
        crop_seconds: maximum random crop length in seconds.
        min_collate_samples: collate pads to at least this many samples (4 hops) [§4.5].
        ema_tau: EMA momentum of the target encoder at step 0 (0.996 in the paper).
        ema_tau_end: None (the paper): tau stays ema_tau; a number: tau rises from ema_tau to
            ema_tau_end over the run on a cosine (BYOL / I-JEPA style; 1.0 freezes the target
            at the end).
        target_norm: "layernorm" (default): the targets are F.layer_norm over channels without
            affine parameters (I-JEPA / data2vec); "none" (the paper): raw target-encoder output.
        variance_weight: weight of a VICReg-style hinge mean_c relu(1 - std_c(z_pred)) on the
            per-channel std of the predictions over batch x valid frames (0 = off, the paper).
        mask_ratio: fraction of frames targeted by block masking (n_target = floor(ratio*T)).
        min_span: shortest masked span in frames; the longest is max(4, T // 4).
        gain_prob / gain_range / noise_prob / noise_std: reference augmentation [§4.5].
        pred_std_warn: warn when the predictor-output std (over batch x time) falls below this.
        grad_clip: max global gradient norm (default 1.0); None = no clipping (the paper).
        monitor_every: run the collapse monitor (jepa.monitor) every N steps (0 = never).
        monitor_clips / monitor_seconds: the monitor's held-out set: the last monitor_clips
            utterances of the training data that are at least monitor_seconds long, one fixed
            crop each, excluded from training (0 = nothing held out, the paper; the monitor then
            runs only with ``--monitor-data``).
        monitor_min_std: stop training (with a checkpoint) when the monitor's between-clip std of
            the encoder output falls below this; None = never stop (the paper trains blind).
            0.01 separates the shipped, collapsed jepa-daam@small (1.1e-5) from fresh SMALL and
            PAPER encoders (0.65-0.96).
        seed: seed for masks, crops and init.
        precision: "fp32" on CPU (the paper used FP16 with FP32 DAAM on GPUs).
    """

    optimizer: str = "adamw"
    lr: float = 1.5e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 1e-3
    steps: int = 24_000
    batch_size: int = 64
    crop_seconds: float = 15.0
    min_collate_samples: int = 38_400
    lr_schedule: str = "cosine"
    warmup_steps: int = 1_000
    lr_final_fraction: float = 0.05
    ema_tau: float = 0.996
    ema_tau_end: float | None = 1.0
    target_norm: str = "layernorm"
    variance_weight: float = 1.0
    mask_ratio: float = 0.5
    min_span: int = 2
    gain_prob: float = 0.3
    gain_range: tuple[float, float] = (0.8, 1.2)
    noise_prob: float = 0.2
    noise_std: float = 0.001
    pred_std_warn: float = 0.01
    grad_clip: float | None = 1.0
    monitor_every: int = 50
    monitor_clips: int = 16
    monitor_seconds: float = 4.0
    monitor_min_std: float | None = 0.01
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_schedule(self)
        _check_choice("target_norm", self.target_norm, _TARGET_NORMS)
        if self.ema_tau_end is not None and not 0.0 <= self.ema_tau <= self.ema_tau_end <= 1.0:
            raise ValueError(f"need 0 <= ema_tau ({self.ema_tau}) <= ema_tau_end ({self.ema_tau_end}) <= 1")
        if self.variance_weight < 0:
            raise ValueError(f"variance_weight must be >= 0, got {self.variance_weight}")
        _check_monitor(self)


def _check_schedule(cfg: Any) -> None:
    _check_choice("lr_schedule", cfg.lr_schedule, _LR_SCHEDULES)
    if cfg.warmup_steps < 0 or not 0.0 <= cfg.lr_final_fraction <= 1.0:
        raise ValueError(f"need warmup_steps >= 0 (got {cfg.warmup_steps}) and 0 <= lr_final_fraction <= 1 "
                         f"(got {cfg.lr_final_fraction})")


def _check_monitor(cfg: Any) -> None:
    if cfg.monitor_every < 0 or cfg.monitor_clips < 0 or cfg.monitor_seconds <= 0:
        raise ValueError(f"need monitor_every >= 0, monitor_clips >= 0 and monitor_seconds > 0, got "
                         f"{cfg.monitor_every}, {cfg.monitor_clips}, {cfg.monitor_seconds}")


@dataclass(frozen=True)
class Stage2Config:
    """Stage 2 (FSQ + HiFi-GAN decoder) hyper-parameters [§7.3, §7.4, §7.5].

    Attributes:
        lr_g / lr_d / betas / weight_decay: AdamW for generator and discriminators.
        steps / batch_size / crop_seconds: training length, global batch, crop length (s).
        disc_start_step: discriminators update only when step > this (5000).
        disc_start_fraction: None (default): disc_start_step decides; a number f in [0, 1]: the
            discriminators (and GAN terms) start after round(f * steps) steps instead, so the
            GAN covers the last (1 - f) of any run length.
        gan_from_step0: True reproduces the reference, whose generator GAN terms are active
            from step 0; False (default) starts them with the discriminators [§10.11].
        finetune_encoder: False (default) freezes the encoder (eval mode, no grad) [§7.5].
        lr_encoder: encoder lr when finetune_encoder is True (its own AdamW parameter group).
        lr_schedule / warmup_steps / lr_final_fraction: as in Stage1Config, applied to every
            group of both optimisers as a function of the global step.
        lambda_l1 / lambda_stft / lambda_gan / lambda_fm / lambda_sc: loss weights;
            L_G = l1*L1 + stft*L_STFT + gan*(Adv + lambda_fm*FM_raw), lambda_sc weights the
            optional spectral-convergence term (0 = off, the reference) [§7.3, §10.9].
        stft_fft_sizes / stft_hop_sizes: the 5 MR-STFT resolutions (Hann window = n_fft).
        lambda_mel: weight of the multi-scale log-mel L1 loss (jepa.losses.MultiScaleMelLoss,
            DAC-style); 0 = off (the paper).
        mel_windows / mel_bins: its Hann window lengths (hop = window / 4) and mel bands.
        grad_clip / grad_clip_d: max global gradient norm of the generator (encoder + decoder)
            and of the discriminators (defaults 1000 and 10 as in DAC); None = off (the paper).
        lambda_code_usage: weight of the FSQ usage term (``JEPACodec.code_usage_deficit``: 0 when
            every level of every FSQ dim is used equally often over the batch, 1 when each dim
            uses one level); 0 = off, the paper (departure D7 of docs/model.md).
        short_utterances: "pad" (default): utterances shorter than a crop are zero-padded and a
            sample mask keeps the padding out of every loss; "drop" (the paper's reference
            code): they are not used.
        monitor_every / monitor_clips / monitor_seconds / monitor_min_std: the collapse monitor,
            as in Stage1Config (stage 2 also logs the mel distance of the reconstruction).
        seed / precision: as in Stage1Config.
    """

    lr_g: float = 1.5e-4
    lr_d: float = 0.75e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 1e-3
    steps: int = 29_000
    batch_size: int = 16
    crop_seconds: float = 15.0
    disc_start_step: int = 5_000
    disc_start_fraction: float | None = None
    gan_from_step0: bool = False
    finetune_encoder: bool = False
    lr_encoder: float = 1.5e-4
    lambda_l1: float = 1.0
    lambda_stft: float = 2.0
    lambda_gan: float = 0.1
    lambda_fm: float = 2.0
    lambda_sc: float = 0.0
    stft_fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    stft_hop_sizes: tuple[int, ...] = (512, 256, 128, 64, 32)
    lambda_mel: float = 15.0
    lambda_code_usage: float = 0.0
    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_bins: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    lr_schedule: str = "cosine"
    warmup_steps: int = 1_000
    lr_final_fraction: float = 0.05
    grad_clip: float | None = 1_000.0
    grad_clip_d: float | None = 10.0
    short_utterances: str = "pad"
    monitor_every: int = 100
    monitor_clips: int = 16
    monitor_seconds: float = 4.0
    monitor_min_std: float | None = 0.01
    seed: int = 0
    precision: str = "fp32"

    @property
    def disc_start(self) -> int:
        """The discriminators and GAN terms are active from step disc_start + 1 (1-based)."""
        if self.disc_start_fraction is None:
            return self.disc_start_step
        return int(round(self.disc_start_fraction * self.steps))

    def __post_init__(self) -> None:
        _check_schedule(self)
        _check_monitor(self)
        _check_choice("short_utterances", self.short_utterances, _SHORT_UTTERANCES)
        if len(self.mel_windows) != len(self.mel_bins):
            raise ValueError(f"mel_windows {self.mel_windows} and mel_bins {self.mel_bins} differ in length")
        if self.disc_start_fraction is not None and not 0.0 <= self.disc_start_fraction <= 1.0:
            raise ValueError(f"disc_start_fraction must be None or lie in [0, 1], got {self.disc_start_fraction}")
        if len(self.stft_fft_sizes) != len(self.stft_hop_sizes):
            raise ValueError(
                f"stft_fft_sizes {self.stft_fft_sizes} and stft_hop_sizes {self.stft_hop_sizes} differ in length"
            )


@dataclass(frozen=True)
class JEPADAAMConfig:
    """A complete experiment: architecture plus both training stages."""

    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    name: str = "paper"


# ---- presets ----------------------------------------------------------------------------------
#
# Field defaults are the working recipe; every departure from the paper is a named field whose
# paper value is listed in REFERENCE_VALUES (docs/model.md, "Departures"). A config dict that
# lacks a key was written before that key existed, so it takes the paper value: checkpoints of
# earlier releases load with exactly the behaviour they were trained with.

REFERENCE_VALUES: dict[str, dict[str, Any]] = {
    "model": {"init": "reference", "daam_mode": "reference", "daam_delta_spread": 0.0, "fsq_dim": None,
              "loudness_target_db": None},
    "stage1": {"lr_schedule": "constant", "warmup_steps": 0, "grad_clip": None, "ema_tau_end": None,
               "target_norm": "none", "variance_weight": 0.0, "monitor_clips": 0, "monitor_min_std": None},
    "stage2": {"lr_schedule": "constant", "warmup_steps": 0, "grad_clip": None, "grad_clip_d": None,
               "lambda_mel": 0.0, "short_utterances": "drop", "monitor_clips": 0, "monitor_min_std": None},
}
"""Paper / reference-code value of every field that departs from it, per config section."""


def _to_tuples(value: Any) -> Any:
    """Lists (from JSON / YAML) become tuples, recursively, to match the frozen dataclasses."""
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuples(v) for v in value)
    return value


def reference_recipe(cfg: "JEPADAAMConfig", name: str) -> "JEPADAAMConfig":
    """`cfg` with every field of :data:`REFERENCE_VALUES` set to the paper's value."""
    sections = {sec: dataclasses.replace(getattr(cfg, sec), **{k: _to_tuples(v) for k, v in values.items()})
                for sec, values in REFERENCE_VALUES.items()}
    return dataclasses.replace(cfg, name=name, **sections)


PAPER = JEPADAAMConfig(name="paper")

_SMALL_WIDTHS = dict(
    enc_channels=(8, 16, 32, 48, 64, 64),
    enc_resblocks=2,
    conformer_layers=2,
    conformer_heads=4,
    predictor_dim=128,
    predictor_heads=4,
    dec_channels=(64, 64, 48, 32, 16, 8),
    mpd_channels=(8, 16, 32, 64, 64),
    msd_channels=(8, 16, 32, 64, 64, 64),
    msd_groups=(1, 2, 4, 8, 16, 1),
)

SMALL = JEPADAAMConfig(
    name="small",
    model=ModelConfig(**_SMALL_WIDTHS),
    # CPU-sized training [§9 CPU suggestion, R]: 4 s crops (T_z = 9) in both stages; stage 2 with
    # the encoder fine-tuned (departure D6) and the GAN in the last quarter.
    stage1=Stage1Config(steps=600, warmup_steps=60, batch_size=8, crop_seconds=4.0, lr=5e-4),
    stage2=Stage2Config(steps=4_000, warmup_steps=100, batch_size=8, crop_seconds=4.0, disc_start_fraction=0.75,
                        lr_g=5e-4, lr_d=2.5e-4, finetune_encoder=True, lr_encoder=2.5e-4),
)

SMALL_NO_DAAM = dataclasses.replace(SMALL, name="small_no_daam", model=dataclasses.replace(SMALL.model, use_daam=False))


def _frame_rate_variant(name: str, enc_strides: tuple[int, ...], fsq_dim: int, fsq_levels: tuple[int, ...],
                        pack_group: int, min_span: int, crop1: float, crop2: float) -> JEPADAAMConfig:
    """SMALL at another frame rate and ~640 bit/s: the same blocks, DAAM, Conformers, FSQ and
    HiFi-GAN; only the strides (decoder = encoder reversed), the FSQ width behind a projection,
    the token packing, the mask span in frames and the crops change (issue 17 item 6)."""
    hop = math.prod(enc_strides)
    return dataclasses.replace(
        SMALL, name=name,
        model=dataclasses.replace(SMALL.model, enc_strides=enc_strides, dec_strides=tuple(reversed(enc_strides)),
                                  fsq_dim=fsq_dim, fsq_levels=fsq_levels, pack_group=pack_group,
                                  min_input_samples=4 * hop),
        stage1=dataclasses.replace(SMALL.stage1, min_span=min_span, crop_seconds=crop1,
                                   min_collate_samples=4 * hop),
        stage2=dataclasses.replace(SMALL.stage2, crop_seconds=crop2, lambda_code_usage=1.0),
    )


# 12.5 Hz: hop 1920; 22 dims of 5 levels = 51.1 bit/frame (638 bit/s), 4 tokens per frame
# (3 of vocabulary 5^6 = 15,625 and one of 5^4 = 625).
SMALL_12HZ = _frame_rate_variant("small-12.5hz", (8, 5, 4, 4, 3), 22, (5, 5), 6, min_span=3, crop1=4.0, crop2=2.0)
# 50 Hz: hop 480; 5 dims of levels 8, 8, 5, 5, 5 = 12.97 bit/frame (648 bit/s), one token of 8,000.
SMALL_50HZ = _frame_rate_variant("small-50hz", (8, 5, 3, 2, 2), 5, (8, 8, 5, 5, 5), 5, min_span=5, crop1=2.0,
                                 crop2=1.0)

PAPER_REFERENCE = reference_recipe(PAPER, "paper-reference")
SMALL_REFERENCE = reference_recipe(SMALL, "small-reference")

PRESETS: dict[str, JEPADAAMConfig] = {
    cfg.name: cfg for cfg in (PAPER, PAPER_REFERENCE, SMALL, SMALL_REFERENCE, SMALL_NO_DAAM, SMALL_12HZ, SMALL_50HZ)
}


# ---- (de)serialisation --------------------------------------------------------------------------

def config_to_dict(cfg: JEPADAAMConfig) -> dict[str, Any]:
    """Plain nested dict (lists for tuples) suitable for JSON / YAML."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return {
        "name": cfg.name,
        **{section: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
           for section in ("model", "stage1", "stage2")},
    }


def _section_from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    section = where.rsplit(".", 1)[-1]
    missing = {k: v for k, v in REFERENCE_VALUES.get(section, {}).items() if k not in data}
    kwargs = {key: _to_tuples(value) for key, value in {**missing, **data}.items()}
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> JEPADAAMConfig:
    """Inverse of :func:`config_to_dict`. A missing key takes the paper's value: the one in
    :data:`REFERENCE_VALUES` for fields that depart from the paper, else the dataclass default
    (which is the paper's). Unknown keys raise ValueError naming the valid ones."""
    valid = {"name", "model", "stage1", "stage2"}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"config: unknown top-level key(s) {unknown}; valid keys are {sorted(valid)}")
    return JEPADAAMConfig(
        name=str(data.get("name", "custom")),
        model=_section_from_dict(ModelConfig, data.get("model", {}), "config.model"),
        stage1=_section_from_dict(Stage1Config, data.get("stage1", {}), "config.stage1"),
        stage2=_section_from_dict(Stage2Config, data.get("stage2", {}), "config.stage2"),
    )


def save_config(cfg: JEPADAAMConfig, path: str | Path) -> None:
    """Write `cfg` to `path`: YAML for .yaml/.yml, JSON for .json."""
    path = Path(path)
    data = config_to_dict(cfg)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    elif suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        raise ValueError(f"{path}: unsupported config extension {suffix!r}; use .yaml, .yml or .json")
    path.write_text(text, encoding="utf-8")


def load_config(path: str | Path) -> JEPADAAMConfig:
    """Read a config written by :func:`save_config` (YAML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    elif suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"{path}: unsupported config extension {suffix!r}; use .yaml, .yml or .json")
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def get_config(name_or_path: str | Path) -> JEPADAAMConfig:
    """A preset by name (see :data:`PRESETS`) or a config file path."""
    key = str(name_or_path)
    if key.lower() in PRESETS:
        return PRESETS[key.lower()]
    path = Path(key)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return load_config(path)
    raise ValueError(f"unknown config {key!r}; use one of {sorted(PRESETS)} or a .yaml/.json path")
