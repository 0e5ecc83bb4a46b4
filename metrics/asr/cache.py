"""Transcripts of uncompressed originals, cached on disk: one JSON file per key, written atomically.

:func:`cache_key` combines the backend's identity (``info()``, minus where the model lies and the
normaliser) with the SHA-256 of the 16 kHz float32 samples; :func:`transcribe_cached` sends only
the misses to the backend.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiocore.atomic import atomic_write_text
from metrics.asr.base import AsrBackend


_KEY_EXCLUDED = frozenset({"model_path", "model_source", "normaliser"})
"""``info()`` fields left out of the cache key: where a model lies and how text is normalised
afterwards do not change a transcript (the model's identity is its ``model_sha256``)."""


def audio_sha256(wav: np.ndarray) -> str:
    """SHA-256 hex digest of a waveform's samples as little-endian float32 (shape [T])."""
    arr = np.ascontiguousarray(np.asarray(wav), dtype="<f4")
    return hashlib.sha256(arr.tobytes()).hexdigest()


def cache_key(asr_info: Mapping[str, Any], wav: np.ndarray) -> str:
    """Cache key of the transcript of ``wav`` (16 kHz float32 [T]) by the backend ``asr_info``.

    Returns:
        SHA-256 hex digest of the canonical JSON of ``asr_info`` (minus paths and the normaliser)
        together with :func:`audio_sha256` of the samples.
    """
    identity = {k: v for k, v in asr_info.items() if k not in _KEY_EXCLUDED}
    payload = json.dumps({"asr": identity, "audio_sha256": audio_sha256(wav)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class TranscriptCache:
    """Transcripts of uncompressed originals on disk, one JSON file per key, written atomically.

    Args:
        root: cache folder (created on first write).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"transcript cache key must be a lower-case hex digest, got {key!r}")
        return self.root / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached transcript for ``key``, or ``None`` (missing or unreadable entry)."""
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        text = entry.get("text") if isinstance(entry, dict) else None
        return text if isinstance(text, str) else None

    def put(self, key: str, text: str, meta: Mapping[str, Any] | None = None) -> None:
        """Store ``text`` under ``key`` (temporary file + ``os.replace``: readers never see a
        partial entry). ``meta`` (e.g. the backend info) is saved alongside for inspection."""
        path = self._path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "text": text, "meta": dict(meta or {})}
        atomic_write_text(path, json.dumps(entry, ensure_ascii=False, sort_keys=True))


def transcribe_cached(backend: AsrBackend, wavs: Sequence[np.ndarray],
                      cache: TranscriptCache | None) -> list[str]:
    """Transcribe ``wavs`` (16 kHz float32 [T] each), reusing and filling ``cache``.

    Only the cache misses are sent to the backend, as one batch. With ``cache=None`` everything
    is transcribed.

    Returns:
        One raw transcript per input, in input order.
    """
    if cache is None:
        return backend.transcribe(wavs)
    info = backend.info()
    keys = [cache_key(info, wav) for wav in wavs]
    texts: list[str | None] = [cache.get(key) for key in keys]
    missing = [i for i, text in enumerate(texts) if text is None]
    if missing:
        fresh = backend.transcribe([wavs[i] for i in missing])
        for i, text in zip(missing, fresh):
            cache.put(keys[i], text, meta=info)
            texts[i] = text
    return [str(t) for t in texts]
