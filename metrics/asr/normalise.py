"""The one text normaliser of every WER / CER / dWER: Whisper's ``EnglishTextNormalizer``.

It comes from the openai-whisper package (installed with ``--no-deps``, see the README), is
applied to reference and hypothesis alike, and is named by :data:`NORMALISER_NAME` in every
backend's ``info()``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

from metrics.asr.base import WHISPER_INSTALL_HINT, AsrUnavailable, package_version

NORMALISER_NAME = "whisper.normalizers.EnglishTextNormalizer"
"""Name of the text normaliser applied to both sides of every WER / CER / dWER."""


@functools.lru_cache(maxsize=1)
def _english_normalizer() -> Callable[[str], str]:
    """Whisper's ``EnglishTextNormalizer`` (built once: it reads a spelling table from disk)."""
    try:
        from whisper.normalizers import EnglishTextNormalizer
    except ImportError as exc:  # openai-whisper or one of its light dependencies is missing
        raise AsrUnavailable(
            f"the text normaliser {NORMALISER_NAME} needs the openai-whisper package "
            f"({type(exc).__name__}: {exc}); {WHISPER_INSTALL_HINT}"
        ) from exc
    return EnglishTextNormalizer()


def normaliser_info() -> str:
    """The normaliser's name with the version of the package that provides it."""
    return f"{NORMALISER_NAME} (openai-whisper {package_version('openai-whisper')})"


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
