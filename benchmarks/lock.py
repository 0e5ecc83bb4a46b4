"""One run at a time per run folder: an exclusive lock on ``OUT/run.lock``.

Two runs writing the same ``results.jsonl`` duplicate rows, and a ``--force`` run would move the
file away from under the other. :class:`RunLock` takes an exclusive, non-blocking ``flock`` on
``OUT/run.lock`` before anything in the folder is touched and holds it until the run ends; the
file records the holder (pid, host, start time, command line). A second run finds the lock held
and raises :class:`LockHeld` (a UserError: one ``error:`` line, exit 2) naming the holder.

The kernel drops a ``flock`` when its process dies (``kill -9`` included), so a lock file left
by a dead run is simply taken over; :attr:`RunLock.previous` then describes the dead holder.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from benchmarks.runconfig import UserError

LOCK_FILE = "run.lock"


class LockHeld(UserError):
    """Another live process holds the run folder's lock."""


def describe(holder: dict[str, Any]) -> str:
    """``pid 123 on host, started 2026-01-01T00:00:00+00:00`` from a lock file's record."""
    if not holder:
        return "an unknown process (the lock file is empty)"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


class RunLock:
    """Exclusive lock on a run folder, held from :meth:`acquire` (or ``with``) until :meth:`release`.

    Args:
        folder: the run folder (created if missing).

    Attributes:
        previous: the record left by an earlier holder that is gone (a stale lock taken over),
            else None.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd = -1
        self.previous: dict[str, Any] | None = None

    def _read(self, fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 1 << 16)
        try:
            record = json.loads(data.decode("utf-8")) if data.strip() else {}
        except (ValueError, UnicodeDecodeError):
            record = {"pid": "?", "host": "?", "started": f"? (unreadable lock file {self.path})"}
        return record if isinstance(record, dict) else {}

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`LockHeld` naming the holder (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise LockHeld(f"run folder {self.path.parent} is in use by another run ({describe(holder)}); "
                           f"wait for it to finish or use another --out") from None
        previous = self._read(fd)
        self.previous = previous or None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the record and drop the lock (idempotent); the file stays for the next run."""
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing the descriptor drops the flock
                self._fd = -1

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
