"""Tests of benchmarks.regress: tolerance logic, injected regressions, config and subset handling."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import synthetic_rows, write_run

from benchmarks import regress

CONFIG = regress.DEFAULT_CONFIG


def synthetic_config(tmp_path: Path) -> Path:
    """A config over the synthetic codecs of test_report, with the committed tolerances."""
    committed = json.loads(CONFIG.read_text(encoding="utf-8"))
    from test_report import SYNTHETIC_CODECS

    cfg = dict(committed, codecs=list(SYNTHETIC_CODECS))
    path = tmp_path / "regress_config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def test_committed_config_is_valid_and_ids_exist(tmp_path: Path):
    cfg = regress.load_config(CONFIG)
    assert "pcm" in cfg.codecs and len(cfg.ids) >= 4
    subset = regress.write_subset_manifest(cfg, tmp_path / "subset.jsonl")
    lines = [json.loads(line) for line in subset.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == list(cfg.ids)
    assert all(Path(r["path"]).is_file() for r in lines)  # real audio in ../shared/data, read in place


def test_unchanged_run_passes(tmp_path: Path):
    cfg = regress.load_config(synthetic_config(tmp_path))
    ref = write_run(tmp_path / "ref", synthetic_rows())
    cur = write_run(tmp_path / "cur", synthetic_rows())
    passed, diff = regress.check(ref, cur, cfg)
    assert passed, diff[diff.status != "ok"]
    assert {"pesq_wb_mean", "wer_corpus", "bitrate_measured_mean", "tokens_per_s_mean"} <= set(diff.column)


def test_injected_pesq_regression_is_caught(tmp_path: Path):
    cfg = regress.load_config(synthetic_config(tmp_path))
    ref = write_run(tmp_path / "ref", synthetic_rows())
    cur = write_run(tmp_path / "cur", synthetic_rows(pesq_shift={"opus@12k": -0.3}))
    passed, diff = regress.check(ref, cur, cfg, out_dir=tmp_path / "out")
    assert not passed
    bad = diff[diff.status != "ok"]
    assert list(zip(bad.codec, bad.column, bad.status)) == [("opus@12k", "pesq_wb_mean", "REGRESSED")]
    assert bad.delta.item() == pytest.approx(-0.3)
    assert (tmp_path / "out" / "regress_diff.md").read_text(encoding="utf-8").count("REGRESSED") == 1


def test_small_pesq_change_within_band_passes_and_improvement_beyond_fails(tmp_path: Path):
    cfg = regress.load_config(synthetic_config(tmp_path))
    ref = write_run(tmp_path / "ref", synthetic_rows())
    assert regress.check(ref, write_run(tmp_path / "a", synthetic_rows(pesq_shift={"opus@6k": 0.05})), cfg)[0]
    passed, diff = regress.check(ref, write_run(tmp_path / "b", synthetic_rows(pesq_shift={"opus@6k": 0.5})), cfg)
    assert not passed and set(diff[diff.status != "ok"].status) == {"IMPROVED"}


def test_token_codec_bitrate_is_exact_bitstream_bitrate_relative(tmp_path: Path):
    cfg = regress.load_config(synthetic_config(tmp_path))
    ref_rows = synthetic_rows()
    ref = write_run(tmp_path / "ref", ref_rows)

    def scaled(codec: str, factor: float) -> list[dict]:
        return [dict(r, bitrate_measured=r["bitrate_measured"] * factor) if r["codec"] == codec and r["status"] == "ok"
                else r for r in ref_rows]

    # +1 % on a bitstream codec is inside the 2 % band; +1 % on a token codec is a change
    assert regress.check(ref, write_run(tmp_path / "a", scaled("opus@12k", 1.01)), cfg)[0]
    passed, diff = regress.check(ref, write_run(tmp_path / "b", scaled("encodec@6k", 1.01)), cfg)
    bad = diff[diff.status != "ok"]
    assert not passed and list(zip(bad.codec, bad.column, bad.tolerance)) == [("encodec@6k", "bitrate_measured_mean", "exact")]


def test_missing_codec_and_new_failures_fail(tmp_path: Path):
    cfg = regress.load_config(synthetic_config(tmp_path))
    rows = synthetic_rows()
    ref = write_run(tmp_path / "ref", rows)
    no_pcm = write_run(tmp_path / "a", [r for r in rows if r["codec"] != "pcm@256k"])
    passed, diff = regress.check(ref, no_pcm, cfg)
    assert not passed and "MISSING" in set(diff.status)
    failing = [dict(r, status="error", error="boom") if (r["codec"], r["utt_id"]) == ("g722", "u0") or
               (r["codec"], r["utt_id"]) == ("opus@6k", "u3") else r for r in rows]
    passed, diff = regress.check(ref, write_run(tmp_path / "b", failing), cfg)
    assert not passed and diff[diff.status == "NEW-FAILURES"].codec.tolist() == ["opus@6k"]


def test_cli_compare_mode_exit_codes(tmp_path: Path, capsys):
    cfg_path = synthetic_config(tmp_path)
    ref = write_run(tmp_path / "ref", synthetic_rows())
    same = write_run(tmp_path / "same", synthetic_rows())
    worse = write_run(tmp_path / "worse", synthetic_rows(pesq_shift={"encodec@1.5k": -0.3}))
    args = ["--reference", str(ref), "--config", str(cfg_path), "--compare"]
    assert regress.main([*args, str(same)]) == 0
    assert regress.main([*args, str(worse)]) == 1
    captured = capsys.readouterr()
    assert "REGRESSED" in captured.out and "encodec@1.5k" in captured.err
    assert regress.main([*args, str(tmp_path / "nowhere")]) == 2


def test_config_errors_name_the_problem(tmp_path: Path):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"codecs": ["pcm"], "data": {"manifest": "x.tsv", "ids": ["a"]},
                               "tolerances": {"pesq_wb_mean": {"wide": 1}}}), encoding="utf-8")
    with pytest.raises(ValueError, match="pesq_wb_mean"):
        regress.load_config(bad)
    cfg = regress.load_config(CONFIG)
    broken = regress.RegressConfig(cfg.codecs, cfg.manifest, ("no-such-utterance",), cfg.run_args, cfg.tolerances)
    with pytest.raises(ValueError, match="no-such-utterance"):
        regress.write_subset_manifest(broken, tmp_path / "s.jsonl")


def test_committed_reference_run_matches_config():
    """The committed reference holds every configured codec on every configured utterance."""
    ref = regress.DEFAULT_REFERENCE
    if not (ref / "results.jsonl").is_file():
        pytest.fail(f"{ref}/results.jsonl missing: generate it with `python -m benchmarks.regress --update`")
    from benchmarks import report

    df = report.load_results(ref)
    cfg = regress.load_config(CONFIG)
    assert set(df.codec) == set(cfg.codecs)
    assert set(df.utt_id) == set(cfg.ids)
    assert regress.check(ref, ref, cfg)[0]


@pytest.mark.slow
def test_full_regression_run_against_committed_reference(tmp_path: Path):
    """End to end: re-run the reference configuration (about 1-3 min on 2 CPU cores)."""
    assert regress.main(["--out", str(tmp_path)]) == 0


def test_wer_band_is_counted_in_word_errors(tmp_path: Path):
    """wer_corpus has a band of 2 word errors: over 8 x 20 = 160 reference words, 2 extra errors
    (+1.25 points) pass, 3 extra errors (+1.9 points) fail, whatever the absolute size."""
    cfg = regress.load_config(synthetic_config(tmp_path))
    assert next(t for t in cfg.tolerances if t.column == "wer_corpus").count == 2
    ref_rows = synthetic_rows()
    ref = write_run(tmp_path / "ref", ref_rows)

    def with_extra_errors(n: int) -> list[dict]:
        rows = [dict(r) for r in ref_rows]
        target = [r for r in rows if r["codec"] == "opus@12k"][:n]
        for r in target:
            r["wer_errors"] += 1
            r["wer"] = r["wer_errors"] / r["wer_words"]
        return rows

    passed, diff = regress.check(ref, write_run(tmp_path / "two", with_extra_errors(2)), cfg)
    assert passed, diff[diff.status != "ok"]
    row = diff[(diff.codec == "opus@12k") & (diff.column == "wer_corpus")].iloc[0]
    assert row.delta == pytest.approx(2 / 160) and row.tolerance == "±2 of 160"
    passed, diff = regress.check(ref, write_run(tmp_path / "three", with_extra_errors(3)), cfg)
    bad = diff[diff.status != "ok"]
    assert not passed and list(zip(bad.codec, bad.column, bad.status)) == [("opus@12k", "wer_corpus", "REGRESSED")]


def _with_asr_isa(run_dir: Path, isa: dict | None) -> Path:
    (run_dir / "manifest.json").write_text(json.dumps({"asr": {"backend": "faster-whisper", "cpu_isa": isa}}),
                                           encoding="utf-8")
    return run_dir


def test_asr_bands_widen_only_when_the_instruction_set_differs(tmp_path: Path):
    """Issue 16: ASR columns move with CTranslate2's instruction set. With the same (pinned) settings
    the committed bands apply; with other settings, the cross-instruction-set bands of the config."""
    cfg = regress.load_config(synthetic_config(tmp_path))
    wide = {t.column: t for t in cfg.cross_isa_tolerances}
    assert {"wer_corpus", "cer_corpus", "dwer_corpus"} <= set(wide)
    assert all(wide[c].count > next(t for t in cfg.tolerances if t.column == c).count for c in wide)
    pinned = {"CT2_FORCE_CPU_ISA": "AVX2", "CT2_USE_MKL": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    ref_rows = synthetic_rows()
    rows = [dict(r) for r in ref_rows]
    for r in [r for r in rows if r["codec"] == "opus@12k"][:4]:  # 4 more word errors: beyond 2, within 6
        r["wer_errors"] += 1
    ref = _with_asr_isa(write_run(tmp_path / "ref", ref_rows), pinned)
    same = _with_asr_isa(write_run(tmp_path / "same", rows), pinned)
    other = _with_asr_isa(write_run(tmp_path / "other", rows), {**pinned, "CT2_FORCE_CPU_ISA": "AVX512"})
    assert not regress.check(ref, same, cfg)[0]
    passed, diff = regress.check(ref, other, cfg)
    assert passed, diff[diff.status != "ok"]
    row = diff[(diff.codec == "opus@12k") & (diff.column == "wer_corpus")].iloc[0]
    assert row.tolerance == f"±{wide['wer_corpus'].count:g} of 160"

