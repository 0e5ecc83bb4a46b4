"""report.html and the leaderboard without a browser: utterance choice, the listening grid's files and
budget, the table's arrows/units/sort values/self-check flags, escaping, and the merge rules."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from benchmarks import html_report, leaderboard, listening, report
from test_report import synthetic_rows, write_run


def _rows(specs: list[tuple[str, float, str]], codecs=("a", "b")) -> list[dict]:
    """ok rows for (utt_id, duration, set) x codecs."""
    return [{"codec": c, "utt_id": u, "set": s, "path": f"/x/{u}.flac", "duration_s": d, "status": "ok",
             "bitrate_measured": 1000.0 * (i + 1), "pesq_wb": 2.0, "stoi": 0.9}
            for u, d, s in specs for i, c in enumerate(codecs)]


def test_choose_utterances_spans_durations_and_sets():
    specs = [(f"u{i}", float(i + 1), "A") for i in range(9)]
    assert listening.choose_utterances(_rows(specs), 3) == ["u0", "u4", "u8"]  # shortest, median, longest
    assert listening.choose_utterances(_rows(specs), 1) == ["u4"]
    assert listening.choose_utterances(_rows(specs), 0) == []
    assert sorted(listening.choose_utterances(_rows(specs[:2]), 5)) == ["u0", "u1"]
    # two sets: the second pick prefers the set not yet picked, near its position
    mixed = [(f"a{i}", float(i + 1), "A") for i in range(6)] + [("b0", 3.5, "B")]
    assert {u[0] for u in listening.choose_utterances(_rows(mixed), 2)} == {"a", "b"}
    # failed utterances are not candidates
    rows = _rows(specs)
    for r in rows:
        if r["utt_id"] == "u8":
            r["status"] = "error"
    assert "u8" not in listening.choose_utterances(rows, 3)


def _tone(seconds: float, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_grid_writes_flac_and_spectrograms_and_states_sizes(tmp_path: Path):
    rows = _rows([("u0", 2.0, "A"), ("u1", 12.0, "A")], codecs=("good", "broken", "failed"))
    for r in rows:
        if r["codec"] == "failed":
            r.update(status="error", error_reason="encode:RuntimeError")
    lengths = {"u0": 2.0, "u1": 12.0}

    def original(row):
        return _tone(lengths[row["utt_id"]])

    def reconstruct(codec, row):
        if codec == "broken":
            raise RuntimeError("codec not available now (weights missing)")
        return _tone(lengths[row["utt_id"]], 880.0), "as scored (run cache)", "key"

    grid = listening.build_grid(tmp_path, rows, 2, original, reconstruct, max_seconds=5.0)
    assert [u.utt_id for u in grid.utterances] == ["u0", "u1"]
    long = grid.utterances[1]
    assert long.cut and not grid.utterances[0].cut
    labels = [c.label for c in long.clips]
    assert labels[0] == "original" and set(labels[1:]) == {"good", "broken", "failed"}
    by_label = {c.label: c for c in long.clips}
    flac = tmp_path / by_label["good"].audio
    info = sf.info(str(flac))
    assert (info.samplerate, info.format, info.subtype) == (16000, "FLAC", "PCM_16")
    assert info.duration == pytest.approx(5.0)  # cut to max_seconds
    assert (tmp_path / by_label["good"].spectrogram).read_bytes()[:4] == b"\x89PNG"
    assert by_label["broken"].audio is None and "weights missing" in by_label["broken"].note
    assert by_label["failed"].audio is None and "encode:RuntimeError" in by_label["failed"].note
    assert ("PESQ-WB", "2.00") in by_label["good"].scores
    on_disk = sum(p.stat().st_size for p in (tmp_path / "listen").rglob("*") if p.is_file())
    assert grid.total_bytes == on_disk and grid.omitted == 0
    # rebuilding replaces the folder; a small budget leaves clips out and says so
    small = listening.build_grid(tmp_path, rows, 2, original, reconstruct, max_seconds=5.0,
                                 budget_bytes=on_disk // 3)
    assert small.omitted > 0 and small.total_bytes <= on_disk // 3 and "budget" in small.notes[0]
    assert sum(p.stat().st_size for p in (tmp_path / "listen").rglob("*") if p.is_file()) == small.total_bytes


def _summary() -> pd.DataFrame:
    return pd.DataFrame([
        {"codec": "pcm", "n_ok": 3, "n_failed": 0, "failures": "", "pesq_wb_mean": 4.64, "pesq_wb_ci_low": 4.6,
         "pesq_wb_ci_high": 4.64, "si_sdr_aligned_mean": math.inf, "wer_corpus": 0.1, "wer_corpus_ci_low": 0.0,
         "wer_corpus_ci_high": 0.2, "bitrate_measured_mean": 256000.0, "encode_rtf_median": 7.4e-05,
         "self_check": "ok"},
        {"codec": "jepa-daam@small", "n_ok": 2, "n_failed": 1, "failures": "encode:RuntimeError (1)",
         "pesq_wb_mean": 1.1, "pesq_wb_ci_low": 1.0, "pesq_wb_ci_high": 1.2, "si_sdr_aligned_mean": -26.0,
         "wer_corpus": math.nan, "wer_corpus_nan_reasons": "asr unavailable (2)", "bitrate_measured_mean": 714.3,
         "encode_rtf_median": 0.013, "self_check": "output ignores input"},
    ])


def test_summary_table_headers_cells_and_flags():
    table = html_report.summary_table(_summary())
    labels = [h["label"] for h in table.headers]
    assert labels[:3] == ["codec", "self-check", "utterances"] and labels[-1] == "failures"
    head = {h["label"]: h for h in table.headers}
    assert (head["PESQ-WB"]["arrow"], head["PESQ-WB"]["better"]) == ("↑", "up")
    assert (head["WER (corpus)"]["arrow"], head["WER (corpus)"]["unit"]) == ("↓", "%")
    assert head["bitrate measured"]["unit"] == "kbit/s"
    assert "ESTOI" not in head  # not in the summary: no empty column
    pcm, jepa = ({labels[i]: c for i, c in enumerate(row)} for row in table.rows)
    assert (pcm["PESQ-WB"].text, pcm["PESQ-WB"].ci, pcm["PESQ-WB"].sort) == ("4.64", "[4.60, 4.64]", "4.64")
    assert (pcm["SI-SDR aligned"].text, pcm["SI-SDR aligned"].sort) == ("∞", "Infinity")
    assert pcm["WER (corpus)"].text == "10.0" and float(pcm["WER (corpus)"].sort) == pytest.approx(10.0)
    assert pcm["encode RTF"].text == "0.000074"
    assert pcm["bitrate measured"].text == "256.00"
    assert (jepa["WER (corpus)"].text, jepa["WER (corpus)"].sort) == ("–", "")
    assert "asr unavailable" in jepa["WER (corpus)"].title
    assert jepa["codec"].text.startswith("⚠") and "flag" in jepa["self-check"].cls
    assert pcm["self-check"].text == "✓ ok"


def _fake_audio():
    class Audio:
        def original(self, row):
            return _tone(1.0)

        def reconstruct(self, codec, row):
            return _tone(1.0, 660.0), "as scored (run cache)", ""
    return Audio()


def test_run_page_is_escaped_and_complete(tmp_path: Path):
    rows = synthetic_rows(n_utts=3)
    rows += [{**r, "codec": "<script>alert(1)</script>"} for r in rows if r["codec"] == "opus@6k"]
    run = write_run(tmp_path / "run", rows)
    (run / "skipped.json").write_text(json.dumps([{"codec": "mimi@8", "reason": "weights not found <here>"}]))
    (run / "manifest.json").write_text(json.dumps({"command": "python -m benchmarks.run --codecs x",
                                                   "git_revision": "abc123", "device": "cpu test", "asr": None,
                                                   "failures_by_reason": {"encode:RuntimeError": 1}}))
    with pytest.raises(FileNotFoundError, match="python -m benchmarks.report"):
        html_report.write_run_report(run, listen=0)  # no summary.csv yet
    report.write_reports(run, plots=False)
    page = html_report.write_run_report(run, listen=2, audio=_fake_audio())
    html = page.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "weights not found &lt;here&gt;" in html and "mimi@8" in html
    assert "abc123" in html and "off (--no-asr)" in html and "encode:RuntimeError" in html
    assert html.count('<img class="plot"') >= 1 and "data:image/" in html
    srcs = re.findall(r'<audio[^>]* src="([^"]+)"', html)
    assert len(srcs) == 2 * (1 + 8) - 1 and all  # codec2@1200 failed on u0: no player((run / s).is_file() for s in srcs)
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    assert oct(page.stat().st_mode & 0o777) == "0o644"
    # --listen 0: no grid, no folder
    html_report.write_run_report(run, listen=0)
    assert not (run / "listen").exists() and "<audio" not in page.read_text(encoding="utf-8")


def _run_with_manifest(folder: Path, codecs: dict[str, float], data: list[tuple[str, str]], when: str,
                       asr: object = None) -> Path:
    rows = [{"codec": c, "utt_id": u, "set": "s", "path": f"/x/{u}.flac", "duration_s": 2.0, "status": "ok",
             "pesq_wb": p, "bitrate_measured": 1000.0} for c, p in codecs.items() for u, _ in data]
    write_run(folder, rows)
    manifest = {"command": f"python -m benchmarks.run --out {folder.name}", "finished": when, "asr": asr,
                "resampler": "soxr VHQ 1", "metric_sample_rate": 16000, "length_rule": "trim",
                "data": [{"utt_id": u, "path": f"/x/{u}.flac", "sha256": h} for u, h in data]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    report.write_reports(folder, plots=False)
    return folder


def test_leaderboard_newest_run_wins_and_links(tmp_path: Path):
    data = [("u0", "h0"), ("u1", "h1")]
    old = _run_with_manifest(tmp_path / "old", {"pcm": 4.5, "opus@6k": 2.0}, data, "2026-01-01T00:00:00+00:00")
    new = _run_with_manifest(tmp_path / "new", {"opus@6k": 2.5, "codec2@700C": 1.5}, data, "2026-02-01T00:00:00+00:00")
    runs = [leaderboard.load_run(p) for p in (new, old)]
    merged, winner = leaderboard.merge(runs)
    assert list(merged["codec"]) == ["opus@6k", "codec2@700C", "pcm"]
    assert merged.set_index("codec").loc["opus@6k", "pesq_wb_mean"] == pytest.approx(2.5)
    assert winner["opus@6k"].path == new and winner["pcm"].path == old
    out = leaderboard.write_leaderboard(tmp_path / "board" / "lb.html", [old, new])
    html = out.read_text(encoding="utf-8")
    assert 'href="../new/summary.md"' in html  # no report.html in these runs: link to their summary
    html_report.write_run_report(new, listen=0)
    html = leaderboard.write_leaderboard(tmp_path / "board" / "lb.html", [old, new]).read_text(encoding="utf-8")
    assert 'href="../new/report.html"' in html and 'href="../old/summary.md"' in html


def test_leaderboard_refuses_other_data_or_protocol_unless_told(tmp_path: Path):
    a = _run_with_manifest(tmp_path / "a", {"pcm": 4.5}, [("u0", "h0"), ("u1", "h1")], "2026-01-01")
    b = _run_with_manifest(tmp_path / "b", {"opus@6k": 2.0}, [("u0", "h0"), ("u1", "CHANGED")], "2026-01-02")
    c = _run_with_manifest(tmp_path / "c", {"opus@6k": 2.0}, [("u0", "h0"), ("u1", "h1")], "2026-01-03",
                           asr={"spec": "faster-whisper:tiny.en", "model": "tiny.en"})
    with pytest.raises(leaderboard.MergeRefused, match=r"different data .*1 with different audio.*--allow-mixed") as e:
        leaderboard.write_leaderboard(tmp_path / "x.html", [a, b])
    assert "\n" not in str(e.value)
    with pytest.raises(leaderboard.MergeRefused, match=r"differ in protocol: ASR 'off' vs \{'spec'"):
        leaderboard.write_leaderboard(tmp_path / "x.html", [a, c])
    html = leaderboard.write_leaderboard(tmp_path / "x.html", [a, b, c], allow_mixed=True).read_text(encoding="utf-8")
    assert "Mixed runs" in html and "different data" in html and "differ in protocol" in html
