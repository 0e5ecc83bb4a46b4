"""Train the JEPA-DAAM tokenizer: stage 1 (JEPA + DAAM) and stage 2 (FSQ + HiFi-GAN decoder).

Usage::

    python -m jepa.train stage1 --config small --data ../shared/data/train/manifest.tsv --out runs/s1
    python -m jepa.train stage2 --config small --data ../shared/data/train/manifest.tsv --out runs/s2 \\
        --init-from runs/s1/checkpoint.pt
    python -m jepa.train export runs/s2/checkpoint.pt jepa_daam_small.safetensors
    torchrun --nproc_per_node 2 -m jepa.train stage1 ...          # DDP (nccl on CUDA, gloo on CPU)

Both stages follow paper-spec §4 and §7: AdamW with betas (0.8, 0.99), weight decay 1e-3 and a
constant learning rate from the config; in stage 1 the EMA target encoder is updated after every
optimiser step with a constant tau; in stage 2 the encoder is frozen (eval mode, no grad) unless
`finetune_encoder`, the discriminators update only when step > `disc_start_step` at their own
(half) learning rate, and the generator's GAN terms start with them (or from step 0 with
`gan_from_step0`). L_G = l1*L1 + stft*L_STFT + gan*(Adv + fm*FM).

Every `--save-every` steps (and at the end) `OUT/checkpoint.pt` is written atomically (temp
file + os.replace) with everything needed for an exact resume: model(s) including the EMA target,
optimisers, AMP grad scalers, the RNG states of torch / numpy / python of every rank, and the
step. Batches, crops, augmentation and masks are pure functions of (seed, step, rank), so a
resumed run sees exactly the data an uninterrupted one would. `OUT/log.csv` holds one row of
losses per step and `OUT/loss.png` plots them.

Mixed precision (`--amp bf16|fp16`) is used on CUDA only; DAAM gates compute in FP32 inside
the model, and fp16 uses a GradScaler. CPU training is FP32.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import pickle
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from jepa.config import JEPADAAMConfig, config_from_dict, config_to_dict, get_config
from jepa.data import Augmentation, CropDataset, StepBatches

log = logging.getLogger("jepa.train")

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
PLOT_NAME = "loss.png"
CHECKPOINT_FORMAT = 2  # 1: RNG states pickled as python/numpy objects; 2: tensors + content_sha256

STAGE1_COLUMNS = ("step", "loss", "pred_std", "n_masked", "lr", "seconds")
STAGE2_COLUMNS = ("step", "loss_g", "l1", "stft", "adv", "fm", "loss_d", "gan_active", "seconds")


# ---- process / device set-up --------------------------------------------------------------------

@dataclass(frozen=True)
class Runtime:
    """Where this process runs.

    Attributes:
        device: torch device of this process.
        rank / world_size / local_rank: DDP coordinates (0 / 1 / 0 without torchrun).
        amp_dtype: autocast dtype on CUDA (torch.bfloat16 / torch.float16) or None (FP32).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Map "auto" | "cpu" | "cuda" | "cuda:N" to a device (cuda:local_rank under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise ValueError(f"--device {name!r} is not valid; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def setup_runtime(device: str = "auto", amp: str = "auto") -> Runtime:
    """Create the process group when launched by torchrun (env RANK / WORLD_SIZE), else one process.

    Args:
        device: "auto" | "cpu" | "cuda" | "cuda:N".
        amp: "auto" (bf16 on CUDA if supported, else fp16; off on CPU) | "bf16" | "fp16" | "off".
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    amp_dtype: torch.dtype | None = None
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"--amp {amp!r} is not valid; use auto, bf16, fp16 or off")
    if dev.type == "cuda" and amp != "off":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            amp_dtype = torch.bfloat16
        else:
            amp_dtype = torch.float16
    elif amp in ("bf16", "fp16"):
        log.warning("--amp %s ignored on %s: mixed precision is used on CUDA only", amp, dev)
    return Runtime(dev, rank, world_size, local_rank, amp_dtype)


def autocast(rt: Runtime) -> contextlib.AbstractContextManager:
    """Autocast context for model forwards (a no-op on CPU / FP32)."""
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=rt.device.type, dtype=rt.amp_dtype)


def make_scaler(rt: Runtime) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 autocast."""
    return torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)


def mean_over_ranks(values: dict[str, float], rt: Runtime) -> dict[str, float]:
    """Average scalar logs over DDP ranks (identity in one process)."""
    if not rt.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return {k: float(v) / rt.world_size for k, v in zip(keys, t.tolist())}


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across processes and runs)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


# ---- checkpoints, RNG, logs ------------------------------------------------------------------------

def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: readers never see a
    partial checkpoint, and a crash mid-write leaves the previous one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise



def save_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """Write a training checkpoint atomically with its ``content_sha256`` (checked on load).

    `ckpt` must hold only tensors, dicts, lists, tuples and primitives, so that
    :func:`load_checkpoint` can read it back with ``weights_only=True``.
    """
    atomic_save({**ckpt, "content_sha256": checkpoint_sha256(ckpt)}, path)

# The only globals (besides torch's own weights-only set) that a format-1 checkpoint needs: it
# pickled numpy's MT19937 state, whose key is a uint32 ndarray. Format 2 stores it as a tensor.
_FORMAT1_NUMPY_GLOBALS: list[Any] = [np._core.multiarray._reconstruct, np.ndarray, np.dtype,
                                     type(np.dtype(np.uint32))]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by this module (CPU tensors), without running pickled code.

    The file is read with ``torch.load(weights_only=True)``: only tensors, containers and
    primitives can be rebuilt, so a file that asks for any other global (``os.system``, ...)
    fails before anything runs. Format-1 files (written before RNG states were stored as
    tensors) are read with an allowlist of exactly the numpy globals a uint32 array needs, and
    their RNG states are converted to the format-2 layout. Format-2 files carry a SHA-256 of
    their content (``content_sha256``, see :func:`checkpoint_sha256`) that is verified here, so
    flipped bytes anywhere in the tensors or values fail; format-1 files have no hash, only
    their structure is checked.

    Raises:
        ValueError: one line naming the file: missing, truncated / corrupt, unsafe content,
            hash mismatch, or not a jepa.train checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:  # a format-1 checkpoint: its numpy RNG state needs the numpy array globals, nothing else
            with torch.serialization.safe_globals(_FORMAT1_NUMPY_GLOBALS):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - reported with the file name
            raise ValueError(f"checkpoint {path} was refused by the weights-only loader (not written by "
                             f"jepa.train, or tampered with): {_load_error_reason(err)}") from None
    except Exception as err:  # noqa: BLE001 - zip/IO errors of truncated or corrupt files
        raise ValueError(f"checkpoint {path} is unreadable (truncated or corrupt?): "
                         f"{_load_error_reason(err)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (1, CHECKPOINT_FORMAT) or "stage" not in ckpt:
        raise ValueError(f"{path} is not a jepa.train checkpoint (format 1 or {CHECKPOINT_FORMAT})")
    if ckpt["format"] == 1:
        return _upgrade_format1(ckpt, path)
    stored = ckpt.pop("content_sha256", None)
    actual = checkpoint_sha256(ckpt)
    if stored != actual:
        raise ValueError(f"checkpoint {path}: content does not match its content_sha256 (stored "
                         f"{str(stored)[:16]}..., computed {actual[:16]}...): the file was corrupted or edited")
    return ckpt


def _load_error_reason(err: BaseException) -> str:
    """The informative line of a torch.load error (its weights-only messages span many lines)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.match(r"(Trying to load unsupported GLOBAL|Unsupported global|Unsupported operand|Can only build"
                     r"|Unsupported class|Unpickler found unsupported)", ln):
            return ln
    keep = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Please file an issue",
                                                          "Check the documentation", "(1)", "(2)"))]
    return (keep[-1] if keep else type(err).__name__)[:300]


def checkpoint_sha256(obj: Any) -> str:
    """SHA-256 (hex) of a checkpoint's content: every key path, tensor dtype / shape / bytes and
    primitive value, dict keys in sorted order. Independent of the zip layout and of pickling."""
    digest = hashlib.sha256()

    def visit(x: Any, key: str) -> None:
        digest.update(key.encode())
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            digest.update(f"D{len(x)}".encode())
            for k in sorted(x, key=lambda k: (type(k).__name__, str(k))):
                visit(x[k], f"{key}/{type(k).__name__}:{k}")
        elif isinstance(x, (list, tuple)):
            digest.update(f"{type(x).__name__}{len(x)}".encode())
            for i, v in enumerate(x):
                visit(v, f"{key}[{i}]")
        elif x is None or isinstance(x, (bool, int, float, str)):
            digest.update(f"{type(x).__name__}={x!r}".encode())
        else:
            raise TypeError(f"checkpoint value at {key or '/'} is a {type(x).__name__}; only tensors, "
                            "containers and primitives can be stored")

    visit(obj, "")
    return digest.hexdigest()


def _upgrade_format1(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """Convert a format-1 checkpoint's RNG states (python / numpy tuples) to the format-2 layout."""
    try:
        ckpt["rng"] = [{**s, "python": _python_state_to_dict(s["python"]),
                        "numpy": _numpy_state_to_dict(s["numpy"])} for s in ckpt["rng"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: malformed format-1 RNG state ({err})") from None
    ckpt["format"] = CHECKPOINT_FORMAT
    return ckpt


def _python_state_to_dict(state: tuple) -> dict[str, Any]:
    """random.getstate() (version, 625 ints, gauss_next) as {version, state LongTensor[625], gauss_next}."""
    version, internal, gauss_next = state
    return {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next)}


def _numpy_state_to_dict(state: tuple) -> dict[str, Any]:
    """np.random.get_state() (name, uint32[624], pos, has_gauss, cached) with the key as a LongTensor."""
    name, key, pos, has_gauss, cached = state
    key = np.asarray(key)
    if name != "MT19937" or key.shape != (624,):
        raise ValueError(f"numpy RNG state {name!r} with key shape {key.shape}; expected MT19937 with 624 words")
    return {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and, if present, every CUDA device), as
    tensors and primitives only (loadable with weights_only=True)."""
    state: dict[str, Any] = {"python": _python_state_to_dict(random.getstate()),
                             "numpy": _numpy_state_to_dict(np.random.get_state()),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    np.random.set_state((npy["bit_generator"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(rt: Runtime) -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (collective under DDP)."""
    mine = rng_state()
    if not rt.distributed:
        return [mine]
    out: list[Any] = [None] * rt.world_size
    dist.all_gather_object(out, mine)
    return out


def restore_rng_states(states: list[dict[str, Any]], rt: Runtime) -> None:
    if len(states) != rt.world_size:
        log.warning("checkpoint holds RNG states of %d ranks, this run has %d: dropout noise will differ "
                    "from an uninterrupted run", len(states), rt.world_size)
    set_rng_state(states[rt.rank % len(states)])


class CsvLog:
    """Append-only CSV of per-step values; on resume, rows after the checkpoint step are dropped
    so that the log matches the restored state exactly."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_step: int | None) -> None:
        self.path, self.columns = Path(path), columns
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                kept = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(columns))
            w.writeheader()
            w.writerows({c: r.get(c, "") for c in columns} for r in kept)
        self._f = open(self.path, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, fieldnames=list(columns))

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({c: _fmt(row.get(c, "")) for c in self.columns})
        self._f.flush()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a training CSV log as float arrays (empty cells -> NaN)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows]) for k in rows[0]}


def plot_log(csv_path: str | Path, png_path: str | Path, columns: tuple[str, ...], title: str) -> None:
    """Plot the given loss columns against step (log y axis, with a moving average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_log(csv_path)
    if not data or len(data["step"]) == 0:
        return
    cols = [c for c in columns if c in data and np.isfinite(data[c]).any()]
    fig, axes = plt.subplots(len(cols), 1, figsize=(7, 2.2 * len(cols)), sharex=True, squeeze=False)
    for ax, c in zip(axes[:, 0], cols):
        y, x = data[c], data["step"]
        ok = np.isfinite(y)
        ax.plot(x[ok], y[ok], lw=0.5, alpha=0.4, color="C0")
        k = max(1, int(ok.sum()) // 50)
        if k > 1:
            smooth = np.convolve(y[ok], np.ones(k) / k, mode="valid")
            ax.plot(x[ok][k - 1:], smooth, lw=1.5, color="C0")
        ax.set_ylabel(c)
        if (y[ok] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


# ---- shared training plumbing -----------------------------------------------------------------------

@dataclass
class TrainArgs:
    """Options common to both stages (see `--help`)."""

    data: str
    out: Path
    steps: int | None = None
    resume: bool = False
    device: str = "auto"
    amp: str = "auto"
    save_every: int = 200
    batch_size: int | None = None
    crop_seconds: float | None = None
    seed: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    data_limit: int | None = None
    progress: bool = True


def _adamw(params: Any, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def _effective_config(cfg: JEPADAAMConfig, stage: str, args: TrainArgs) -> JEPADAAMConfig:
    """Apply the command-line overrides (steps, batch, crop, seed) to the stage's section."""
    section = getattr(cfg, stage)
    changes: dict[str, Any] = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.crop_seconds is not None:
        changes["crop_seconds"] = args.crop_seconds
    if args.seed is not None:
        changes["seed"] = args.seed
    if changes:
        cfg = dataclasses.replace(cfg, **{stage: dataclasses.replace(section, **changes)})
    section = getattr(cfg, stage)
    if section.steps < 1 or section.batch_size < 1:
        raise ValueError(f"{stage}: steps ({section.steps}) and batch_size ({section.batch_size}) must be >= 1")
    return cfg


def _per_rank_batch(global_batch: int, rt: Runtime) -> int:
    if global_batch % rt.world_size:
        raise ValueError(f"global batch_size {global_batch} is not divisible by the {rt.world_size} DDP ranks")
    return global_batch // rt.world_size


def _crop_samples(crop_seconds: float, cfg: JEPADAAMConfig) -> int:
    """Crop length in samples, rounded down to whole hops and at least min_input_samples."""
    hop = cfg.model.hop_length
    n = int(round(crop_seconds * cfg.model.sample_rate)) // hop * hop
    if n < cfg.model.min_input_samples:
        raise ValueError(
            f"crop of {crop_seconds} s gives {n} samples (whole hops of {hop}); the model needs at least "
            f"{cfg.model.min_input_samples} samples ({cfg.model.min_input_samples / cfg.model.sample_rate:.2f} s)"
        )
    return n


def _dataset(args: TrainArgs, section: Any, cfg: JEPADAAMConfig, rt: Runtime) -> CropDataset:
    """Crops for one stage; augmentation settings come from cfg.stage1 (one data pipeline, as in
    the reference code), crop length and seed from `section`."""
    a = cfg.stage1
    aug = Augmentation(gain_p=a.gain_prob, gain_range=tuple(a.gain_range), noise_p=a.noise_prob, noise_std=a.noise_std)
    ds = CropDataset.from_spec(args.data, crop_seconds=_crop_samples(section.crop_seconds, cfg) / cfg.model.sample_rate,
                               seed=section.seed, augment=aug, sample_rate=cfg.model.sample_rate,
                               limit=args.data_limit)
    if rt.is_main:
        log.info("data %s: %d utterances (%d dropped as shorter than the crop), %.1f min, %d crop slots of %d samples",
                 args.data, len(ds.waves), ds.n_dropped, ds.total_samples / cfg.model.sample_rate / 60,
                 len(ds), ds.crop_samples)
    return ds


def _ddp(module: nn.Module, rt: Runtime) -> nn.Module:
    if not rt.distributed:
        return module
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _progress(rt: Runtime, args: TrainArgs, start: int, total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, disable=not (rt.is_main and args.progress),
                dynamic_ncols=True, mininterval=2.0)


def _clip(params: list[torch.nn.Parameter], max_norm: float | None) -> None:
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def _prepare_out(args: TrainArgs, rt: Runtime) -> tuple[Path, dict[str, Any] | None]:
    """Create OUT; return the checkpoint to resume from (or None). Refuses to overwrite a run."""
    out = Path(args.out)
    ckpt_path = out / CHECKPOINT_NAME
    if args.resume:
        if not ckpt_path.is_file():
            raise ValueError(f"--resume: no checkpoint at {ckpt_path}")
        return out, load_checkpoint(ckpt_path)
    if ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists; pass --resume to continue that run or choose another --out")
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(rt)
    return out, None


@dataclass
class _Clock:
    """Wall-clock bookkeeping, carried across resumes."""

    start: float
    previous: float = 0.0

    def total(self) -> float:
        return self.previous + time.time() - self.start


# ---- stage 1 --------------------------------------------------------------------------------------

def train_stage1(cfg: JEPADAAMConfig, args: TrainArgs, rt: Runtime) -> Path:
    """Stage 1: JEPA masked prediction in latent space with an EMA target encoder (spec §4).

    Returns the checkpoint path. The batch is [B, 1, L] crops at 24 kHz (L a whole number of
    hops); masks [B, T_z] come from `jepa.masking.block_mask` with a generator seeded by
    (seed, step, rank).
    """
    from jepa.ema import ema_update
    from jepa.jepa import JEPA
    from jepa.masking import block_mask

    out, ckpt = _prepare_out(args, rt)
    if ckpt is not None:
        if ckpt["stage"] != "stage1":
            raise ValueError(f"{out / CHECKPOINT_NAME} is a {ckpt['stage']} checkpoint, not stage1")
        saved = config_from_dict(ckpt["config"])
        cfg = dataclasses.replace(saved, stage1=dataclasses.replace(saved.stage1, steps=cfg.stage1.steps))
    s1 = cfg.stage1
    torch.manual_seed(s1.seed)
    model = JEPA(cfg.model).to(rt.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _adamw(params, s1.lr, s1.betas, s1.weight_decay)
    scaler = make_scaler(rt)
    step, clock = 0, _Clock(time.time())
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, clock.previous = int(ckpt["step"]), float(ckpt["wall_seconds"])
        restore_rng_states(ckpt["rng"], rt)
    else:
        torch.manual_seed(seed_for(s1.seed, 1, rt.rank))  # dropout noise differs per rank
    ddp_model = _ddp(model, rt)

    ds = _dataset(args, s1, cfg, rt)
    batches = StepBatches(len(ds), _per_rank_batch(s1.batch_size, rt), seed=s1.seed, rank=rt.rank,
                          world_size=rt.world_size)
    n_frames = model.context_encoder.num_frames(ds.crop_samples)
    csv_log = _open_run_folder(out, cfg, rt, STAGE1_COLUMNS, step if ckpt is not None else None)
    if rt.is_main:
        log.info("stage1: %d trainable parameters, crop %d samples -> %d frames, batch %d x %d ranks, steps %d..%d",
                 sum(p.numel() for p in params), ds.crop_samples, n_frames, batches.batch_size, rt.world_size,
                 step, s1.steps)

    def save() -> None:
        states = gather_rng_states(rt)
        if rt.is_main:
            save_checkpoint({"format": CHECKPOINT_FORMAT, "stage": "stage1", "step": step, "config": config_to_dict(cfg),
                         "model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                         "rng": states, "wall_seconds": clock.total(), "world_size": rt.world_size,
                         "data": str(args.data)}, out / CHECKPOINT_NAME)
            csv_log.flush()
            plot_log(out / LOG_NAME, out / PLOT_NAME, ("loss", "pred_std"), f"stage 1 ({cfg.name})")
        barrier(rt)

    bar = _progress(rt, args, step, s1.steps, "stage1")
    model.train()
    model.target_encoder.eval()
    while step < s1.steps:
        t0 = time.time()
        wav = ds.batch(batches.indices(step), draw=step).to(rt.device)
        gen = torch.Generator().manual_seed(seed_for(s1.seed, 2, step, rt.rank))
        visible = block_mask(wav.shape[0], n_frames, gen, mask_ratio=s1.mask_ratio, min_span=s1.min_span)
        with autocast(rt):
            result = ddp_model(wav, visible.to(rt.device))
        loss = result["loss"].float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage1 step {step}: loss is {loss.item()}; stopping (last checkpoint kept)")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if s1.grad_clip is not None:
            scaler.unscale_(opt)
            _clip(params, s1.grad_clip)
        scaler.step(opt)
        scaler.update()
        ema_update(model.target_encoder, model.context_encoder, s1.ema_tau)
        step += 1
        logs = mean_over_ranks({"loss": loss.item(), "pred_std": float(result["pred_std"]),
                                "n_masked": float(result["n_masked"])}, rt)
        if rt.is_main:
            if logs["pred_std"] < s1.pred_std_warn:
                log.warning("stage1 step %d: predictor output std %.4g < %.3g (collapse?)", step,
                            logs["pred_std"], s1.pred_std_warn)
            csv_log.write({"step": step, **logs, "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0})
            bar.set_postfix(loss=f"{logs['loss']:.4f}", std=f"{logs['pred_std']:.3f}", refresh=False)
        bar.update(1)
        if _save_or_stop(step, s1.steps, args, clock, rt, save, "stage1"):
            break
    bar.close()
    if csv_log is not None:
        csv_log.close()
    return out / CHECKPOINT_NAME


def _open_run_folder(out: Path, cfg: JEPADAAMConfig, rt: Runtime, columns: tuple[str, ...],
                     resumed_step: int | None) -> CsvLog | None:
    """On rank 0: write the effective config to OUT/config.json and open OUT/log.csv (continued
    after `resumed_step` when resuming). Other ranks log nothing and get None."""
    if not rt.is_main:
        return None
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(config_to_dict(cfg), f, indent=2)
    return CsvLog(out / LOG_NAME, columns, resumed_step)


def _save_or_stop(step: int, total: int, args: TrainArgs, clock: _Clock, rt: Runtime,
                  save: Callable[[], None], stage: str) -> bool:
    """End of an optimiser step: checkpoint every --save-every steps, at the last step and when
    --max-minutes is spent. True when the loop must stop early (time is up before `total`)."""
    stop = _out_of_time(args, clock, rt)
    if step % args.save_every == 0 or step == total or stop:
        save()
    if stop and step < total:
        log.info("%s: --max-minutes reached at step %d; continue with --resume", stage, step)
        return True
    return False


def _out_of_time(args: TrainArgs, clock: _Clock, rt: Runtime) -> bool:
    """True when --max-minutes is spent (decided on rank 0, broadcast so all ranks agree)."""
    if args.max_minutes is None:
        return False
    flag = torch.tensor([float(clock.total() - clock.previous >= 60.0 * args.max_minutes)])
    if rt.distributed:
        dist.broadcast(flag.to(rt.device), src=0)
    return bool(flag.item())


# ---- stage 2 --------------------------------------------------------------------------------------

def _build_codec(cfg: JEPADAAMConfig, stage1_state: dict[str, torch.Tensor] | None) -> nn.Module:
    """A JEPACodec; its encoder is the stage-1 online encoder when `stage1_state` (a JEPA
    state dict) is given, else freshly initialised (to be overwritten by a codec state dict)."""
    from jepa.codec import JEPACodec
    from jepa.jepa import JEPA

    if stage1_state is None:
        return JEPACodec(cfg)
    jepa = JEPA(cfg.model)
    jepa.load_state_dict(stage1_state, strict=True)
    return JEPACodec.from_stage1(jepa, cfg)


def _scalar(terms: dict[str, torch.Tensor], key: str) -> float:
    """A loss term as a float, NaN when the term is absent (e.g. GAN terms before they start)."""
    return float(terms[key].detach()) if key in terms else math.nan


def _float_outputs(out: tuple[list[torch.Tensor], list[list[torch.Tensor]]]
                   ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Discriminator (logits, features) cast to FP32 for the losses (no-op without AMP)."""
    logits, feats = out
    return [x.float() for x in logits], [[f.float() for f in fs] for fs in feats]


class _Reconstruct(nn.Module):
    """y [B, 1, L] -> y_hat [B, 1, hop*T_z + 384] through encoder, FSQ and decoder.

    With a frozen encoder the encoder and FSQ run under no_grad (their parameters have
    requires_grad False, so DDP only synchronises the decoder).
    """

    def __init__(self, codec: nn.Module, finetune_encoder: bool) -> None:
        super().__init__()
        self.codec = codec
        self.finetune_encoder = finetune_encoder

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with contextlib.nullcontext() if self.finetune_encoder else torch.no_grad():
            z_q, _ = self.codec.fsq(self.codec.encoder(y))
        return self.codec.decoder(z_q)


def train_stage2(cfg: JEPADAAMConfig, args: TrainArgs, rt: Runtime, init_from: str | None) -> Path:
    """Stage 2: FSQ on the (frozen) stage-1 encoder and a HiFi-GAN decoder (spec §7).

    Per step, on crops y [B, 1, L] (L whole hops, T_z = L/hop - 1 frames): z_q = FSQ(E(y));
    y_hat = G(z_q) [B, 1, hop*T_z + 384]; losses use only the first min(L, len(y_hat)) samples
    of both (spec §10 item 8). When step > disc_start_step, the MPD and MSD take one step on
    L_D, then the generator's GAN terms (Adv + FM) join L1 and MR-STFT.
    """
    from jepa.hifigan import (MultiPeriodDiscriminator, MultiResolutionSTFTLoss, MultiScaleDiscriminator,
                              discriminator_loss, generator_loss)

    out, ckpt = _prepare_out(args, rt)
    stage1_state = None
    stage1_summary = None if ckpt is None else ckpt.get("stage1")
    if ckpt is not None:
        if ckpt["stage"] != "stage2":
            raise ValueError(f"{out / CHECKPOINT_NAME} is a {ckpt['stage']} checkpoint, not stage2")
        saved = config_from_dict(ckpt["config"])
        cfg = dataclasses.replace(saved, stage2=dataclasses.replace(saved.stage2, steps=cfg.stage2.steps))
    else:
        if init_from is None:
            raise ValueError("stage2 needs --init-from STAGE1_CHECKPOINT (the stage-1 encoder to quantise)")
        s1_ckpt = load_checkpoint(init_from)
        if s1_ckpt["stage"] != "stage1":
            raise ValueError(f"--init-from {init_from} is a {s1_ckpt['stage']} checkpoint; stage2 needs a stage1 one")
        s1_cfg = config_from_dict(s1_ckpt["config"])
        if s1_cfg.model != cfg.model:
            diff = {k: (getattr(s1_cfg.model, k), getattr(cfg.model, k))
                    for k in config_to_dict(cfg)["model"] if getattr(s1_cfg.model, k) != getattr(cfg.model, k)}
            raise ValueError(f"--config model differs from the stage-1 checkpoint {init_from}: "
                             f"{{name: (stage1, given)}} = {diff}")
        stage1_state = s1_ckpt["model"]
        stage1_summary = stage1_training_summary(s1_ckpt, init_from)
    s2 = cfg.stage2
    m = cfg.model
    torch.manual_seed(s2.seed)
    codec = _build_codec(cfg, stage1_state).to(rt.device)
    mpd = MultiPeriodDiscriminator(m).to(rt.device)
    msd = MultiScaleDiscriminator(m).to(rt.device)
    stft_loss = MultiResolutionSTFTLoss.from_config(s2).to(rt.device)

    encoder, decoder = codec.encoder, codec.decoder
    g_groups: list[dict[str, Any]] = [{"params": list(decoder.parameters()), "lr": s2.lr_g}]
    if s2.finetune_encoder:
        g_groups.append({"params": list(encoder.parameters()), "lr": s2.lr_encoder})
    else:
        encoder.requires_grad_(False)
    g_params = [p for g in g_groups for p in g["params"]]
    d_params = list(mpd.parameters()) + list(msd.parameters())
    opt_g = torch.optim.AdamW(g_groups, betas=tuple(s2.betas), weight_decay=s2.weight_decay)
    opt_d = _adamw(d_params, s2.lr_d, s2.betas, s2.weight_decay)
    scaler_g, scaler_d = make_scaler(rt), make_scaler(rt)
    step, clock = 0, _Clock(time.time())
    if ckpt is not None:
        codec.load_state_dict(ckpt["codec"])
        mpd.load_state_dict(ckpt["mpd"])
        msd.load_state_dict(ckpt["msd"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        scaler_g.load_state_dict(ckpt["scaler_g"])
        scaler_d.load_state_dict(ckpt["scaler_d"])
        step, clock.previous = int(ckpt["step"]), float(ckpt["wall_seconds"])
        restore_rng_states(ckpt["rng"], rt)
    else:
        torch.manual_seed(seed_for(s2.seed, 1, rt.rank))
    g_module = _ddp(_Reconstruct(codec, s2.finetune_encoder), rt)
    mpd_ddp, msd_ddp = _ddp(mpd, rt), _ddp(msd, rt)

    ds = _dataset(args, s2, cfg, rt)
    batches = StepBatches(len(ds), _per_rank_batch(s2.batch_size, rt), seed=s2.seed, rank=rt.rank,
                          world_size=rt.world_size)
    csv_log = _open_run_folder(out, cfg, rt, STAGE2_COLUMNS, step if ckpt is not None else None)
    if rt.is_main:
        log.info("stage2: %d trainable generator parameters (encoder %s), %d discriminator parameters, crop %d "
                 "samples, batch %d x %d ranks, steps %d..%d", sum(p.numel() for p in g_params),
                 "fine-tuned" if s2.finetune_encoder else "frozen", sum(p.numel() for p in d_params),
                 ds.crop_samples, batches.batch_size, rt.world_size, step, s2.steps)

    def save() -> None:
        states = gather_rng_states(rt)
        if rt.is_main:
            save_checkpoint({"format": CHECKPOINT_FORMAT, "stage": "stage2", "step": step, "config": config_to_dict(cfg),
                         "codec": codec.state_dict(), "mpd": mpd.state_dict(), "msd": msd.state_dict(),
                         "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                         "scaler_g": scaler_g.state_dict(), "scaler_d": scaler_d.state_dict(), "rng": states,
                         "wall_seconds": clock.total(), "world_size": rt.world_size, "data": str(args.data),
                         "init_from": init_from if ckpt is None else ckpt.get("init_from"),
                         "stage1": stage1_summary}, out / CHECKPOINT_NAME)
            csv_log.flush()
            plot_log(out / LOG_NAME, out / PLOT_NAME, ("loss_g", "l1", "stft", "adv", "fm", "loss_d"),
                     f"stage 2 ({cfg.name})")
        barrier(rt)

    bar = _progress(rt, args, step, s2.steps, "stage2")
    decoder.train()
    mpd.train()
    msd.train()
    if s2.finetune_encoder:
        encoder.train()
    else:
        encoder.eval()
    while step < s2.steps:
        t0 = time.time()
        disc_active = step + 1 > s2.disc_start_step
        gan_active = disc_active or s2.gan_from_step0
        y_full = ds.batch(batches.indices(step), draw=step).to(rt.device)
        with autocast(rt):
            y_hat = g_module(y_full)
        n = min(y_full.shape[-1], y_hat.shape[-1])
        y, y_hat = y_full[..., :n], y_hat[..., :n].float()

        loss_d = torch.zeros((), device=rt.device)
        if disc_active:
            with autocast(rt):
                r_mpd = mpd_ddp(torch.cat([y, y_hat.detach()]))[0]
                r_msd = msd_ddp(torch.cat([y, y_hat.detach()]))[0]
            b = y.shape[0]
            loss_d = discriminator_loss([o[:b].float() for o in r_mpd], [o[b:].float() for o in r_mpd]) + \
                discriminator_loss([o[:b].float() for o in r_msd], [o[b:].float() for o in r_msd])
            opt_d.zero_grad(set_to_none=True)
            scaler_d.scale(loss_d).backward()
            if s2.grad_clip is not None:
                scaler_d.unscale_(opt_d)
                _clip(d_params, s2.grad_clip)
            scaler_d.step(opt_d)
            scaler_d.update()

        disc_out: dict[str, Any] = {}
        if gan_active:
            for key, d, d_ddp in (("mpd", mpd, mpd_ddp), ("msd", msd, msd_ddp)):
                with torch.no_grad(), autocast(rt):
                    disc_out[f"{key}_real"] = _float_outputs(d(y))
                with autocast(rt):
                    disc_out[f"{key}_fake"] = _float_outputs(d_ddp(y_hat))
        terms = generator_loss(y_hat, y, stft_loss, s2, **disc_out)
        loss_g = terms["loss"]
        if not torch.isfinite(loss_g):
            raise FloatingPointError(f"stage2 step {step}: generator loss is {loss_g.item()}; stopping "
                                     "(last checkpoint kept)")
        opt_g.zero_grad(set_to_none=True)
        scaler_g.scale(loss_g).backward()
        if s2.grad_clip is not None:
            scaler_g.unscale_(opt_g)
            _clip(g_params, s2.grad_clip)
        scaler_g.step(opt_g)
        scaler_g.update()
        # The generator backward also filled discriminator grads; they are cleared before the next D step.
        step += 1
        logs = mean_over_ranks({"loss_g": loss_g.item(), "l1": terms["l1"].item(), "stft": terms["stft"].item(),
                                "adv": _scalar(terms, "adv"), "fm": _scalar(terms, "fm"),
                                "loss_d": loss_d.item() if disc_active else math.nan}, rt)
        if rt.is_main:
            csv_log.write({"step": step, **logs, "gan_active": int(gan_active), "seconds": time.time() - t0})
            bar.set_postfix(l1=f"{logs['l1']:.4f}", stft=f"{logs['stft']:.3f}", d=f"{logs['loss_d']:.3f}",
                            refresh=False)
        bar.update(1)
        if _save_or_stop(step, s2.steps, args, clock, rt, save, "stage2"):
            break
    bar.close()
    if csv_log is not None:
        csv_log.close()
    return out / CHECKPOINT_NAME


# ---- export ---------------------------------------------------------------------------------------

TRAINING_METADATA_KEY = "training"


def stage1_training_summary(s1_ckpt: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """What a stage-1 checkpoint was trained for: steps done / requested, wall seconds, data."""
    return {"steps_done": int(s1_ckpt["step"]),
            "steps_requested": int(config_from_dict(s1_ckpt["config"]).stage1.steps),
            "wall_seconds": float(s1_ckpt["wall_seconds"]), "world_size": int(s1_ckpt.get("world_size", 1)),
            "data": s1_ckpt.get("data"), "checkpoint": str(source)}


def training_summary(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The training actually done for a stage-2 checkpoint (not the config's requested steps).

    Returns ``{"stage1": {...}, "stage2": {...}}`` with ``steps_done``, ``steps_requested``,
    ``wall_seconds`` (summed over resumes), ``world_size`` and ``data`` per stage. Stage-2
    checkpoints written before this summary existed do not hold the stage-1 part; it is then
    read from their ``init_from`` file if that still exists (``"source": "init_from at
    export"``, which is only right if that file was not trained further since), else the
    stage-1 values are null with a ``reason``.
    """
    cfg = config_from_dict(ckpt["config"])
    stage1 = ckpt.get("stage1")
    if stage1 is not None:
        stage1 = {**stage1, "source": "stage-2 checkpoint"}
    else:
        init_from = ckpt.get("init_from")
        try:
            stage1 = {**stage1_training_summary(load_checkpoint(init_from), init_from), "source": "init_from at export"}
        except (ValueError, TypeError, KeyError) as err:
            stage1 = {"steps_done": None, "steps_requested": None, "wall_seconds": None, "checkpoint": init_from,
                      "reason": f"the stage-2 checkpoint predates the stage-1 summary and its init_from is "
                                f"unreadable: {err}"}
    return {"stage1": stage1,
            "stage2": {"steps_done": int(ckpt["step"]), "steps_requested": int(cfg.stage2.steps),
                       "wall_seconds": float(ckpt["wall_seconds"]), "world_size": int(ckpt.get("world_size", 1)),
                       "data": ckpt.get("data"), "finetune_encoder": bool(cfg.stage2.finetune_encoder)}}


def export_codec(stage2_ckpt: str | Path, out: str | Path) -> Path:
    """Write the inference checkpoint of a stage-2 training checkpoint. Returns `out`.

    The file is what ``JEPACodec.save`` writes (safetensors + config metadata, read by
    ``JEPACodec.load``) plus one metadata entry, ``training``: the JSON of
    :func:`training_summary` (steps actually trained in both stages, wall time). The config
    entry keeps the requested step counts. Written atomically (temporary file + os.replace).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    ckpt = load_checkpoint(stage2_ckpt)
    if ckpt["stage"] != "stage2":
        raise ValueError(f"{stage2_ckpt} is a {ckpt['stage']} checkpoint; export needs a stage2 one")
    cfg = config_from_dict(ckpt["config"])
    codec = _build_codec(cfg, None)
    codec.load_state_dict(ckpt["codec"], strict=True)
    codec.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        plain, final = Path(tmp) / "codec.safetensors", Path(tmp) / "final.safetensors"
        codec.save(plain)
        with safe_open(str(plain), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        if TRAINING_METADATA_KEY in metadata:
            raise ValueError(f"JEPACodec.save already writes a {TRAINING_METADATA_KEY!r} metadata entry")
        metadata[TRAINING_METADATA_KEY] = json.dumps(training_summary(ckpt))
        save_file(load_file(str(plain)), str(final), metadata=metadata)
        os.replace(final, out)
    return out


# ---- command line ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jepa.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for stage in ("stage1", "stage2"):
        s = sub.add_parser(stage, help=f"train {stage}")
        s.add_argument("--config", default="small", help="preset name (small, paper, small_no_daam) or YAML/JSON path")
        s.add_argument("--data", required=True, help="TSV/JSONL manifest, LibriSpeech folder or folder of audio")
        s.add_argument("--out", required=True, type=Path, help="run folder (checkpoint.pt, log.csv, loss.png)")
        s.add_argument("--steps", type=int, help="total optimiser steps (default: the config's)")
        s.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
        s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        s.add_argument("--amp", default="auto", help="auto | bf16 | fp16 | off (CUDA only)")
        s.add_argument("--save-every", type=int, default=200, help="checkpoint period in steps")
        s.add_argument("--batch-size", type=int, help="global batch (default: the config's)")
        s.add_argument("--crop-seconds", type=float, help="crop length (default: the config's)")
        s.add_argument("--seed", type=int, help="seed (default: the config's)")
        s.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
        s.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
        s.add_argument("--data-limit", type=int, help="use only the first N utterances")
        s.add_argument("--no-progress", action="store_true", help="no tqdm bar")
        if stage == "stage2":
            s.add_argument("--init-from", help="stage-1 checkpoint.pt whose online encoder is quantised")
            s.add_argument("--finetune-encoder", action="store_true", help="train the encoder too (spec §7.5)")
            s.add_argument("--gan-from-step0", action="store_true", help="reference behaviour (spec §10 item 11)")
            s.add_argument("--disc-start-step", type=int,
                           help="discriminators train when step > this (default: the config's)")
    e = sub.add_parser("export", help="stage-2 checkpoint -> JEPACodec safetensors")
    e.add_argument("checkpoint")
    e.add_argument("output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "export":
        path = export_codec(args.checkpoint, args.output)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_config(args.config)
    if args.command == "stage2":
        s2 = cfg.stage2
        cfg = dataclasses.replace(cfg, stage2=dataclasses.replace(
            s2, finetune_encoder=s2.finetune_encoder or args.finetune_encoder,
            gan_from_step0=s2.gan_from_step0 or args.gan_from_step0,
            disc_start_step=s2.disc_start_step if args.disc_start_step is None else args.disc_start_step))
    targs = TrainArgs(data=args.data, out=args.out, steps=args.steps, resume=args.resume, device=args.device,
                      amp=args.amp, save_every=args.save_every, batch_size=args.batch_size,
                      crop_seconds=args.crop_seconds, seed=args.seed, max_minutes=args.max_minutes,
                      threads=args.threads, data_limit=args.data_limit, progress=not args.no_progress)
    cfg = _effective_config(cfg, args.command, targs)
    rt = setup_runtime(args.device, args.amp)
    if not rt.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.command == "stage1":
            path = train_stage1(cfg, targs, rt)
        else:
            path = train_stage2(cfg, targs, rt, args.init_from)
        if rt.is_main:
            print(f"checkpoint: {path}")
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
