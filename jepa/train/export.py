"""Stage-2 training checkpoint -> inference checkpoint (``JEPACodec`` safetensors) with a
``training`` metadata entry: the steps actually trained in both stages and their wall time."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from audiocore.atomic import atomic_write_bytes
from jepa.config import config_from_dict
from jepa.train.checkpoint import load_checkpoint
from jepa.train.stage2 import build_codec, stage1_training_summary

TRAINING_METADATA_KEY = "training"


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
    entry keeps the requested step counts. Written atomically (``audiocore.atomic``).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    ckpt = load_checkpoint(stage2_ckpt)
    if ckpt["stage"] != "stage2":
        raise ValueError(f"{stage2_ckpt} is a {ckpt['stage']} checkpoint; export needs a stage2 one")
    cfg = config_from_dict(ckpt["config"])
    codec = build_codec(cfg, None)
    codec.load_state_dict(ckpt["codec"], strict=True)
    codec.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        plain = Path(tmp) / "codec.safetensors"
        codec.save(plain)
        with safe_open(str(plain), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        if TRAINING_METADATA_KEY in metadata:
            raise ValueError(f"JEPACodec.save already writes a {TRAINING_METADATA_KEY!r} metadata entry")
        metadata[TRAINING_METADATA_KEY] = json.dumps(training_summary(ckpt))
        atomic_write_bytes(out, save(load_file(str(plain)), metadata=metadata))
    return out
