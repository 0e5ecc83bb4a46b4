"""SHA-256 digests used across the project: of files, of tensors, and of nested checkpoints.

Every digest is the hex SHA-256 (64 characters); callers that need a short identifier take a
prefix (``file_sha256(p)[:16]``). The tensor digests read each tensor's raw bytes on the CPU, so
they identify the values exactly (a flipped bit changes the digest) and do not depend on how a
file lays the tensors out.

* :func:`file_sha256` -- a file's bytes, read in bounded chunks (constant memory);
* :func:`state_dict_sha256` -- a flat ``{name: tensor}`` mapping (model weights), names sorted;
  stored as ``content_sha256`` in ``JEPACodec`` safetensors files;
* :func:`tree_sha256` -- a nested structure of tensors, dicts, lists and primitives (a training
  checkpoint), stored as ``content_sha256`` in ``jepa.train`` checkpoints.

The byte layouts of the two tensor digests differ and must stay as they are: files written
earlier carry digests computed with them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: hashing files needs no torch
    import torch

__all__ = ["CHUNK_BYTES", "file_sha256", "state_dict_sha256", "tensor_bytes", "tree_sha256"]

#: Bytes read per call when hashing a file (1 MiB).
CHUNK_BYTES = 1 << 20


def file_sha256(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks of ``chunk_bytes``.

    Raises:
        OSError: the file is missing or unreadable (``FileNotFoundError``, ``IsADirectoryError``...).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def tensor_bytes(t: "torch.Tensor") -> bytes:
    """The raw bytes of a tensor's values (detached, on the CPU, contiguous, row-major)."""
    import torch

    t = t.detach().to("cpu").contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def state_dict_sha256(state: "dict[str, torch.Tensor]") -> str:
    """Hex SHA-256 over every tensor's name, dtype, shape and raw bytes, names in sorted order.

    Args:
        state: flat mapping of tensor name -> tensor (a ``state_dict``).
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        digest.update(tensor_bytes(t))
    return digest.hexdigest()


def tree_sha256(obj: Any) -> str:
    """Hex SHA-256 of a nested structure: every key path, tensor dtype / shape / bytes and
    primitive value, dict keys in sorted order. Independent of pickling and zip layout.

    Args:
        obj: tensors, dicts, lists, tuples, None, bool, int, float and str, nested.

    Raises:
        TypeError: a value of another type, naming its key path.
    """
    import torch

    digest = hashlib.sha256()

    def visit(x: Any, key: str) -> None:
        digest.update(key.encode())
        if isinstance(x, torch.Tensor):
            digest.update(f"T{x.dtype}{tuple(x.shape)}".encode())
            digest.update(tensor_bytes(x))
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
