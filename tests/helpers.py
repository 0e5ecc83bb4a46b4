"""Helpers shared by several test files (import as ``from helpers import ...``, like the other
sibling test modules): subsets of the shared-data manifests, and randomly initialised
``transformers`` speech models saved the way the loaders expect a weights folder."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

#: The transformer size of the fast tests' shrunken models (the conv front end stays full size).
TINY_TRANSFORMER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def manifest_subset(src: Path, dst: Path, rows: slice) -> Path:
    """Write the rows ``rows`` of the shared-data manifest ``src`` to ``dst``, with absolute audio
    paths (no audio copied); returns ``dst``."""
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        picked = list(reader)[rows]
        fields = reader.fieldnames
    for r in picked:
        r["path"] = str((src.parent / r["path"]).resolve())
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter="\t", quoting=csv.QUOTE_NONE)
        w.writeheader()
        w.writerows(picked)
    return dst


def random_model(model_cls: type, config_cls: type, tiny: bool, full: dict[str, Any] | None = None,
                 tiny_extra: dict[str, Any] | None = None, **config: Any) -> Any:
    """``model_cls(config_cls(**config, **size))`` with random weights (seed 0), in eval mode.

    ``size`` is ``full`` (default: the config class's defaults) or, when ``tiny``,
    :data:`TINY_TRANSFORMER` plus ``tiny_extra``."""
    import torch

    size = {**TINY_TRANSFORMER, **(tiny_extra or {})} if tiny else dict(full or {})
    cfg = config_cls(**config, **size)
    torch.manual_seed(0)
    return model_cls(cfg).eval()


def save_random_model(model: Any, root: Path, repo_id: str, **feature_extractor: Any) -> Path:
    """Save ``model`` and a 16 kHz mono ``Wav2Vec2FeatureExtractor(**feature_extractor)`` as the
    weights folder ``root/repo_id``; returns the folder."""
    from transformers import Wav2Vec2FeatureExtractor

    folder = root / repo_id
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, **feature_extractor).save_pretrained(folder)
    return folder


class CrashingUtterance:
    """An utterance whose file path kills the process that reads it, when that process is a
    worker (not the test itself): a stand-in for a native crash of a codec or metric library.
    Importable by spawned worker processes (they get the test's ``sys.path``)."""

    def __init__(self, utt: Any) -> None:
        self._utt = utt
        self.id, self.set, self.duration_s = utt.id, utt.set, utt.duration_s

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # unpickling looks up __setstate__ before _utt exists
            raise AttributeError(name)
        return getattr(self._utt, name)

    @property
    def path(self) -> Any:
        import multiprocessing
        import os
        import signal

        if multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return self._utt.path
