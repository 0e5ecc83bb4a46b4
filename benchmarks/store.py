"""Crash-safe storage for benchmark runs: the results log, atomic JSON files and the cache.

Three kinds of state, each written so that a run killed at any instant (SIGKILL, power loss)
leaves nothing half-written that a later run could misread:

* ``results.jsonl`` — append-only, one JSON object per line. Each row is serialised first and
  written with a single ``os.write`` of the whole line, then fsync'ed. A reader
  (:func:`load_rows`) drops a trailing line without its newline (the only thing a crash can
  leave) and reports how many it dropped.
* ``manifest.json``, ``skipped.json`` and token files — written to a temporary file in the same
  folder and moved into place with ``os.replace`` (atomic on POSIX and Windows).
* :class:`ResultCache` — a content-addressed cache of reconstructions and metric values under a
  cache folder shared by all runs (default ``~/.cache/jepa-daam/cache``). Keys are SHA-256 digests
  of everything that determines the value (see :func:`cache_key`), so a change in the codec
  setting, its weights, the utterance audio or the code gives a new key: stale entries are never
  reused, only orphaned.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from audiocore.atomic import atomic_write_bytes

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"
SKIPPED_FILE = "skipped.json"


def default_cache_dir() -> Path:
    """The cache folder used when ``--cache-dir`` is not given.

    ``$XDG_CACHE_HOME/jepa-daam/cache`` when that variable is set, else ``~/.cache/jepa-daam/cache``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jepa-daam" / "cache"


# --------------------------------------------------------------------------------------------
# JSON helpers


def _json_default(obj: Any) -> Any:
    """Make numpy scalars, arrays and paths JSON-serialisable."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON: {obj!r}")


def dumps_row(row: Mapping[str, Any]) -> str:
    """Serialise one results row to a single JSON line (no newline inside, NaN kept as ``NaN``).

    Python's json writes float NaN as the bare token ``NaN``, which ``json.loads`` and
    ``pandas.read_json`` read back as NaN; infinities likewise.
    """
    return json.dumps(dict(row), default=_json_default, ensure_ascii=False, allow_nan=True)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    text = json.dumps(obj, default=_json_default, ensure_ascii=False, indent=2, allow_nan=True)
    atomic_write_bytes(Path(path), (text + "\n").encode("utf-8"))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save one numpy array to ``path`` (``.npy`` format) atomically."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_npy(path: Path) -> np.ndarray:
    """Load an array written by :func:`atomic_save_npy` (pickles refused)."""
    return np.load(Path(path), allow_pickle=False)


# --------------------------------------------------------------------------------------------
# results.jsonl


def row_key(row: Mapping[str, Any]) -> tuple[str, str]:
    """The identity of a results row: ``(codec, utt_id)``."""
    return (str(row["codec"]), str(row["utt_id"]))


def _truncate_partial_line(path: Path) -> int:
    """Cut an incomplete last line (no trailing newline) off ``path``; returns bytes removed."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        pos = size
        block = 1 << 16
        while pos > 0:  # scan backwards for the last newline
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        return size - keep


class ResultsWriter:
    """Append-only writer of ``results.jsonl`` with whole-line atomic appends.

    Each :meth:`append` serialises the row, encodes it with its newline, and hands the complete
    line to one ``os.write`` on a file opened with ``O_APPEND``, followed by ``fsync``. A crash
    can therefore leave at most one incomplete *last* line, which :func:`load_rows` drops.
    If the existing file ends in such a line (a previous run was killed mid-write), it is cut
    off when the writer opens the file, so new rows start on a line of their own and every
    line of the file stays a complete JSON object.

    Attributes:
        dropped_partial: bytes of an incomplete last line removed on opening (0 normally).

    Args:
        path: the ``results.jsonl`` file (created with its folder if missing).
        fsync: fsync after every row (default True; turn off only for throw-away runs).
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.dropped_partial = _truncate_partial_line(self.path)

    def _write_all(self, data: bytes) -> None:
        """One ``os.write`` for the whole line; loop only if the OS reports a short write."""
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self._fsync:
            os.fsync(self._fd)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row as a single JSON line (see class docstring for the guarantees)."""
        line = dumps_row(row)
        if "\n" in line:  # json.dumps escapes newlines inside strings; this would be a bug
            raise ValueError(f"results row for {row_key(row)} serialised to more than one line")
        self._write_all((line + "\n").encode("utf-8"))

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LoadReport:
    """What :func:`read_rows` found besides the rows.

    Attributes:
        n_lines: complete lines read.
        dropped_partial: 1 if the file ended in an incomplete line (a crash mid-write), else 0.
        bad_lines: 1-based numbers of complete lines that were not valid JSON objects.
        duplicates: rows replaced by a later row with the same (codec, utt_id).
    """

    n_lines: int
    dropped_partial: int
    bad_lines: tuple[int, ...]
    duplicates: int


def _iter_complete_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """Yield (line number, line bytes without newline, complete?) for each line of ``path``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            complete = raw.endswith(b"\n")
            yield lineno, raw.rstrip(b"\r\n"), complete


def read_rows(path: Path) -> tuple[list[dict[str, Any]], LoadReport]:
    """Read ``results.jsonl``, keeping the last row for each (codec, utt_id).

    A final line without a trailing newline is an interrupted append and is dropped (it is
    never parsed, even when it happens to be valid JSON, because its write was not complete).
    Complete lines that are not valid JSON objects are skipped and reported; :class:`ResultsWriter`
    never produces them (it cuts a crash's partial line off before appending), so they mean the
    file was edited by hand or written by another program.

    Args:
        path: a ``results.jsonl`` file, or a run folder that holds one. Missing -> no rows.

    Returns:
        (rows in first-seen order of their key, :class:`LoadReport`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        return [], LoadReport(0, 0, (), 0)
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    bad: list[int] = []
    n_lines = dropped = duplicates = 0
    for lineno, raw, complete in _iter_complete_lines(path):
        if not complete:
            dropped = 1
            break
        n_lines += 1
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
            key = row_key(row)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad.append(lineno)
            continue
        if key in by_key:
            duplicates += 1
        by_key[key] = row
    return list(by_key.values()), LoadReport(n_lines, dropped, tuple(bad), duplicates)


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``results.jsonl`` (or of a run folder); see :func:`read_rows` for the rules."""
    return read_rows(path)[0]


def finished_keys(rows: Iterable[Mapping[str, Any]],
                  is_complete: Callable[[Mapping[str, Any]], bool] | None = None) -> set[tuple[str, str]]:
    """(codec, utt_id) pairs whose work is done and need not be recomputed on resume.

    A row counts as finished when its status is ``error`` (errors are properties of the input:
    recomputing gives the same error) unless the row says ``error_transient`` (a fault of the
    cache or the environment, redone), or ``ok`` and ``is_complete(row)`` holds. ``is_complete``
    lets a resumed run redo rows that lack a metric now asked for, e.g. WER when ASR is switched
    on after a ``--no-asr`` run (the reconstruction then comes from the cache).
    """
    done: set[tuple[str, str]] = set()
    for row in rows:
        status = row.get("status")
        if (status == "error" and not row.get("error_transient")) or \
                (status == "ok" and (is_complete is None or is_complete(row))):
            done.add(row_key(row))
    return done


# --------------------------------------------------------------------------------------------
# checksums and the content-addressed cache


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (sorted keys): the cache address.

    Pass every input that determines the cached value, e.g. codec spec, weights hash,
    utterance audio checksum, code version, resampler, device.
    """
    text = json.dumps(parts, sort_keys=True, default=_json_default, ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One cached item: a JSON dict of values and optional named arrays.

    Attributes:
        values: the JSON-serialisable metadata / metric values stored with the entry.
        arrays: named numpy arrays (e.g. ``wav16k`` float32 [T], ``codes`` int64 [S, N]).
    """

    values: dict[str, Any]
    arrays: dict[str, np.ndarray]


class CacheError(OSError):
    """The cache could not be written (``--cache-dir`` unusable, disk full, permissions): a fault
    of the environment, not of the input, so a row that failed with it is redone on resume."""


class ResultCache:
    """Content-addressed store under ``root/<kind>/<key[:2]>/<key>.npz``.

    Each entry is one ``.npz`` file holding the named arrays plus the JSON values (stored as a
    UTF-8 byte array under ``__values__``), written atomically, so an entry is either complete
    or absent. Entries are never updated in place: a different input gives a different key.

    Every entry also stores its own ``kind`` and ``key``; :meth:`get` checks them (an entry copied
    or swapped to another address is refused) and runs the caller's ``check`` of the values
    (ranges, shapes). A refused entry is a miss, counted in :attr:`invalid` with its reason in
    :attr:`invalid_reasons`, and the value is recomputed and rewritten by the caller.

    Args:
        root: cache folder (created on first write).
        read: False makes every :meth:`get` a miss (``--force``: recompute and overwrite).
    """

    _VALUES = "__values__"
    _ADDRESS = "__address__"

    def __init__(self, root: Path, read: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.read = read
        self.hits = 0
        self.misses = 0
        self.invalid = 0
        self.invalid_reasons: list[str] = []

    def _path(self, kind: str, key: str) -> Path:
        if not kind.isidentifier() or len(key) != 64:
            raise ValueError(f"bad cache address kind={kind!r} key={key!r}: expected a name and a sha256 hex key")
        return self.root / kind / key[:2] / f"{key}.npz"

    def get(self, kind: str, key: str,
            check: Callable[[dict[str, Any], dict[str, np.ndarray]], str | None] | None = None) -> CacheEntry | None:
        """The entry at (kind, key), or None (missing, unreadable, or reads disabled).

        Args:
            check: called with (values, arrays) of a readable entry; returns None when they are
                plausible, else the reason they are not (the entry is then a counted miss).
        """
        path = self._path(kind, key)
        if not self.read or not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            values = json.loads(arrays.pop(self._VALUES).tobytes().decode("utf-8"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: a miss
            self.misses += 1
            return None
        reason = None
        if not isinstance(values, dict):
            reason = "values are not a JSON object"
        elif values.pop(self._ADDRESS, None) != f"{kind}/{key}":
            reason = "entry does not carry this address (copied or swapped from another key, or written by older code)"
        elif check is not None:
            try:
                reason = check(values, arrays)
            except Exception as exc:  # a check tripping over a malformed entry refuses it
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            self.misses += 1
            self.invalid += 1
            if len(self.invalid_reasons) < 20:
                self.invalid_reasons.append(f"{kind}/{key[:12]}: {reason}")
            return None
        self.hits += 1
        return CacheEntry(values=values, arrays=arrays)

    def put(self, kind: str, key: str, values: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Store an entry atomically (an existing entry with the same key is replaced); the entry
        records its own address. Raises :class:`CacheError` when the file cannot be written."""
        arrays = dict(arrays or {})
        if self._VALUES in arrays:
            raise ValueError(f"array name {self._VALUES!r} is reserved")
        record = {**dict(values), self._ADDRESS: f"{kind}/{key}"}
        text = json.dumps(record, default=_json_default, ensure_ascii=False, allow_nan=True)
        arrays[self._VALUES] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        path = self._path(kind, key)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            raise CacheError(f"cannot write the cache entry {path} ({' '.join(str(exc).split())}); "
                             f"check --cache-dir {self.root}") from exc

    def size_bytes(self) -> int:
        """Total size in bytes of all entries under the cache root (0 when it does not exist)."""
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*.npz") if p.is_file())

    def n_entries(self) -> int:
        """Number of entries under the cache root."""
        return sum(1 for _ in self.root.rglob("*.npz")) if self.root.exists() else 0


def format_bytes(n: int) -> str:
    """Human-readable size (binary units), e.g. ``12.3 MiB``."""
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024 ** exp:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][exp]}"
