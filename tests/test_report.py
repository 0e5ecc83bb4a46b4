"""Tests of benchmarks.report: loading, bootstrap CIs, pooling, failure counting, file outputs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import codebook_report, report, tables
from metrics import stats

#: spec -> (bitrate bit/s, PESQ-WB, STOI, WER, tokens/s); NaN tokens/s = bitstream codec.
SYNTHETIC_CODECS = {
    "pcm@256k": (256000.0, 4.5, 0.99, 0.03, math.nan),
    "opus@6k": (6300.0, 2.2, 0.86, 0.06, math.nan),
    "opus@12k": (12400.0, 3.4, 0.93, 0.04, math.nan),
    "codec2@1200": (1200.0, 1.3, 0.72, 0.25, math.nan),
    "encodec@1.5k": (1500.0, 1.5, 0.84, 0.09, 150.0),
    "encodec@6k": (6000.0, 2.7, 0.93, 0.04, 600.0),
    "jepa-daam@small": (665.0, 1.2, 0.60, 0.70, 47.5),
}


def synthetic_rows(n_utts: int = 8, seed: int = 1, pesq_shift: dict[str, float] | None = None) -> list[dict]:
    """Per-utterance rows in the docs/results-format.md schema for SYNTHETIC_CODECS.

    codec2@1200 fails on utterance u0; opus@6k has a NaN PESQ with a reason on u1.
    ``pesq_shift`` adds a constant to one codec's PESQ-WB (to inject a regression).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for codec, (bitrate, pesq, stoi, wer, tokens) in SYNTHETIC_CODECS.items():
        for u in range(n_utts):
            path = f"/data/set/u{u}.flac"
            row = {"codec": codec, "utt_id": f"u{u}", "set": "synthetic", "path": path, "duration_s": 3.0}
            if codec == "codec2@1200" and u == 0:
                row.update(status="error", error=f"{path}: decoder raised RuntimeError")
                rows.append(row)
                continue
            words = 20
            errors = int(rng.binomial(words, wer))
            row.update(
                status="ok", error=None,
                pesq_wb=float(np.clip(pesq + rng.normal(0, 0.1), 1.0, 4.64)) + (pesq_shift or {}).get(codec, 0.0),
                stoi=float(np.clip(stoi + rng.normal(0, 0.01), 0.0, 1.0)),
                wer=errors / words, wer_errors=errors, wer_words=words,
                bitrate_measured=bitrate if not math.isnan(tokens) else bitrate * (1 + rng.normal(0, 0.01)),
                bitrate_nominal=bitrate, tokens_per_s=tokens, frames_per_s=tokens,
                n_frames=None if math.isnan(tokens) else int(tokens * 3),
                encode_rtf=0.01 * (u + 1), decode_rtf=0.02,
            )
            if codec == "opus@6k" and u == 1:
                row.update(pesq_wb=math.nan, pesq_wb_error="No utterances detected")
            rows.append(row)
    return rows


def write_run(run_dir: Path, rows: list[dict]) -> Path:
    """Write rows as results.jsonl (NaN as JSON NaN, like the runner) into run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / report.RESULTS_FILE, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return run_dir


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", synthetic_rows())


def test_bootstrap_ci_covers_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(3.0, 0.5, size=20)
    large = rng.normal(3.0, 0.5, size=2000)
    lo_s, hi_s = stats.bootstrap_ci([small], stats.mean, 2000, 0.95, 0)
    lo_l, hi_l = stats.bootstrap_ci([large], stats.mean, 2000, 0.95, 0)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # CI width ~ 2 * 1.96 * sigma / sqrt(n): 0.44 for n=20, 0.044 for n=2000
    assert 0.3 < hi_s - lo_s < 0.6
    assert 0.03 < hi_l - lo_l < 0.06


def test_bootstrap_ci_is_deterministic_and_degenerate_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert stats.bootstrap_ci([x], stats.mean, seed=3) == stats.bootstrap_ci([x], stats.mean, seed=3)
    assert stats.bootstrap_ci([np.array([2.5])], stats.mean) == (pytest.approx(math.nan, nan_ok=True),) * 2
    lo, hi = stats.bootstrap_ci([np.full(10, 2.0)], stats.mean)
    assert lo == hi == 2.0
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_ci([x], stats.mean, confidence=1.5)


def test_load_results_skips_partial_last_line_and_keeps_last_duplicate(tmp_path: Path):
    rows = synthetic_rows(n_utts=2)
    run = write_run(tmp_path / "run", rows)
    duplicate = dict(rows[0], pesq_wb=1.11)
    with open(run / report.RESULTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(duplicate) + "\n")
        f.write('{"codec": "opus@6k", "utt_id": "u9", "pesq')  # interrupted write
    df = report.load_results(run)
    assert len(df) == len(rows)
    first = df[(df.codec == rows[0]["codec"]) & (df.utt_id == rows[0]["utt_id"])]
    assert first["pesq_wb"].item() == 1.11


def test_load_results_errors_name_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        report.load_results(tmp_path)
    bad = tmp_path / "results.jsonl"
    bad.write_text('{"codec": "a"}\nnot json\n{"codec": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"results.jsonl:2"):
        report.load_results(tmp_path)


def test_summarize_means_counts_failures_and_pooled_wer(run_dir: Path):
    df = report.load_results(run_dir)
    summary = report.summarize(df, n_resamples=500).set_index("codec")
    assert list(summary.index) == list(SYNTHETIC_CODECS)

    c2 = summary.loc["codec2@1200"]
    assert (c2.n_utts, c2.n_ok, c2.n_failed) == (8, 7, 1)
    assert c2.failures == "<file>: decoder raised RuntimeError (1)"

    ok = df[(df.codec == "encodec@6k")]
    assert summary.loc["encodec@6k", "pesq_wb_mean"] == pytest.approx(ok.pesq_wb.mean())
    assert summary.loc["encodec@6k", "pesq_wb_ci_low"] < ok.pesq_wb.mean() < summary.loc["encodec@6k", "pesq_wb_ci_high"]
    # corpus WER pools counts: sum(errors) / sum(words), not the mean of per-utterance rates
    assert summary.loc["encodec@6k", "wer_corpus"] == pytest.approx(ok.wer_errors.sum() / ok.wer_words.sum())
    assert summary.loc["encodec@6k", "wer_corpus_ci_low"] <= summary.loc["encodec@6k", "wer_corpus"]

    opus = summary.loc["opus@6k"]
    assert opus.pesq_wb_n == 7 and opus.pesq_wb_nan_reasons == "No utterances detected (1)"
    assert summary.loc["encodec@6k", "bitrate_ratio"] == pytest.approx(1.0)
    assert summary.loc["encodec@6k", "encode_rtf_median"] == pytest.approx(np.median(0.01 * np.arange(1, 9)))
    assert math.isnan(summary.loc["opus@6k", "tokens_per_s_mean"])


def test_failures_grouped_by_error_reason_with_one_example(tmp_path: Path):
    """Rows carrying ``error_reason`` are counted by it, not by their (file-specific) message; old
    rows without the column fall back to the generalised message."""
    rows = []
    for u, (n_nan, n_total) in enumerate([(3, 48000), (1, 16000), (7, 99)]):
        path = f"/data/bad/u{u}.wav"
        rows.append({"codec": "pcm", "utt_id": f"u{u}", "path": path, "status": "error",
                     "error": f"{path}: contains non-finite samples ({n_nan} NaN, 0 Inf of {n_total}) "
                              "[load: AudioError]",
                     "error_stage": "load", "error_type": "AudioError", "error_reason": "non_finite_samples"})
    rows.append({"codec": "pcm", "utt_id": "u3", "path": "/data/bad/u3.wav", "status": "error",
                 "error": "/data/bad/u3.wav: file does not exist [load: AudioError]",
                 "error_stage": "load", "error_type": "AudioError", "error_reason": "file_not_found"})
    rows.append({"codec": "pcm", "utt_id": "u4", "path": "/data/bad/u4.wav", "status": "error",
                 "error": "/data/bad/u4.wav: decoder raised RuntimeError"})  # row of an older run
    rows.append({"codec": "pcm", "utt_id": "u5", "path": "/data/u5.wav", "status": "ok", "error": None,
                 "pesq_wb": 4.5})
    summary = report.summarize(report.load_results(write_run(tmp_path / "r", rows)), n_resamples=50)
    failures = summary.set_index("codec").loc["pcm", "failures"].split("; ")
    assert failures == [
        "non_finite_samples (3), e.g. <file>: contains non-finite samples (3 NaN, 0 Inf of 48000) [load: AudioError]",
        "file_not_found (1), e.g. <file>: file does not exist [load: AudioError]",
        "<file>: decoder raised RuntimeError (1)",
    ]


def test_summarize_without_asr_or_token_columns(tmp_path: Path):
    rows = [{k: v for k, v in r.items() if not k.startswith(("wer", "tokens", "frames"))} for r in synthetic_rows(4)]
    df = report.load_results(write_run(tmp_path / "r", rows))
    summary = report.summarize(df, n_resamples=200)
    assert "wer_corpus" not in summary.columns and "pesq_wb_mean" in summary.columns
    table = tables.display_table(summary)
    assert "WER % (corpus)" not in table.columns and "tokens/s" not in table.columns


def test_write_reports_writes_all_outputs(run_dir: Path):
    summary = report.write_reports(run_dir, n_resamples=300, plots=False)
    csv = pd.read_csv(run_dir / "summary.csv")
    assert list(csv["codec"]) == list(summary["codec"])
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "| jepa-daam@small |" in md and "bootstrap" in md and "Provenance" in md
    tex = (run_dir / "summary.tex").read_text(encoding="utf-8")
    assert r"\begin{tabular}" in tex and r"WER \% (corpus)" in tex and r"\textless{}file\textgreater{}" in tex
    assert tex.count(r"\\") == len(summary) + 1  # header + one line per codec


def test_latex_escape_underscores_and_specials():
    assert tables.latex_escape("si_sdr 5% & $x$") == r"si\_sdr 5\% \& \$x\$"


def test_cli_regenerates_from_results(run_dir: Path, capsys):
    assert report.main([str(run_dir), "--n-boot", "100", "--no-plots"]) == 0
    assert "encodec@6k" in capsys.readouterr().out
    assert report.main([str(run_dir / "missing")]) == 2


# ----------------------------------------------------------------------------------------------
# Codebook health from the token files
# ----------------------------------------------------------------------------------------------
def _token_row(codec: str, utt: str, rel: str, codes: np.ndarray, vocab: list[int], padded: int = 0,
               stream_groups: list[int] | None = None) -> dict:
    """An ok row of a token codec whose ids [S, N] are in the run-relative file ``rel``."""
    return {"codec": codec, "utt_id": utt, "path": f"/data/{utt}.flac", "status": "ok", "error": None,
            "pesq_wb": 2.0, "tokens_per_s": 10.0, "n_streams": codes.shape[0], "n_frames": codes.shape[1],
            "n_payload_frames": codes.shape[1] - padded, "padded_frames": padded,
            "tokens_file": rel, "vocab_sizes": vocab, "stream_groups": stream_groups or []}


def _entropy(p: list[float]) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


@pytest.fixture()
def token_run(tmp_path: Path) -> Path:
    """Two token codecs with known id distributions, split over two utterances, plus a bitstream codec.

    tok4: V = (4, 4); stream 0 uniform over 4 ids (H = 2), stream 1 always 0 (H = 0); utterance b
    has one padding frame (ids 3, 3) that must not be counted.
    tok82: V = (8, 2); stream 0 ids 0,1,1,1 (H = H(1/4, 3/4)), stream 1 ids 0,1,0,1 (H = 1).
    """
    run_dir = tmp_path / "run"
    blocks = {
        ("tok4", "a"): (np.array([[0, 1, 2, 3], [0, 0, 0, 0]]), [4, 4], 0),
        ("tok4", "b"): (np.array([[3, 2, 1, 0, 3], [0, 0, 0, 0, 3]]), [4, 4], 1),
        ("tok82", "a"): (np.array([[0, 1], [0, 1]]), [8, 2], 0),
        ("tok82", "b"): (np.array([[1, 1], [0, 1]]), [8, 2], 0),
    }
    rows = []
    for (codec, utt), (codes, vocab, padded) in blocks.items():
        rel = f"tokens/{codec}/{utt}.npy"
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(run_dir / rel, codes.astype(np.int64))
        rows.append(_token_row(codec, utt, rel, codes, vocab, padded))
    rows += [{"codec": "opus@6k", "utt_id": u, "path": f"/data/{u}.flac", "status": "ok", "pesq_wb": 3.0}
             for u in ("a", "b")]
    return write_run(run_dir, rows)


def test_codebook_stats_exact_entropy_from_token_files(token_run: Path):
    df = report.load_results(token_run)
    stats, errors = codebook_report.codebook_stats(df, token_run)
    assert errors == {} and set(stats) == {"tok4", "tok82"}
    table = codebook_report.codebook_table(stats, errors).set_index(["codec", "level", "streams"])

    s0, s1 = table.loc[("tok4", "stream", "0")], table.loc[("tok4", "stream", "1")]
    assert (s0["n_tokens"], s0["used"], s0["usage"]) == (8, 4, 1.0)  # padding frame excluded
    assert s0["entropy_bits"] == pytest.approx(2.0) and s0["normalized_entropy"] == pytest.approx(1.0)
    assert s0["perplexity"] == pytest.approx(4.0)
    assert (s1["n_tokens"], s1["used"], s1["usage"]) == (8, 1, 0.25)
    assert s1["entropy_bits"] == pytest.approx(0.0) and s1["perplexity"] == pytest.approx(1.0)
    pooled = table.loc[("tok4", "pooled", "0-1")]  # id 0: 10 of 16, ids 1-3: 2 each
    assert pooled["entropy_bits"] == pytest.approx(_entropy([10 / 16, 2 / 16, 2 / 16, 2 / 16]))
    total = table.loc[("tok4", "total", "all")]
    assert total["entropy_bits"] == pytest.approx(2.0) and total["capacity_bits"] == pytest.approx(4.0)
    assert total["normalized_entropy"] == pytest.approx(0.5) and total["usage"] == pytest.approx(5 / 8)
    assert total["perplexity"] == pytest.approx(2.5)

    h0 = _entropy([0.25, 0.75])
    b0 = table.loc[("tok82", "stream", "0")]
    assert b0["entropy_bits"] == pytest.approx(h0) and b0["normalized_entropy"] == pytest.approx(h0 / 3)
    assert b0["usage"] == pytest.approx(2 / 8)
    b1 = table.loc[("tok82", "stream", "1")]
    assert b1["entropy_bits"] == pytest.approx(1.0) and b1["normalized_entropy"] == pytest.approx(1.0)
    assert ("tok82", "pooled", "0") in table.index and ("tok82", "pooled", "1") in table.index
    t82 = table.loc[("tok82", "total", "all")]
    assert t82["entropy_bits"] == pytest.approx(h0 + 1.0)
    assert t82["normalized_entropy"] == pytest.approx((h0 + 1.0) / 4.0)
    assert t82["usage"] == pytest.approx(4 / 10)
    assert t82["perplexity"] == pytest.approx((2 ** h0 + 2.0) / 2)


def test_write_reports_adds_codebook_files_and_columns(token_run: Path):
    summary = report.write_reports(token_run, n_resamples=100, plots=False).set_index("codec")
    assert summary.loc["tok4", "codebook_usage"] == pytest.approx(5 / 8)
    assert summary.loc["tok4", "codebook_normalized_entropy"] == pytest.approx(0.5)
    assert summary.loc["tok4", "codebook_perplexity_mean"] == pytest.approx(2.5)
    assert math.isnan(summary.loc["opus@6k", "codebook_usage"])
    assert summary.loc["opus@6k", "codebook_error"] == "not a token codec"
    csv = pd.read_csv(token_run / "codebook.csv")
    assert set(csv["codec"]) == {"tok4", "tok82"} and set(csv["level"]) == {"stream", "pooled", "total"}
    md = (token_run / "codebook.md").read_text(encoding="utf-8")
    assert "## tok4" in md and "| total | all |" in md
    table = (token_run / "summary.md").read_text(encoding="utf-8")
    assert "codebook usage %" in table and "| tok4 |" in table and "62.5" in table


def test_codebook_reasons_for_old_rows_and_missing_files(token_run: Path):
    rows = [json.loads(line) for line in (token_run / report.RESULTS_FILE).read_text().splitlines()]
    for row in rows:
        if row["codec"] == "tok4":
            row.pop("vocab_sizes")  # a row written before rows carried vocab_sizes
    (token_run / "tokens" / "tok82" / "b.npy").unlink()
    write_run(token_run, rows)
    summary = report.write_reports(token_run, n_resamples=100, plots=False).set_index("codec")
    assert math.isnan(summary.loc["tok4", "codebook_usage"])
    assert "no vocab_sizes" in summary.loc["tok4", "codebook_error"]
    assert "b.npy" in summary.loc["tok82", "codebook_error"]
    assert "Not computed" in (token_run / "codebook.md").read_text(encoding="utf-8")


def test_run_without_token_files_writes_no_codebook(run_dir: Path):
    summary = report.write_reports(run_dir, n_resamples=100, plots=False)
    assert "codebook_usage" not in summary.columns and not (run_dir / "codebook.csv").exists()


def test_infinite_values_kept_as_infinite_mean_not_dropped(tmp_path: Path):
    """SI-SDR of a bit-exact reconstruction is +inf: a real result, not a missing one."""
    rows = [{"codec": "pcm", "utt_id": f"u{i}", "path": f"/d/u{i}.wav", "status": "ok", "error": None,
             "si_sdr": math.inf, "pesq_wb": 4.64} for i in range(3)]
    rows += [{"codec": "mix", "utt_id": f"u{i}", "path": f"/d/u{i}.wav", "status": "ok", "error": None,
              "si_sdr": v, "pesq_wb": 3.0} for i, v in enumerate([10.0, math.inf, math.nan])]
    rows[-1]["si_sdr_error"] = "reference is silent"
    summary = report.summarize(report.load_results(write_run(tmp_path / "r", rows)), n_resamples=50)
    s = summary.set_index("codec")
    assert s.loc["pcm", "si_sdr_mean"] == math.inf and s.loc["pcm", "si_sdr_n"] == 3
    assert math.isnan(s.loc["pcm", "si_sdr_ci_low"]) and s.loc["pcm", "si_sdr_nan_reasons"] == ""
    assert s.loc["mix", "si_sdr_mean"] == math.inf and s.loc["mix", "si_sdr_n"] == 2
    assert s.loc["mix", "si_sdr_nan_reasons"] == "reference is silent (1)"
    summary["si_sdr_aligned_mean"] = summary["si_sdr_mean"]  # the displayed SI-SDR column
    table = tables.display_table(summary).set_index("Codec")
    assert table.loc["pcm", "SI-SDR aligned (dB)"] == "∞"
    assert r"$\infty$" in tables.latex_escape("∞")


def test_small_values_keep_significant_digits():
    assert tables.fmt_sig(7.4e-05, 3) == "0.000074" and tables.fmt_sig(0.1874, 3) == "0.187"
    assert tables.fmt_sig(0.000776, 1, 100.0) == "0.078" and tables.fmt_sig(0.625, 1, 100.0) == "62.5"
    assert tables.fmt_sig(0.0, 3) == "0.000" and tables.fmt_sig(math.nan, 3) == "–"
    summary = pd.DataFrame({"codec": ["pcm"], "n_ok": [3], "n_failed": [0], "failures": [""],
                            "encode_rtf_median": [7.4e-05], "decode_rtf_median": [1.2e-05]})
    table = tables.display_table(summary)
    assert table["enc. RTF (median)"].item() == "0.000074" and table["dec. RTF (median)"].item() == "0.000012"


def test_old_rows_utt_id_replaced_only_as_whole_token(tmp_path: Path):
    """Short ids ("a", "e") must not be replaced inside words of the message."""
    rows = [{"codec": "pcm", "utt_id": u, "path": f"/d/{u}.wav", "status": "error",
             "error": f"/d/{u}.wav: cannot parse header, utterance {u}"} for u in ("a", "e")]
    summary = report.summarize(report.load_results(write_run(tmp_path / "r", rows)), n_resamples=10)
    assert summary["failures"].item() == "<file>: cannot parse header, utterance <utt> (2)"


def test_codebook_csv_counts_are_integers(token_run: Path):
    report.write_reports(token_run, n_resamples=50, plots=False)
    lines = (token_run / "codebook.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(",")))
    assert first["vocab_size"] == "4" and first["used"] == "4" and first["n_tokens"] == "8"
    total = next(dict(zip(header, line.split(","))) for line in lines if ",total," in line)
    assert total["vocab_size"] == "" and total["used"] == ""
    md = (token_run / "codebook.md").read_text(encoding="utf-8")
    assert "log2 V (bits)" in md and "| total | all | – | 16 | – | 62.5 | 2.000 | 4.0 | 0.500 | 2.5 |" in md
