"""Tests of benchmarks.paper_table and of results/reference/published.csv."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_report import synthetic_rows, write_run

from benchmarks import paper_table


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return paper_table.load_published()


def test_published_csv_rows_are_cited_and_numeric(published: pd.DataFrame):
    assert (published.source_id.str.match(r"arXiv:\d{4}\.\d{5}")).all()
    assert (published.table != "").all() and (published.protocol != "").all()
    values = pd.to_numeric(published.value, errors="coerce")
    non_numeric = published[values.isna()]
    # only ranges / composite codebook sizes as printed may be non-numeric
    assert set(non_numeric.value) <= {"12.5-25", "32768/8192"}
    assert not published.duplicated(["source_id", "table", "model", "setting", "metric"]).any()


def test_published_csv_holds_the_papers_key_numbers(published: pd.DataFrame):
    def value(source: str, model: str, metric: str, setting: str | None = None) -> str:
        rows = published[(published.source_id == source) & (published.model == model) & (published.metric == metric)]
        if setting is not None:
            rows = rows[rows.setting == setting]
        assert len(rows) == 1, (source, model, metric, setting, rows)
        return rows.value.item()

    assert value("arXiv:2512.07168", "JEPA-DAAM", "stage1_loss_final", "with DAAM") == "0.09"
    assert value("arXiv:2512.07168", "JEPA-DAAM", "stage1_loss_final", "without DAAM") == "0.17"
    assert value("arXiv:2512.07168", "JEPA-DAAM", "tokens_per_s", "mixed-radix G=7") == "47.5"
    assert value("arXiv:2512.07168", "JEPA-DAAM", "frames_per_s") == "2.5"
    assert value("arXiv:2502.04128", "X-codec2", "wer") == "2.47"
    assert value("arXiv:2502.04128", "X-codec2", "pesq_wb") == "2.43"
    assert value("arXiv:2502.04465", "FocalCodec@50", "dwer") == "2.18"
    assert value("arXiv:2502.04465", "BigCodec", "bitrate") == "1.04"
    protocol_a = set(published[published.protocol == "A"].model)
    assert {"DAC", "Encodec", "SpeechTokenizer", "Mimi", "BigCodec", "WavTokenizer", "StableCodec", "X-codec2"} <= protocol_a


def test_parameter_table_matches_paper_within_rounding(published: pd.DataFrame):
    table = paper_table.parameter_table(published)
    measured, reason = paper_table.measured_parameter_counts()
    if reason:
        pytest.skip(reason)
    frame = table.frame.set_index("Component")
    # the paper rounds to 0.1M; its inference total double-counts the predictor (paper-spec §9)
    for component in ("online encoder (= EMA target)", "stage-1 total", "decoder incl. un-projection", "stage-2 total"):
        assert abs(float(frame.loc[component, "measured / published"]) - 1.0) < 1e-3, component
    assert measured["stage-1 total"] == 2 * measured["online encoder (= EMA target)"] + measured["predictor"] + 128


def test_loss_table_reads_ablation_csv(tmp_path: Path, published: pd.DataFrame):
    csv = tmp_path / "ablation.csv"
    pd.DataFrame([
        {"run": "JEPA + DAAM", "source": "measured", "use_daam": True, "steps": 120, "final_loss": 0.31, "mean_last_10": 0.3, "config": "small"},
        {"run": "JEPA without DAAM", "source": "measured", "use_daam": False, "steps": 120, "final_loss": 0.52, "mean_last_10": 0.5, "config": "small_no_daam"},
        {"run": "paper", "source": "published", "use_daam": True, "steps": 24000, "final_loss": 0.09, "mean_last_10": None, "config": "paper"},
    ]).to_csv(csv, index=False)
    frame = paper_table.loss_table(published, csv).frame
    assert list(frame.source) == ["published (arXiv:2512.07168)"] * 2 + ["measured (results/ablation)"] * 2
    assert list(frame["final loss"]) == ["0.09", "0.17", "0.3100", "0.5200"]
    missing = paper_table.loss_table(published, tmp_path / "none.csv")
    assert len(missing.frame) == 2 and "not found" in missing.notes[-1]


def test_cli_renders_measured_and_published_rows(tmp_path: Path):
    run = write_run(tmp_path / "run", synthetic_rows(n_utts=3))
    out = tmp_path / "tables"
    assert paper_table.main(["--run", str(run), "--out", str(out), "--ablation", str(tmp_path / "none.csv")]) == 0
    md = (out / "paper_tables.md").read_text(encoding="utf-8")
    for heading in ("(a) Parameter counts", "(b) Frame rate", "(c) Stage-1 loss", "Protocol A", "Protocol B"):
        assert heading in md
    assert "measured (this run)" in md and "published (Protocol A: arXiv:2502.04128 Table 1)" in md
    # measured encodec rows sit with the published EnCodec family in the Protocol A table
    section_a = md[md.index("Protocol A"):md.index("Protocol B")]
    assert section_a.index("| Encodec | 8 codebooks") < section_a.index("| encodec@6k |") < section_a.index("| pcm@256k |")
    tex = (out / "paper_tables.tex").read_text(encoding="utf-8")
    assert tex.count(r"\begin{tabular}") == 5 and r"jepa-daam@small" in tex


def test_cli_without_run_still_renders(tmp_path: Path):
    assert paper_table.main(["--out", str(tmp_path), "--ablation", str(tmp_path / "none.csv")]) == 0
    assert "No --run given" in (tmp_path / "paper_tables.md").read_text(encoding="utf-8")
