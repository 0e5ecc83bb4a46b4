"""Loading a neural codec: optional packages, model loaders, a cache of loaded models, and :func:`build`.

Implementations: the ``transformers`` library (EncodecModel, DacModel, MimiModel,
WavTokenizerModel), the ``snac`` package, and the ``speechtokenizer`` package's model modules
loaded without its training package (which needs torchaudio). Every import is lazy.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable

import torch

from audiocore.codec import CodecUnavailable
from audiocore.device import resolve_device
from baselines.neural.adapters import make_codec
from baselines.neural.codec import NeuralCodec
from baselines.neural.settings import NeuralSetting, parse_spec
from baselines.neural.weights import find_weights

TRANSFORMERS_HINT = "pip install 'transformers>=5.24' (or pip install -e '.[neural]')"
SNAC_HINT = "pip install snac (or pip install -e '.[neural]')"
SPEECHTOKENIZER_HINT = (
    "pip install --no-deps speechtokenizer einops (--no-deps: its declared torchaudio/accelerate "
    "dependencies are only needed for training and would replace the installed torch)"
)


def _require(module: str, spec: str, hint: str) -> types.ModuleType:
    """Import an optional package or raise CodecUnavailable with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise CodecUnavailable(f"{spec} needs the '{module.split('.')[0]}' package: {hint} ({e})") from e


def _transformers_class(name: str, spec: str) -> Any:
    """A model class from `transformers` (CodecUnavailable when absent or too old)."""
    transformers = _require("transformers", spec, TRANSFORMERS_HINT)
    cls = getattr(transformers, name, None)
    if cls is None:
        raise CodecUnavailable(f"{spec} needs transformers.{name}, which transformers "
                               f"{transformers.__version__} lacks: {TRANSFORMERS_HINT}")
    return cls


def speechtokenizer_model_module(spec: str = "speechtokenizer") -> types.ModuleType:
    """`speechtokenizer.model` imported without running the package's `__init__`.

    The package's `__init__` imports its trainer (torchaudio, accelerate, beartype, lion-pytorch,
    tensorboard); the model itself needs only torch, numpy and einops. The package folder is
    mounted under a private name so the real `speechtokenizer` module is never half-imported.
    """
    alias = "_jepa_daam_speechtokenizer"
    if f"{alias}.model" in sys.modules:
        return sys.modules[f"{alias}.model"]
    found = importlib.util.find_spec("speechtokenizer")
    if found is None or not found.submodule_search_locations:
        raise CodecUnavailable(f"{spec} needs the 'speechtokenizer' package: {SPEECHTOKENIZER_HINT}")
    _require("einops", spec, SPEECHTOKENIZER_HINT)
    package = types.ModuleType(alias)
    package.__path__ = list(found.submodule_search_locations)
    sys.modules[alias] = package
    try:
        return importlib.import_module(f"{alias}.model")
    except ImportError as e:
        del sys.modules[alias]
        raise CodecUnavailable(f"{spec}: speechtokenizer's model modules failed to import ({e}); "
                               f"{SPEECHTOKENIZER_HINT}") from e


_MODEL_CACHE: dict[tuple[str, str, str], torch.nn.Module] = {}
"""(family, weights folder, device) -> loaded model, shared by the settings of one model."""


def clear_model_cache() -> None:
    """Forget every loaded model (frees their memory once no codec holds them)."""
    _MODEL_CACHE.clear()


def _load_transformers(class_name: str) -> Callable[[Path, str], torch.nn.Module]:
    def load(folder: Path, spec: str) -> torch.nn.Module:
        cls = _transformers_class(class_name, spec)
        return cls.from_pretrained(str(folder), local_files_only=True)
    return load


def _load_snac(folder: Path, spec: str) -> torch.nn.Module:
    snac = _require("snac", spec, SNAC_HINT)
    model = snac.SNAC.from_config(str(folder / "config.json"))
    model.load_state_dict(torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True))
    return model


def _load_speechtokenizer(folder: Path, spec: str) -> torch.nn.Module:
    import json

    module = speechtokenizer_model_module(spec)
    config = json.loads((folder / "config.json").read_text())
    model = module.SpeechTokenizer(config)
    model.load_state_dict(torch.load(folder / "SpeechTokenizer.pt", map_location="cpu", weights_only=True))
    return model


LOADERS: dict[str, Callable[[Path, str], torch.nn.Module]] = {
    "encodec": _load_transformers("EncodecModel"),
    "dac": _load_transformers("DacModel"),
    "mimi": _load_transformers("MimiModel"),
    "wavtokenizer": _load_transformers("WavTokenizerModel"),
    "snac": _load_snac,
    "speechtokenizer": _load_speechtokenizer,
}


def _check_architecture(setting: NeuralSetting, codec: NeuralCodec, folder: Path) -> None:
    """The loaded model must be the one the spec names (sample rate, hop, codebooks)."""
    problems = []
    if codec.sample_rate != setting.sample_rate:
        problems.append(f"sample rate {codec.sample_rate} Hz (expected {setting.sample_rate})")
    if codec.hop_length != setting.hop_length:
        problems.append(f"hop {codec.hop_length} samples (expected {setting.hop_length})")
    if setting.family != "snac" and len(codec.vocab_sizes) != setting.n_q:
        problems.append(f"{len(codec.vocab_sizes)} codebooks in use (expected {setting.n_q})")
    if problems:
        raise CodecUnavailable(f"{setting.spec}: the model in {folder} is not {setting.source.repo_id}: "
                               + "; ".join(problems))


def build(spec: str, device: str = "cpu", weights_dir: str | os.PathLike[str] | None = None) -> NeuralCodec:
    """Build the neural codec named by `spec` from local weights.

    Args:
        spec: e.g. "encodec@6k", "dac@44k", "mimi@8", "snac@24k"; see `specs()` and `parse_spec`.
        device: "cpu", "cuda", "cuda:N" or "auto".
        weights_dir: folder holding `<repo id>/` weight folders; searched before
            `$JEPA_DAAM_WEIGHTS` and the Hugging Face cache.

    Raises:
        ValueError: unknown family or setting (message lists the valid ones) or bad device.
        CodecUnavailable: package or weights missing (message says what to install or put where),
            or the weights folder holds another model than the spec names.
    """
    setting = parse_spec(spec)
    dev = resolve_device(device)
    folder = find_weights(setting.spec, setting.source, weights_dir)
    key = (setting.family, str(folder.resolve()), str(dev))
    model = _MODEL_CACHE.get(key)
    if model is None:
        try:
            model = LOADERS[setting.family](folder, setting.spec)
        except CodecUnavailable:
            raise
        except Exception as e:  # corrupt or mismatched files: say which folder
            raise CodecUnavailable(f"{setting.spec}: loading the weights in {folder} failed: "
                                   f"{type(e).__name__}: {e}") from e
        model = model.to(dev).eval()
        _MODEL_CACHE[key] = model
    try:
        codec = make_codec(setting, model, str(dev), weights_files=setting.source.files_in(folder))
    except ValueError as e:
        raise CodecUnavailable(f"{setting.spec}: the model in {folder} does not support this setting: {e}") from e
    _check_architecture(setting, codec, folder)
    return codec
