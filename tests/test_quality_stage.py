"""benchmarks.quality / benchmarks.protocols: the models of a protocol, missing ones as NaN with
the reason or left out (optional), substitutions named, reference columns computed once."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.protocols import PROTOCOLS, get_protocol
from benchmarks.quality import REF_SUFFIX, TIMING_COLUMN, QualityStage


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("JEPA_DAAM_WEIGHTS", raising=False)


def test_protocol_names():
    assert get_protocol("a").name == "A" and get_protocol("Default").name == "default"
    with pytest.raises(ValueError, match="default, A, B"):
        get_protocol("C")


def test_default_protocol_leaves_out_missing_optional_models(speech_16k):
    lines = []
    stage = QualityStage(PROTOCOLS["default"], log=lines.append)
    assert [m.name for m in stage.quality] == ["dnsmos", "distillmos"]
    assert [m.name for m in stage.speaker] == ["resemblyzer"]
    assert set(stage.left_out) == {"utmos", "wavlm-sv"} and not stage.missing
    assert any(line.startswith("perceptual: utmos not used (optional") for line in lines)
    wav = speech_16k[0][:40000]
    noisy = np.clip(wav + 0.05 * np.random.default_rng(0).standard_normal(wav.shape), -1, 1).astype(np.float32)
    row = stage.row_columns(wav, noisy)
    for col in stage.columns:
        assert math.isfinite(row[col]), col
    assert "utmos" not in row and row[TIMING_COLUMN] > 0
    assert row["dnsmos_ovrl" + REF_SUFFIX] > row["dnsmos_ovrl"]
    assert stage.reference_columns(wav) == {k: v for k, v in row.items() if k.endswith(REF_SUFFIX)}


def test_protocol_a_offline_substitutes_the_speaker_model_and_nans_utmos():
    stage = QualityStage(PROTOCOLS["A"], offline=True)
    assert [m.name for m in stage.speaker] == ["resemblyzer"]
    assert stage.substitutions == ["speaker similarity: resemblyzer in place of wavlm-sv"]
    assert set(stage.missing) == {"utmos"} and "--offline" in stage.missing["utmos"]
    cols = stage._missing_columns()
    assert math.isnan(cols["utmos"]) and "--offline" in cols["utmos_error"] and math.isnan(cols["utmos_ref"])


def test_disabled_stage_loads_nothing():
    stage = QualityStage(PROTOCOLS["default"], enabled=False)
    assert not stage.active and stage.columns == []
