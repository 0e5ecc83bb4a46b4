"""Fuzz the audio loader and the manifest parsers: whatever the bytes, only AudioError or
DatasetError may escape, and whatever loads is a valid waveform / utterance list.

Bounded: a fixed number of examples per test (about 15 s in all on 2 cores), marked slow. Set
JEPA_DAAM_FUZZ_EXAMPLES (default 150) for a longer, randomised hunt.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from audiocore.datasets import DatasetError, load_dataset  # noqa: E402
from audiocore.audio import AudioError, read_audio  # noqa: E402

pytestmark = pytest.mark.slow

_EXAMPLES = os.environ.get("JEPA_DAAM_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXAMPLES or 150), deadline=None, derandomize=_EXAMPLES is None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _valid_prefixes() -> list[bytes]:
    """Real headers (and a little data) of each format, so fuzzed tails reach the decoders."""
    t = np.arange(1600) / 16000
    x = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    prefixes = []
    for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"),
                         ("MP3", "MPEG_LAYER_III")):
        buf = io.BytesIO()
        sf.write(buf, x, 16000, format=fmt, subtype=subtype)
        prefixes.append(buf.getvalue()[:200])
    return prefixes


PREFIXES = _valid_prefixes()
EXTENSIONS = [".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".aiff"]


@st.composite
def audio_files(draw) -> tuple[bytes, str]:
    """Random bytes, or a real header followed by random bytes, with an audio extension."""
    body = draw(st.binary(min_size=0, max_size=4096))
    if draw(st.booleans()):
        prefix = draw(st.sampled_from(PREFIXES))
        cut = draw(st.integers(min_value=4, max_value=len(prefix)))
        body = prefix[:cut] + body
    return body, draw(st.sampled_from(EXTENSIONS))


@FUZZ
@given(case=audio_files(), target_sr=st.sampled_from([None, 16000]))
def test_fuzz_load_audio(case, target_sr):
    data, ext = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{ext}"
        path.write_bytes(data)
        try:
            wav, info = read_audio(path, target_sr)
        except AudioError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
    assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size > 0
    assert np.isfinite(wav).all()
    assert info.sample_rate == (target_sr or info.source_sample_rate) > 0


HEADERS = [
    "id\tset\tpath\tsample_rate\tnum_samples\tduration_s\tspeaker\ttranscript\tlicense",
    "id\tpath\ttranscript\tduration_s",
    "id\tpath",
]
TOKENS = list("ab1.-/ \t\r\n\"'\\\x00é\u2028") + ["nan", "inf", "-1", "1e400", "x.wav", "/abs.flac"]
FIELD = st.lists(st.sampled_from(TOKENS), max_size=6).map("".join)


@st.composite
def tsv_manifests(draw) -> str:
    header = draw(st.one_of(st.sampled_from(HEADERS), FIELD))
    rows = draw(st.lists(st.lists(FIELD, min_size=0, max_size=10).map("\t".join), max_size=6))
    return "\n".join([header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))


def _load_manifest(manifest: Path) -> None:
    """Load a fuzzed manifest: either a one-line DatasetError or a valid utterance list."""
    try:
        utts = load_dataset(manifest)
    except DatasetError as exc:
        assert "\n" not in str(exc)
        return
    assert utts and len({u.id for u in utts}) == len(utts)
    for u in utts:
        assert isinstance(u.path, Path) and u.id
        assert u.transcript is None or u.transcript.strip()
        assert u.duration_s is None or u.duration_s >= 0


@FUZZ
@given(content=st.one_of(tsv_manifests(), st.text(max_size=300)), raw=st.binary(max_size=64))
def test_fuzz_tsv_manifest(content, raw):
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.tsv"
        manifest.write_bytes(content.encode("utf-8", "surrogatepass") + raw)
        _load_manifest(manifest)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(
    records=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"id": JSON_VALUES, "path": JSON_VALUES},
                optional={"transcript": JSON_VALUES, "duration_s": JSON_VALUES, "set": JSON_VALUES},
            ),
            JSON_VALUES,
        ),
        max_size=5,
    ),
    garbage=st.text(max_size=20),
)
def test_fuzz_jsonl_manifest(records, garbage):
    import json

    lines = [json.dumps(r) for r in records] + [garbage]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.jsonl"
        manifest.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        _load_manifest(manifest)
