"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file.

Every write goes to a temporary file in the destination's folder (``.<name>.<random>.tmp``), is
flushed and fsync'ed, then moved over the destination with ``os.replace`` (atomic on POSIX and
Windows), and the folder is fsync'ed so the rename survives a power loss. If anything fails
before the rename, the temporary file is removed and the destination is untouched.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder so that a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block ends without error.

    Args:
        path: destination; its parent folders are created.
        mode: ``"wb"`` (binary) or ``"w"`` (text).
        encoding, newline: for text mode, as in :func:`open`.

    Yields:
        the open temporary file.

    Example::

        with atomic_open(out, "wb") as f:
            torch.save(obj, f)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, with no newline translation."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
