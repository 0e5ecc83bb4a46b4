"""Every codec behind one interface (``audiocore.Codec``), built from a spec string.

    from baselines import build_codec, build_codecs
    opus = build_codec("opus@6k")
    codecs, skipped = build_codecs("all")               # skipped: (spec, reason) of unavailable ones

Backends: ``baselines.classical`` (PCM, G.711, G.722, Opus, MP3, AMR-NB, Codec2),
``baselines.neural`` (EnCodec, DAC, Mimi, SNAC, SpeechTokenizer, WavTokenizer; local weights) and
``baselines.jepa_daam`` (this repository's tokenizer). A new codec family is one backend module
with ``specs()`` and ``build(spec, device)`` plus one line in ``baselines.registry.FAMILIES``.
"""
from __future__ import annotations

from audiocore.codec import Codec, CodecUnavailable, Encoded
from baselines.registry import FAMILIES, build_codec, build_codecs, resolve_specs

__all__ = ["FAMILIES", "Codec", "CodecUnavailable", "Encoded", "build_codec", "build_codecs", "resolve_specs"]
