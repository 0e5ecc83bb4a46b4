"""Evaluation data sets: from a ``--data`` argument to a list of :class:`Utterance` records.

``load_dataset(spec)`` accepts

- ``"default"``: the embedded Harvard-sentence set, synthesised once with Piper
  (:mod:`audiocore.default_data`);
- a TSV manifest in the layout of ``../shared/data/*/manifest.tsv``: UTF-8, tab-separated, one
  header row, no quoting; required columns ``id`` and ``path`` (relative to the manifest's
  folder, or absolute); optional ``set``, ``speaker``, ``transcript`` (empty = unknown),
  ``duration_s``; other columns are ignored;
- a JSONL manifest (``.jsonl`` / ``.ndjson``): one JSON object per line with the same keys;
- a folder holding ``manifest.tsv``: that manifest;
- a LibriSpeech-layout folder: audio files (``*.flac``) with ``<speaker>-<chapter>.trans.txt``
  transcript files anywhere below it (``<utterance id> <TRANSCRIPT>`` per line);
- a plain folder of audio files (wav, flac, ogg, opus, mp3, m4a, ...), searched recursively;
  the utterance id is the path relative to the folder without its suffix.

Only the list is built here; no audio is decoded. Problems with the data set as a whole (missing
path, a manifest without an ``id`` or ``path`` column, a malformed line, duplicate ids, nothing
found) raise :class:`DatasetError` with a one-line message. A manifest row whose audio file is
missing stays in the list: loading that utterance with :func:`load_utterance` (or
:func:`read_utterance`) raises
``audiocore.audio.AudioError`` naming the file, so a benchmark run records a per-utterance error and
carries on.

Order is deterministic (manifest order; sorted relative paths for folders), and ``limit=N`` takes
the first N utterances of that order.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiocore.audio import AUDIO_EXTENSIONS, AudioError, AudioInfo, read_audio, warn_if_downmixed
from audiocore.errors import DatasetError

__all__ = [
    "DURATION_TOLERANCE_S",
    "DatasetError",
    "Utterance",
    "load_dataset",
    "load_utterance",
    "read_jsonl_manifest",
    "read_tsv_manifest",
    "read_utterance",
    "scan_folder",
]

#: How far a manifest's ``duration_s`` may be from the decoded duration before
#: :func:`load_utterance` reports a mismatch (the shared manifests round to 1 ms).
DURATION_TOLERANCE_S = 0.01

_REQUIRED = ("id", "path")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Utterance:
    """One evaluation utterance.

    Attributes:
        id: unique id within the data set (used in results and cache keys).
        path: audio file (absolute or relative to the working directory).
        set: name of the subset it belongs to (``librispeech_test_clean``, ``default``, ...).
        transcript: reference text, or None when unknown (no WER is computed then).
        speaker: speaker id or label; empty when unknown.
        duration_s: duration claimed by the manifest in seconds, or None when not given.
    """

    id: str
    path: Path
    set: str = ""
    transcript: str | None = None
    speaker: str = ""
    duration_s: float | None = None


def _parse_duration(value: Any, where: str) -> float | None:
    """A manifest's duration field -> seconds (None when empty/absent)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DatasetError(f"{where}: duration_s {value!r} is not a number of seconds")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: duration_s {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DatasetError(f"{where}: duration_s {value!r} must be a finite number >= 0")
    return seconds


def _make_utterance(fields: dict[str, Any], base: Path, default_set: str, where: str) -> Utterance:
    """Validate one manifest record (TSV row or JSON object) and build its Utterance."""
    utt_id, raw_path = fields.get("id"), fields.get("path")
    if isinstance(utt_id, int) and not isinstance(utt_id, bool):
        utt_id = str(utt_id)
    if not isinstance(utt_id, str) or not utt_id.strip():
        raise DatasetError(f"{where}: id must be a non-empty string, got {utt_id!r}")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise DatasetError(f"{where}: missing or empty path for id {utt_id!r}")
    for key in ("set", "speaker", "transcript"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise DatasetError(f"{where}: {key} must be text, got {type(fields[key]).__name__}")
    if "\x00" in raw_path:
        raise DatasetError(f"{where}: path for id {utt_id!r} contains a NUL character")
    path = Path(raw_path)
    transcript = fields.get("transcript") or None
    return Utterance(
        id=utt_id.strip(),
        path=path if path.is_absolute() else base / path,
        set=fields.get("set") or default_set,
        transcript=transcript.strip() if transcript and transcript.strip() else None,
        speaker=fields.get("speaker") or "",
        duration_s=_parse_duration(fields.get("duration_s"), where),
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def read_tsv_manifest(manifest: Path) -> list[Utterance]:
    """Parse a TSV manifest (``../shared/data`` layout, see the module docstring).

    Raises:
        DatasetError: unreadable or non-UTF-8 file, no header, missing ``id``/``path`` column,
            duplicated column, a line whose field count differs from the header, empty id or
            path, a non-numeric ``duration_s``.
    """
    lines = _read_text(manifest).split("\n")
    numbered = [(n, line.rstrip("\r")) for n, line in enumerate(lines, start=1)]
    numbered = [(n, line) for n, line in numbered if line.strip()]
    if not numbered:
        raise DatasetError(f"{manifest}: empty manifest (expected a header row with id and path)")
    header = [name.strip() for name in numbered[0][1].split("\t")]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise DatasetError(
            f"{manifest}: missing required column(s) {', '.join(missing)} "
            f"(header has: {', '.join(header)}; the file must be tab-separated)"
        )
    if len(set(header)) != len(header):
        raise DatasetError(f"{manifest}: duplicate column names in header {header}")
    utterances = []
    for lineno, line in numbered[1:]:
        values = line.split("\t")
        where = f"{manifest}:{lineno}"
        if len(values) != len(header):
            raise DatasetError(f"{where}: {len(values)} tab-separated fields, header has {len(header)}")
        utterances.append(
            _make_utterance(dict(zip(header, values)), manifest.parent, manifest.parent.name, where)
        )
    return utterances


def read_jsonl_manifest(manifest: Path) -> list[Utterance]:
    """Parse a JSONL manifest: one object per line with keys ``id``, ``path`` and optionally
    ``set``, ``speaker``, ``transcript`` (null or "" = unknown), ``duration_s``.

    Raises:
        DatasetError: unreadable file, invalid JSON, a line that is not an object, or a record
            failing the checks of :func:`read_tsv_manifest`.
    """
    utterances = []
    for lineno, line in enumerate(_read_text(manifest).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{lineno}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DatasetError(f"{where}: invalid JSON ({message})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
        utterances.append(_make_utterance(record, manifest.parent, manifest.parent.name, where))
    return utterances


def _librispeech_transcripts(folder: Path) -> dict[str, str]:
    """Map utterance id -> transcript from every ``*.trans.txt`` below ``folder``."""
    transcripts: dict[str, str] = {}
    for trans in sorted(folder.rglob("*.trans.txt")):
        for lineno, line in enumerate(_read_text(trans).splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if utt_id in transcripts:
                raise DatasetError(f"{trans}:{lineno}: utterance {utt_id} transcribed twice")
            transcripts[utt_id] = text.strip()
    return transcripts


def scan_folder(folder: Path) -> list[Utterance]:
    """List the audio files below ``folder`` (recursively, sorted by relative path).

    With ``*.trans.txt`` files present (LibriSpeech layout) the id is the file stem, the
    transcript comes from those files and the speaker is the first ``-`` field of the id;
    otherwise the id is the relative path without suffix. Hidden files are skipped.

    Raises:
        DatasetError: no audio files, or two files giving the same id.
    """
    transcripts = _librispeech_transcripts(folder)
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DatasetError(
            f"{folder}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)}, recursively)"
        )
    utterances: list[Utterance] = []
    for path in files:
        rel = path.relative_to(folder)
        if transcripts:
            utt_id = path.stem
            speaker = utt_id.split("-")[0]
        else:
            utt_id = rel.with_suffix("").as_posix()
            speaker = ""
        utterances.append(Utterance(
            id=utt_id, path=path, set=folder.name, transcript=transcripts.get(utt_id) or None,
            speaker=speaker,
        ))
    return utterances


def _check_unique(utterances: list[Utterance], source: Path) -> None:
    seen: dict[str, Path] = {}
    for utt in utterances:
        if utt.id in seen:
            raise DatasetError(
                f"{source}: duplicate utterance id {utt.id!r} ({seen[utt.id]} and {utt.path})"
            )
        seen[utt.id] = utt.path


def load_dataset(spec: str | Path, limit: int | None = None) -> list[Utterance]:
    """Resolve a ``--data`` argument to utterances (see the module docstring for the formats).

    Args:
        spec: ``"default"``, a ``.tsv`` or ``.jsonl`` manifest, or a folder.
        limit: keep only the first ``limit`` utterances (deterministic order); None keeps all.

    Returns:
        a non-empty list of :class:`Utterance`, ids unique.

    Raises:
        DatasetError: one-line description of what is wrong with ``spec`` or ``limit``.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive integer or None, got {limit!r}")
    if str(spec) == "default":
        from audiocore.default_data import ensure_default_set

        source = ensure_default_set()
        utterances = read_tsv_manifest(source)
    else:
        source = Path(spec).expanduser()
        if not source.exists():
            raise DatasetError(
                f"data path not found: {source} (expected 'default', a .tsv or .jsonl manifest, "
                f"or a folder of audio files)"
            )
        if source.is_dir():
            if (source / "manifest.tsv").is_file():
                source = source / "manifest.tsv"
                utterances = read_tsv_manifest(source)
            else:
                utterances = scan_folder(source)
        elif source.suffix.lower() == ".tsv":
            utterances = read_tsv_manifest(source)
        elif source.suffix.lower() in _JSONL_SUFFIXES:
            utterances = read_jsonl_manifest(source)
        else:
            raise DatasetError(
                f"{source}: unsupported data file (expected a .tsv or .jsonl manifest, or a folder)"
            )
    if not utterances:
        raise DatasetError(f"{source}: no utterances listed")
    _check_unique(utterances, source)
    return utterances[:limit] if limit is not None else utterances


def read_utterance(utt: Utterance, target_sr: int | None = None) -> tuple[np.ndarray, AudioInfo]:
    """Decode an utterance's audio and check it against its manifest entry.

    Args:
        utt: the utterance.
        target_sr: resample to this rate in Hz (soxr VHQ); None keeps the file's rate.

    Returns:
        (wav, info): mono float32 [T] at ``info.sample_rate`` Hz, and what ``read_audio`` found
        (source rate, channels, whether it was downmixed, peak).

    Raises:
        AudioError: the file is missing/empty/corrupt/non-audio/non-finite (see
            ``audiocore.audio.read_audio``), or its decoded duration differs from the manifest's
            ``duration_s`` by more than :data:`DURATION_TOLERANCE_S`.
    """
    wav, info = read_audio(utt.path, target_sr)
    if utt.duration_s is not None and abs(info.duration_s - utt.duration_s) > DURATION_TOLERANCE_S:
        raise AudioError(
            f"{utt.path}: duration mismatch: manifest says {utt.duration_s:.3f} s, "
            f"file holds {info.duration_s:.3f} s", "duration_mismatch",
        )
    return wav, info


def load_utterance(utt: Utterance, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """:func:`read_utterance` returning ``(wav, sample_rate)``; a multichannel file emits a
    ``audiocore.audio.DownmixWarning`` naming it (as ``audiocore.audio.load_audio`` does).

    Raises:
        AudioError: see :func:`read_utterance`.
    """
    wav, info = read_utterance(utt, target_sr)
    warn_if_downmixed(info, stacklevel=3)
    return wav, info.sample_rate
