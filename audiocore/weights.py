"""Pretrained weights the way users expect: local folders first, then the Hugging Face hub.

One model's weights are described by a :class:`WeightsSource` (repository, pinned revision,
required files). :func:`resolve_weights` finds them, in this order:

1. ``weights_dir`` (``--weights-dir``), then ``$JEPA_DAAM_WEIGHTS``: ``<dir>/<repo id>[/<sub>]``
   or ``<dir>/<repo name>[/<sub>]``;
2. the local Hugging Face cache (``~/.cache/huggingface/hub``), read without any network call,
   at the pinned revision;
3. only when ``download=True`` and the machine is *online*: ``huggingface_hub.snapshot_download``
   of the required files at the pinned revision into that standard cache. The resolved commit
   is returned (:attr:`ResolvedWeights.commit`) so a run can record it in ``manifest.json``.

"Offline" means ``offline=True`` (``--offline``), or ``HF_HUB_OFFLINE`` set to 1/true/yes/on:
then step 3 is never attempted. Online, a TCP connection to the hub endpoint is tried first with
a short timeout (:data:`PROBE_TIMEOUT_S`), so a machine without network gets a one-line
:class:`WeightsUnavailable` within seconds instead of a hang or a traceback.

This module is part of the bottom layer: it imports nothing of the project, and
``huggingface_hub`` only lazily.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = [
    "HF_MODEL_FILES",
    "PROBE_TIMEOUT_S",
    "WEIGHTS_ENV",
    "ResolvedWeights",
    "WeightsSource",
    "WeightsUnavailable",
    "find_local",
    "hub_unreachable_reason",
    "is_offline",
    "resolve_weights",
    "weights_roots",
]

WEIGHTS_ENV = "JEPA_DAAM_WEIGHTS"
"""Environment variable naming a folder of model weights (``<dir>/<repo id>/``)."""

HF_MODEL_FILES: tuple[tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
"""Files of a transformers model folder: config.json and one weights file (alternatives)."""

PROBE_TIMEOUT_S = 3.0
"""Seconds the hub connectivity probe waits before declaring the machine offline."""

_TRUE = {"1", "true", "yes", "on"}


class WeightsUnavailable(RuntimeError):
    """A model's weights are not on disk and could not (or may not) be downloaded; the message
    is one line naming the model, where it was looked for and what to do."""


@dataclass(frozen=True)
class WeightsSource:
    """Where one model's weights come from.

    Attributes:
        repo_id: Hugging Face repository ("microsoft/wavlm-base-sv").
        revision: the pinned revision downloads use (a commit hash where known), also the
            revision looked up in the local Hugging Face cache.
        subfolder: folder inside the repository holding the files ("" for the root).
        required: files that must be present; each entry lists alternatives (any one suffices).
        how_to_get: instructions shown when the files are missing; empty = ``hf download``.
        optional: files fetched with a download when the repository has them (tokenizer
            settings, say); never required locally.
    """

    repo_id: str
    revision: str | None = None
    subfolder: str = ""
    required: tuple[tuple[str, ...], ...] = HF_MODEL_FILES
    how_to_get: str = ""
    optional: tuple[str, ...] = ()

    def candidates(self, root: Path) -> list[Path]:
        """Folders under a weights root that may hold this model: ``<root>/<repo id>[/<sub>]``,
        then ``<root>/<repo name>[/<sub>]``."""
        name = self.repo_id.split("/")[-1]
        out = [root / self.repo_id, root / name]
        return [p / self.subfolder if self.subfolder else p for p in out]

    def missing(self, folder: Path) -> list[str]:
        """Required files absent from ``folder`` ("a|b" for a group of alternatives)."""
        return ["|".join(group) for group in self.required if not any((folder / f).is_file() for f in group)]

    def files_in(self, folder: Path) -> list[Path]:
        """The file used from each required group: its first alternative present in ``folder``."""
        return [next(folder / f for f in group if (folder / f).is_file()) for group in self.required]

    def patterns(self) -> list[str]:
        """``allow_patterns`` for a download: every alternative of every required file."""
        prefix = f"{self.subfolder}/" if self.subfolder else ""
        return [prefix + f for group in self.required for f in group] + [prefix + f for f in self.optional]


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights found (or downloaded) for one model.

    Attributes:
        folder: the folder holding the required files.
        origin: ``"weights-dir"``, ``"env"`` ($JEPA_DAAM_WEIGHTS), ``"hf-cache"`` or ``"download"``.
        repo_id: the repository the weights belong to.
        revision: the pinned revision asked for (None: the repository's default branch).
        commit: the commit the files come from, when known (Hugging Face cache or download).
    """

    folder: Path
    origin: str
    repo_id: str
    revision: str | None = None
    commit: str | None = None
    files: tuple[str, ...] = field(default=())

    def as_manifest(self) -> dict[str, Any]:
        """JSON-ready record for ``manifest.json``."""
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "origin": self.origin, "folder": str(self.folder), "files": list(self.files)}


def weights_roots(weights_dir: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """Folders searched for weights, with their origin: ``weights_dir`` ("weights-dir"), then
    ``$JEPA_DAAM_WEIGHTS`` ("env"); duplicates dropped."""
    out: dict[Path, str] = {}
    for p, origin in ((weights_dir, "weights-dir"), (os.environ.get(WEIGHTS_ENV), "env")):
        if p:
            out.setdefault(Path(p).expanduser(), origin)
    return list(out.items())


def is_offline(offline: bool | None = None) -> bool:
    """True when downloads are off: ``offline`` is True, or ``HF_HUB_OFFLINE`` is 1/true/yes/on."""
    if offline:
        return True
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _commit_of(folder: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot folder (``.../snapshots/<commit>[/sub]``)."""
    parts = folder.resolve().parts if folder.exists() else folder.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def _hf_cache_folder(source: WeightsSource) -> Path | None:
    """The snapshot folder of ``source`` at its revision in the local cache, or None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    first = source.patterns()[0]
    found = try_to_load_from_cache(source.repo_id, first, revision=source.revision)
    return Path(found).parent if isinstance(found, str) else None


def find_local(source: WeightsSource, weights_dir: str | os.PathLike[str] | None = None,
               use_hf_cache: bool = True) -> tuple[ResolvedWeights | None, list[str]]:
    """Look for the weights on disk only.

    Returns:
        (resolved or None, what was searched: one entry per folder, with what it lacks).
    """
    searched: list[str] = []
    folders = [(c, origin) for root, origin in weights_roots(weights_dir) for c in source.candidates(root)]
    cached = _hf_cache_folder(source) if use_hf_cache else None
    if cached is not None:
        folders.append((cached, "hf-cache"))
    for folder, origin in folders:
        if folder.is_dir():
            lacking = source.missing(folder)
            if not lacking:
                commit = _commit_of(folder) if origin == "hf-cache" else None
                files = tuple(p.name for p in source.files_in(folder))
                return ResolvedWeights(folder, origin, source.repo_id, source.revision, commit, files), searched
            searched.append(f"{folder} (lacks {', '.join(lacking)})")
        else:
            searched.append(str(folder))
    if use_hf_cache and cached is None:
        at = f"@{source.revision}" if source.revision else ""
        searched.append(f"Hugging Face cache (no {source.repo_id}{at})")
    return None, searched


def hub_unreachable_reason(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the hub endpoint (``HF_ENDPOINT``, default
    huggingface.co:443) opens within ``timeout`` seconds, else a short reason."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"no network: {host}:{port} not reachable ({type(exc).__name__}: {exc or 'timed out'})"


def _download(source: WeightsSource) -> ResolvedWeights:
    """``snapshot_download`` of the required files at the pinned revision (standard cache)."""
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(source.repo_id, revision=source.revision, allow_patterns=source.patterns(),
                                  etag_timeout=PROBE_TIMEOUT_S * 3))
    folder = path / source.subfolder if source.subfolder else path
    lacking = source.missing(folder)
    if lacking:
        raise WeightsUnavailable(f"{source.repo_id}@{source.revision or 'main'}: the download lacks "
                                 f"{', '.join(lacking)}")
    files = tuple(p.name for p in source.files_in(folder))
    return ResolvedWeights(folder, "download", source.repo_id, source.revision, _commit_of(path), files)


def resolve_weights(name: str, source: WeightsSource, weights_dir: str | os.PathLike[str] | None = None, *,
                    download: bool = True, offline: bool | None = None,
                    probe_timeout: float = PROBE_TIMEOUT_S) -> ResolvedWeights:
    """Find ``source``'s weights on disk, else download them when allowed and online.

    Args:
        name: what the weights are for, used in messages ("utmos22-strong", "encodec@6k").
        source: the model's repository, pinned revision and required files.
        weights_dir: a folder searched first (``--weights-dir``).
        download: allow step 3 (hub download); False = disk only.
        offline: ``--offline``; with ``HF_HUB_OFFLINE=1`` it forbids any network access.
        probe_timeout: seconds to wait for the hub before giving up.

    Returns:
        where the weights are and which commit they come from.

    Raises:
        WeightsUnavailable: one line: what was searched, why no download happened (offline,
            not allowed, no network, hub error) and how to get the files by hand.
    """
    found, searched = find_local(source, weights_dir)
    if found is not None:
        return found
    roots = weights_roots(weights_dir)
    files = " and ".join(" or ".join(group) for group in source.required)
    target = source.candidates(roots[0][0])[0] if roots else Path(f"${WEIGHTS_ENV}") / source.repo_id / source.subfolder
    rev = f" --revision {source.revision}" if source.revision else ""
    get = source.how_to_get or (f"on a machine with internet access run `hf download {source.repo_id}{rev} "
                                f"--local-dir <dir>/{source.repo_id}` and copy that folder here")
    hint = f"put {files} into {target}; {get}. Searched: {'; '.join(searched)}"
    if not download:
        raise WeightsUnavailable(f"{name}: weights not found; {hint}")
    if is_offline(offline):
        why = "--offline" if offline else "HF_HUB_OFFLINE=1"
        raise WeightsUnavailable(f"{name}: weights not found and downloads are off ({why}); {hint}")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise WeightsUnavailable(f"{name}: weights not found and huggingface_hub is not installed; {hint}") from None
    reason = hub_unreachable_reason(probe_timeout)
    if reason:
        raise WeightsUnavailable(f"{name}: weights not found and {reason}; {hint}")
    try:
        return _download(source)
    except WeightsUnavailable:
        raise
    except Exception as exc:  # hub errors (404, auth, timeouts) become one line, never a traceback
        msg = " ".join(str(exc).split())[:300]
        raise WeightsUnavailable(f"{name}: downloading {source.repo_id}@{source.revision or 'main'} failed "
                                 f"({type(exc).__name__}: {msg}); {hint}") from exc
