"""The runner with perceptual columns, protocols and self-checks, end to end through the CLI.

Default protocol: DNSMOS, DistillMOS and Resemblyzer columns with bootstrap CIs in the summary,
the original's level, a ``self_check`` column that passes pcm and flags the collapsed shipped
checkpoint. Protocol A offline: stated substitutes for the ASR and the speaker model, UTMOS NaN
with the reason, and no network access at all."""
from __future__ import annotations

import json
import math
import socket

import pandas as pd
import pytest

from benchmarks import store
from test_run_cli import SHORT_IDS, call_main, write_manifest
from test_selfcheck import COLLAPSED, COLLAPSED_SHA256


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Fail on any connection attempt; an empty Hugging Face cache; no weights folder."""
    def refuse(*a, **k):
        raise AssertionError("the network was touched")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("JEPA_DAAM_WEIGHTS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.mark.parametrize("with_collapsed", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_default_protocol_perceptual_columns_and_self_check(with_collapsed, tmp_path, eval_rows, no_network):
    from audiocore.hashing import file_sha256

    collapsed = with_collapsed and COLLAPSED.is_file() and file_sha256(COLLAPSED) == COLLAPSED_SHA256
    if with_collapsed and not collapsed:
        pytest.skip(f"{COLLAPSED} is no longer the collapsed format-2 checkpoint of December 2026")
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:2])
    codecs = f"pcm,jepa-daam:{COLLAPSED}" if collapsed else "pcm"
    code, stdout, stderr = call_main(["--codecs", codecs, "--data", str(manifest), "--out", str(tmp_path / "o"),
                                      "--cache-dir", str(tmp_path / "cache"), "--no-asr"])
    assert code == 0, stderr
    assert "self-check pcm: ok" in stdout
    assert "perceptual: utmos not used (optional" in stderr  # weights not on disk: left out, no download
    summary = pd.read_csv(tmp_path / "o" / "summary.csv").set_index("codec")
    for col in ("dnsmos_ovrl", "dnsmos_p808", "distillmos", "spk_sim", "dnsmos_ovrl_ref", "distillmos_ref"):
        for stat in ("mean", "ci_low", "ci_high"):
            assert math.isfinite(summary.loc["pcm", f"{col}_{stat}"]), (col, stat)
    assert summary.loc["pcm", "spk_sim_mean"] == pytest.approx(1.0, abs=1e-4)
    assert summary.loc["pcm", "self_check"] == "ok"
    md = (tmp_path / "o" / "summary.md").read_text()
    assert "DNSMOS OVRL" in md and "DistillMOS" in md
    assert "SIM (Resemblyzer)" in md and "The uncompressed originals" in md
    manifest_json = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest_json["protocol"] == "default" and set(manifest_json["perceptual"]["quality"]) == {"dnsmos", "distillmos"}
    assert manifest_json["self_checks"]["pcm"]["status"] == "ok"
    rows = store.load_rows(tmp_path / "o")
    assert all(r["perceptual_s"] >= 0 for r in rows)
    if collapsed:
        name = f"jepa-daam:{COLLAPSED}"
        assert f"self-check {name}: FAILED output ignores input" in stdout
        assert "output ignores input" in summary.loc[name, "self_check"]
        assert f"⚠ {name}" in md
        checks = json.loads((tmp_path / "o" / "selfcheck.json").read_text())
        assert checks[name]["checks"][0]["passed"] is False


def test_protocol_a_offline_substitutes_and_never_downloads(tmp_path, eval_rows, no_network):
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    code, stdout, stderr = call_main(["--codecs", "pcm", "--data", str(manifest), "--out", str(tmp_path / "o"),
                                      "--cache-dir", str(tmp_path / "cache"), "--protocol", "A", "--offline",
                                      "--no-report"])
    assert code == 0, stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["protocol"] == "A" and m["offline"] is True
    assert any(s.startswith("ASR: faster-whisper:tiny.en in place of hubert-ctc") for s in m["substitutions"])
    assert "speaker similarity: resemblyzer in place of wavlm-sv" in m["substitutions"]
    assert "substitution: ASR: faster-whisper:tiny.en in place of hubert-ctc" in stderr
    (row,) = store.load_rows(tmp_path / "o")
    assert math.isnan(row["utmos"]) and "downloads are off (--offline)" in row["utmos_error"]
    assert row["spk_sim"] == pytest.approx(1.0, abs=1e-4) and row["asr"] == "faster-whisper:tiny.en"


def test_unknown_protocol_is_a_user_error():
    code, _, stderr = call_main(["--codecs", "pcm", "--protocol", "C"])
    assert code == 2 and "valid: default, A, B" in stderr
