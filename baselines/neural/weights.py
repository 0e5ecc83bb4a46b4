"""Where neural-codec weights come from: local folders and the local Hugging Face cache, never the network.

Weights are looked up, in order, in the ``weights_dir`` passed to ``build`` (``--weights-dir``),
in ``$JEPA_DAAM_WEIGHTS``, and in the Hugging Face cache (read with local-only calls). Inside a
weights folder a model lives at ``<dir>/<repo id>[/<subfolder>]`` (e.g.
``<dir>/facebook/encodec_24khz/``) or ``<dir>/<repo name>[/<subfolder>]``. When nothing is found,
:func:`find_weights` raises ``CodecUnavailable`` naming the folder, the files and the download
command. The files used are hashed (:func:`hash_files`) into the codec's ``weights_hash``. The
search itself and :class:`WeightsSource` are ``audiocore.weights`` (shared with the metric models);
this module adds the codec's error message and never downloads.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from audiocore.codec import CodecUnavailable
from audiocore.hashing import file_sha256, state_dict_sha256
from audiocore.weights import HF_MODEL_FILES, WEIGHTS_ENV, WeightsSource, find_local
from audiocore.weights import weights_roots as local_roots

__all__ = ["HF_MODEL_FILES", "WEIGHTS_ENV", "WeightsSource", "find_weights", "hash_files", "hash_state_dict",
           "weights_roots"]


def weights_roots(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for weights: `weights_dir`, then `$JEPA_DAAM_WEIGHTS` (deduplicated)."""
    return [root for root, _ in local_roots(weights_dir)]


def find_weights(spec: str, source: WeightsSource, weights_dir: str | os.PathLike[str] | None = None,
                 use_hf_cache: bool = True) -> Path:
    """The first folder holding every required file of `source`.

    Searched in order: each `weights_roots(weights_dir)` candidate (`WeightsSource.candidates`),
    then the local Hugging Face cache (when `use_hf_cache`).

    Raises:
        CodecUnavailable: nothing complete found; the message names the folder and files to
            create, what was searched (and what an incomplete folder lacks), and how to download.
    """
    found, searched = find_local(source, weights_dir, use_hf_cache)
    if found is not None:
        return found.folder
    roots = weights_roots(weights_dir)
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
