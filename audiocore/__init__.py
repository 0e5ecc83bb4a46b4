"""The bottom layer: what the model, the metrics, the codec adapters and the benchmark share.

It imports nothing of the project (``tests/test_architecture.py`` checks), so every package
above may use it:

* the codec contract: :class:`Encoded`, :class:`Codec`, :class:`CodecUnavailable`
  (:mod:`audiocore.codec`);
* audio I/O and the one resampler: :func:`load_audio`, :func:`read_audio`, :func:`resample`,
  :data:`RESAMPLER`, :class:`AudioError` (:mod:`audiocore.audio`);
* data sets: :func:`load_dataset`, :class:`Utterance`, :class:`DatasetError`
  (:mod:`audiocore.datasets`, the bundled default set in :mod:`audiocore.default_data`);
* small utilities, one home each: file / tensor hashing (:mod:`audiocore.hashing`), atomic
  writes (:mod:`audiocore.atomic`), device resolution (:mod:`audiocore.device`), parameter
  counts (:mod:`audiocore.params`), CPU model and instruction-set flags
  (:mod:`audiocore.machine`).
"""
from __future__ import annotations

from audiocore.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from audiocore.audio import RESAMPLER, AudioError, AudioInfo, load_audio, read_audio, resample
from audiocore.codec import Codec, CodecUnavailable, Encoded
from audiocore.datasets import Utterance, load_dataset, load_utterance, read_utterance
from audiocore.device import resolve_device
from audiocore.errors import DatasetError
from audiocore.hashing import file_sha256, state_dict_sha256, tree_sha256
from audiocore.params import count_parameters

__all__ = [
    "RESAMPLER",
    "AudioError",
    "AudioInfo",
    "Codec",
    "CodecUnavailable",
    "DatasetError",
    "Encoded",
    "Utterance",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "count_parameters",
    "file_sha256",
    "load_audio",
    "load_dataset",
    "load_utterance",
    "read_audio",
    "read_utterance",
    "resample",
    "resolve_device",
    "state_dict_sha256",
    "tree_sha256",
]
