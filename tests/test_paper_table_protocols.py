"""paper_table's protocol runs: a protocol is measured only when its models are present, and the
tables then use that run (labels name what stood in for what)."""
from __future__ import annotations

import pytest
import torch

from benchmarks import paper_table
from test_run_cli import SHORT_IDS, write_manifest


def test_missing_models_offline_are_reported_not_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("JEPA_DAAM_WEIGHTS", raising=False)
    reason = paper_table.protocol_unavailable("A", tmp_path, offline=True)
    assert reason and "downloads are off (--offline)" in reason and "\n" not in reason
    assert paper_table.measure_protocols("pcm", "default", tmp_path, offline=True) == {}
    assert "protocol A: not measured" in capsys.readouterr().err


@pytest.mark.slow
def test_protocols_run_with_random_real_architecture_models(tmp_path, eval_rows, monkeypatch):
    """UTMOS (full size), WavLM-SV and HuBERT-CTC (tiny widths) with random weights in a weights
    folder: both protocols run offline and their tables come from those runs."""
    from utmos_pytorch.utmos_torch import UTMOSModel

    from test_hubert_asr import _model as hubert_model, _save as save_hubert
    from test_perceptual import _save_wavlm, _wavlm_sv

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    weights = tmp_path / "w"
    (weights / "Blinorot" / "UTMOS-PyTorch").mkdir(parents=True)
    torch.save(UTMOSModel().state_dict(), weights / "Blinorot" / "UTMOS-PyTorch" / "utmos_state_dict.pt")
    _save_wavlm(_wavlm_sv(tiny=True), weights)
    save_hubert(hubert_model(tiny=True), weights)
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:2])
    runs = paper_table.measure_protocols("pcm", str(manifest), tmp_path / "out", weights_dir=weights, offline=True)
    assert set(runs) == {"A", "B"}
    tables = paper_table.build_tables(None, protocol_runs=runs)
    a = next(t for t in tables if "Protocol A" in t.title).frame
    row = a[a["Codec"] == "pcm"].iloc[0]
    assert row["UTMOS"] != "–" and row["SPK-SIM"] != "–"
    assert "WavLM-base-sv in place of WavLM-large" in row["source"] and "HuBERT" not in row["source"]
