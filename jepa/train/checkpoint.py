"""Training checkpoints: atomic writes, safe loading, content hash, RNG states.

A checkpoint (``OUT/checkpoint.pt``) is a dict of tensors, containers and primitives only, so it
loads with ``torch.load(weights_only=True)``. Format 2 (written now) stores the RNG states as
tensors and carries a ``content_sha256`` of its whole content; format 1 (older files) pickled
numpy's RNG state and is upgraded on load.
"""
from __future__ import annotations

import logging
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from audiocore.atomic import atomic_open
from audiocore.hashing import tree_sha256
from jepa.train.runtime import Runtime

log = logging.getLogger("jepa.train")

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 2  # 1: RNG states pickled as python/numpy objects; 2: tensors + content_sha256

checkpoint_sha256 = tree_sha256
"""SHA-256 (hex) of a checkpoint's content: every key path, tensor dtype / shape / bytes and
primitive value, dict keys in sorted order. Independent of the zip layout and of pickling."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: readers never see a
    partial checkpoint, and a crash mid-write leaves the previous one intact."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write a training checkpoint atomically with its ``content_sha256`` (checked on load).

    `ckpt` must hold only tensors, dicts, lists, tuples and primitives, so that
    :func:`load_checkpoint` can read it back with ``weights_only=True``.
    """
    atomic_save({**ckpt, "content_sha256": checkpoint_sha256(ckpt)}, path)


# The only globals (besides torch's own weights-only set) that a format-1 checkpoint needs: it
# pickled numpy's MT19937 state, whose key is a uint32 ndarray. Format 2 stores it as a tensor.
# numpy >= 2 names the module numpy._core, numpy 1.x numpy.core.
_NP_CORE = getattr(np, "_core", None) or np.core
_FORMAT1_NUMPY_GLOBALS: list[Any] = [_NP_CORE.multiarray._reconstruct, np.ndarray, np.dtype,
                                     type(np.dtype(np.uint32))]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by this package (CPU tensors), without running pickled code.

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


def _upgrade_format1(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """Convert a format-1 checkpoint's RNG states (python / numpy tuples) to the format-2 layout."""
    try:
        ckpt["rng"] = [{**s, "python": _python_state_to_dict(s["python"]),
                        "numpy": _numpy_state_to_dict(s["numpy"])} for s in ckpt["rng"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: malformed format-1 RNG state ({err})") from None
    ckpt["format"] = CHECKPOINT_FORMAT
    return ckpt


# ---- RNG states ---------------------------------------------------------------------------------

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
    """Set this rank's RNG state from a checkpoint's per-rank list."""
    if len(states) != rt.world_size:
        log.warning("checkpoint holds RNG states of %d ranks, this run has %d: dropout noise will differ "
                    "from an uninterrupted run", len(states), rt.world_size)
    set_rng_state(states[rt.rank % len(states)])
