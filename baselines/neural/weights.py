"""Where neural-codec weights come from: local folders and the local Hugging Face cache, never the network.

Weights are looked up, in order, in the ``weights_dir`` passed to ``build`` (``--weights-dir``),
in ``$JEPA_DAAM_WEIGHTS``, and in the Hugging Face cache (read with local-only calls). Inside a
weights folder a model lives at ``<dir>/<repo id>[/<subfolder>]`` (e.g.
``<dir>/facebook/encodec_24khz/``) or ``<dir>/<repo name>[/<subfolder>]``. When nothing is found,
:func:`find_weights` raises ``CodecUnavailable`` naming the folder, the files and the download
command. The files used are hashed (:func:`hash_files`) into the codec's ``weights_hash``.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from audiocore.codec import CodecUnavailable
from audiocore.hashing import file_sha256, state_dict_sha256

WEIGHTS_ENV = "JEPA_DAAM_WEIGHTS"
"""Environment variable naming the folder that holds neural-codec weights (`<dir>/<repo id>/`)."""

HF_MODEL_FILES: tuple[tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
"""Files of a transformers model folder: config.json and one weights file (alternatives)."""


@dataclass(frozen=True)
class WeightsSource:
    """Where one model's weights come from.

    Attributes:
        repo_id: Hugging Face repository that publishes the weights ("facebook/encodec_24khz").
        subfolder: folder inside the repository holding the files ("" for the root).
        required: files that must be present; each entry lists alternatives (any one suffices).
        how_to_get: instructions shown when the files are missing; empty = `hf download`.
    """

    repo_id: str
    subfolder: str = ""
    required: tuple[tuple[str, ...], ...] = HF_MODEL_FILES
    how_to_get: str = ""

    def candidates(self, root: Path) -> list[Path]:
        """Folders under a weights root that may hold this model: `<root>/<repo id>[/<sub>]`,
        then `<root>/<repo name>[/<sub>]`."""
        name = self.repo_id.split("/")[-1]
        out = [root / self.repo_id, root / name]
        return [p / self.subfolder if self.subfolder else p for p in out]

    def missing(self, folder: Path) -> list[str]:
        """Required files absent from `folder` ("a|b" for a group of alternatives)."""
        return ["|".join(group) for group in self.required if not any((folder / f).is_file() for f in group)]

    def files_in(self, folder: Path) -> list[Path]:
        """The file used from each required group: its first alternative present in `folder`."""
        return [next(folder / f for f in group if (folder / f).is_file()) for group in self.required]


def weights_roots(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for weights: `weights_dir`, then `$JEPA_DAAM_WEIGHTS` (deduplicated)."""
    roots = [Path(p).expanduser() for p in (weights_dir, os.environ.get(WEIGHTS_ENV)) if p]
    return list(dict.fromkeys(roots))


def _hf_cache_folder(source: WeightsSource) -> Path | None:
    """The snapshot folder of `source` in the local Hugging Face cache, or None (never networks)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    first = f"{source.subfolder}/{source.required[0][0]}" if source.subfolder else source.required[0][0]
    found = try_to_load_from_cache(source.repo_id, first)
    return Path(found).parent if isinstance(found, str) else None


def find_weights(spec: str, source: WeightsSource, weights_dir: str | os.PathLike[str] | None = None,
                 use_hf_cache: bool = True) -> Path:
    """The first folder holding every required file of `source`.

    Searched in order: each `weights_roots(weights_dir)` candidate (`WeightsSource.candidates`),
    then the local Hugging Face cache (when `use_hf_cache`).

    Raises:
        CodecUnavailable: nothing complete found; the message names the folder and files to
            create, what was searched (and what an incomplete folder lacks), and how to download.
    """
    searched: list[str] = []
    roots = weights_roots(weights_dir)
    folders = [c for r in roots for c in source.candidates(r)]
    cached = _hf_cache_folder(source) if use_hf_cache else None
    for folder in [*folders, *([cached] if cached else [])]:
        if folder.is_dir():
            lacking = source.missing(folder)
            if not lacking:
                return folder
            searched.append(f"{folder} (lacks {', '.join(lacking)})")
        else:
            searched.append(str(folder))
    if use_hf_cache and cached is None:
        searched.append(f"Hugging Face cache (no {source.repo_id})")
    files = " and ".join(" or ".join(group) for group in source.required)
    target = source.candidates(roots[0])[0] if roots else Path(f"${WEIGHTS_ENV}") / source.repo_id / source.subfolder
    get = source.how_to_get or (
        f"on a machine with internet access run `hf download {source.repo_id} --local-dir "
        f"<dir>/{source.repo_id}` and copy that folder here"
    )
    where = "" if roots else f" (set {WEIGHTS_ENV} or pass a weights folder)"
    raise CodecUnavailable(
        f"{spec}: weights not found. Put {files} into {target}{where}; {get}. Searched: {'; '.join(searched)}"
    )


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of one file (cached per path, size and modification time)."""
    return file_sha256(path)


def hash_files(files: Sequence[Path]) -> str:
    """sha256 over (file name, file sha256) of `files`, in the given order: 16 hex digits."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(p.name.encode() + b"\0" + _file_digest(str(p), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def hash_state_dict(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict: 16 hex digits."""
    return state_dict_sha256(model.state_dict())[:16]
