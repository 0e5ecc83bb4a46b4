"""JEPA-DAAM token files (``.tokens``): an uncompressed NumPy .npz per utterance."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from audiocore.codec import Encoded
from jepa.codec import FORMAT_VERSION

TOKENS_FORMAT = "jepa-daam-tokens"


# ---- token files -------------------------------------------------------------------------------

def save_tokens(enc: Encoded, path: str | Path, sample_rate: int, config_id: str, checkpoint_sha256: str = "") -> None:
    """Write an Encoded as a .tokens file: an uncompressed NumPy .npz archive holding
    ``codes`` [n_streams, n_frames] (uint16 when every vocabulary fits, else int64),
    ``vocab_sizes``, ``num_samples``, ``header_codes``, ``header_vocab_sizes`` (the loudness
    gain; empty arrays without it, and absent in files of earlier releases), ``sample_rate``, ``frame_rate``, ``config_hash``,
    ``checkpoint_sha256``, ``format`` and ``format_version``."""
    codes = enc.codes.cpu().numpy()
    dtype = np.uint16 if max(enc.vocab_sizes) <= 1 << 16 else np.int64
    buf = io.BytesIO()
    np.savez(
        buf,
        codes=codes.astype(dtype),
        vocab_sizes=np.asarray(enc.vocab_sizes, dtype=np.int64),
        num_samples=np.int64(enc.num_samples),
        header_codes=np.asarray(enc.header_codes, dtype=np.int64),
        header_vocab_sizes=np.asarray(enc.header_vocab_sizes, dtype=np.int64),
        sample_rate=np.int64(sample_rate),
        frame_rate=np.float64(enc.frame_rate),
        config_hash=np.str_(config_id),
        checkpoint_sha256=np.str_(checkpoint_sha256),
        format=np.str_(TOKENS_FORMAT),
        format_version=np.str_(FORMAT_VERSION),
    )
    Path(path).write_bytes(buf.getvalue())


def load_tokens(path: str | Path) -> tuple[Encoded, dict[str, str | int]]:
    """Read a .tokens file. Returns (Encoded, metadata with sample_rate, config_hash, checkpoint_sha256)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"token file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
    except Exception as err:
        raise ValueError(f"{path} is not a readable .tokens (npz) file: {err}") from err
    if str(fields.get("format", "")) != TOKENS_FORMAT:
        raise ValueError(f"{path} is not a JEPA-DAAM token file (format={fields.get('format')!r})")
    enc = Encoded(
        codes=torch.from_numpy(fields["codes"].astype(np.int64)),
        vocab_sizes=tuple(int(v) for v in fields["vocab_sizes"]),
        frame_rate=float(fields["frame_rate"]),
        payload_bytes=None,
        num_samples=int(fields["num_samples"]),
        header_codes=tuple(int(v) for v in fields.get("header_codes", ())),
        header_vocab_sizes=tuple(int(v) for v in fields.get("header_vocab_sizes", ())),
    )
    meta = {"sample_rate": int(fields["sample_rate"]), "config_hash": str(fields["config_hash"]),
            "checkpoint_sha256": str(fields["checkpoint_sha256"])}
    return enc, meta
