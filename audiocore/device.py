"""Device names -> ``torch.device``: the one place where ``"auto"`` is resolved.

Accepted names: ``"auto"`` (``cuda`` when torch sees a CUDA device, else ``cpu``), ``"cpu"``,
``"cuda"`` and ``"cuda:N"`` (or a ``torch.device`` of those types).
"""
from __future__ import annotations

import re

import torch

__all__ = ["VALID_DEVICES", "resolve_device"]

#: How the valid device names are listed in error messages.
VALID_DEVICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device = "auto", *, local_rank: int | None = None,
                   check_available: bool = True) -> torch.device:
    """Resolve a device name.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        local_rank: under ``torchrun``, the process's local rank: a bare ``"cuda"`` becomes
            ``cuda:<local_rank>``. None keeps ``"cuda"`` without an index.
        check_available: raise when a CUDA device is named but torch sees none.

    Returns:
        the ``torch.device``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), or CUDA named on a
            machine (or torch build) without it.
    """
    text = str(name).strip()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise ValueError(f"invalid device {str(name)!r}: use {VALID_DEVICES}")
    if text.startswith("cuda"):
        if check_available and not torch.cuda.is_available():
            raise ValueError(f"device {text}: this torch build ({torch.__version__}) sees no CUDA device; "
                             f"use cpu, or install a CUDA build of torch")
        if text == "cuda" and local_rank is not None:
            text = f"cuda:{local_rank}"
    return torch.device(text)
