"""Bad input end to end: one manifest holding every kind of broken or odd file, run through
``python -m benchmarks.run --codecs pcm,opus@12k --no-asr``.

Every file is generated in ``tmp_path`` from one real utterance of ``../shared/data/eval``. What
each case must give (documented in docs/data.md, "Bad input in a run"):

* unusable input -> one ``status == "error"`` row per codec naming the file, with a short
  ``error_reason`` the run counts;
* loadable-but-odd input -> an ``ok`` row whose affected metrics are NaN with a reason, and an
  ``input_warning`` for properties that qualify every metric (downmix, clipping, silence).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from benchmarks import store
from metrics import signal as sm
from test_run_cli import REPO_ROOT, call_main

SOURCE_ID = "ps_cards_003"  # 1-2 s of clean read speech, 16 kHz FLAC
CODECS = ("pcm", "opus@12k")

#: utt id -> error_reason of the error rows it must give (both codecs).
ERRORS = {
    "missing": "file_not_found",
    "zero_bytes": "empty_file",
    "header_only": "no_samples",
    "nan_samples": "non_finite_samples",
    "inf_samples": "non_finite_samples",
    "truncated_flac": "corrupt_audio",
    "text_as_wav": "not_audio",
    "wrong_duration": "duration_mismatch",
}
#: utt id -> a word the error message must contain besides the file name.
ERROR_WORDS = {
    "missing": "not found", "zero_bytes": "0 bytes", "header_only": "0 frames", "nan_samples": "1 NaN",
    "inf_samples": "1 Inf", "truncated_flac": "truncated", "text_as_wav": "not a readable audio file",
    "wrong_duration": "9.999",
}
OK_IDS = ("short_10ms", "short_200ms", "silent", "clipped", "stereo", "sr8k", "sr48k", "good")


def _build_manifest(folder: Path, eval_rows: list[dict[str, str]]) -> tuple[Path, dict[str, Path]]:
    """Write the bad files and a TSV manifest (id, path, duration_s) listing them."""
    row = {r["id"]: r for r in eval_rows}[SOURCE_ID]
    wav, sr = sf.read(REPO_ROOT.parent / "shared" / "data" / "eval" / row["path"], dtype="float32")
    assert sr == 16000 and wav.ndim == 1
    files: dict[str, Path] = {}

    def put(utt: str, name: str, data: np.ndarray | None = None, rate: int = sr, **kw) -> Path:
        path = folder / name
        if data is not None:
            sf.write(path, data, rate, **kw)
        files[utt] = path
        return path

    put("missing", "no_such_file.wav")
    put("zero_bytes", "zero.wav").write_bytes(b"")
    put("header_only", "header_only.wav", np.zeros(0, np.float32))
    nan = wav.copy()
    nan[100] = np.nan
    put("nan_samples", "nan.wav", nan, subtype="FLOAT")
    inf = wav.copy()
    inf[200] = -np.inf
    put("inf_samples", "inf.wav", inf, subtype="FLOAT")
    full = put("good", "good.flac", wav)
    data = full.read_bytes()
    put("truncated_flac", "truncated.flac").write_bytes(data[: len(data) // 2])
    put("text_as_wav", "notes.wav").write_text("this is not audio\n" * 50)
    files["wrong_duration"] = full
    put("short_10ms", "short_10ms.wav", wav[4000:4160])  # < one 20 ms Opus frame, < PESQ/STOI minimum
    put("short_200ms", "short_200ms.wav", wav[4000:7200])  # < PESQ's 0.25 s
    put("silent", "silent.wav", np.zeros(2 * sr, np.float32))
    put("clipped", "clipped.wav", np.clip(8 * wav, -1, 1))
    put("stereo", "stereo.wav", np.stack([wav, 0.5 * wav], axis=1))
    put("sr8k", "sr8k.wav", soxr.resample(wav, sr, 8000), rate=8000)
    put("sr48k", "sr48k.wav", soxr.resample(wav, sr, 48000), rate=48000)

    durations = {"wrong_duration": "9.999", "good": f"{wav.shape[0] / sr:.3f}"}
    order = [*ERRORS, *OK_IDS]
    lines = ["id\tpath\tduration_s"] + [f"{u}\t{files[u]}\t{durations.get(u, '')}" for u in order]
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest, files


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, eval_rows):
    tmp = tmp_path_factory.mktemp("bad_input")
    manifest, files = _build_manifest(tmp, eval_rows)
    out = tmp / "run"
    code, stdout, stderr = call_main(["--codecs", ",".join(CODECS), "--data", str(manifest), "--out", str(out),
                                      "--cache-dir", str(tmp / "cache"), "--no-asr", "--no-perceptual", "--device", "cpu"])
    rows = {store.row_key(r): r for r in store.load_rows(out)}
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out, "rows": rows, "files": files}


def test_run_completes_with_one_row_per_pair(bad_run) -> None:
    assert bad_run["code"] == 0, bad_run["stderr"]
    expected = {(c, u) for c in CODECS for u in (*ERRORS, *OK_IDS)}
    assert set(bad_run["rows"]) == expected
    lines = (bad_run["out"] / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(expected)  # no duplicates, no partial lines
    assert all(json.loads(line)["status"] in ("ok", "error") for line in lines)


@pytest.mark.parametrize("utt", list(ERRORS))
def test_unusable_input_is_an_error_row_naming_file_and_reason(bad_run, utt) -> None:
    for codec in CODECS:
        row = bad_run["rows"][(codec, utt)]
        assert row["status"] == "error", row
        assert row["error_reason"] == ERRORS[utt]
        assert row["error_stage"] == "load" and row["error_type"] == "AudioError"
        assert str(bad_run["files"][utt]) in row["error"] and ERROR_WORDS[utt] in row["error"]
        assert "\n" not in row["error"]
        assert "pesq_wb" not in row  # an error row carries no substitute metric values


def test_failures_counted_by_reason(bad_run) -> None:
    expected: dict[str, int] = {}
    for reason in ERRORS.values():
        expected[reason] = expected.get(reason, 0) + len(CODECS)
    line = next(l for l in bad_run["stdout"].splitlines() if l.startswith("failed rows by reason"))
    printed = dict((m[1], int(m[2])) for m in re.finditer(r"(\w+) (\d+)(?:,|$)", line.split(":", 1)[1]))
    assert printed == expected
    assert f"({sum(expected.values())} in results)" in line
    manifest = json.loads((bad_run["out"] / "manifest.json").read_text())
    assert manifest["failures_by_reason"] == expected and manifest["rows_error"] == sum(expected.values())
    assert f"{len(OK_IDS) * 2} rows computed" in bad_run["stdout"]


def _nan_with(row: dict, metric: str, words: str) -> None:
    assert math.isnan(row[metric]), (metric, row[metric])
    assert words in row[f"{metric}_error"], (metric, row[f"{metric}_error"])


def test_too_short_clips_score_nan_with_reason(bad_run) -> None:
    for codec in CODECS:
        tiny, short = bad_run["rows"][(codec, "short_10ms")], bad_run["rows"][(codec, "short_200ms")]
        assert tiny["status"] == short["status"] == "ok"
        for row in (tiny, short):
            for m in ("pesq_wb", "pesq_nb"):
                _nan_with(row, m, "too short for PESQ")
            for m in ("stoi", "estoi"):
                _nan_with(row, m, "too short for")
            assert math.isfinite(row["mel_distance"]) and row["bitrate_measured"] > 0
        assert abs(tiny["duration_s"] - 0.01) < 1e-9
    # Opus pads the 10 ms clip to one 20 ms frame; the runner trims the output to the input length
    assert bad_run["rows"][("opus@12k", "short_10ms")]["trimmed_samples"] <= 160


def test_silent_input_scores_nan_not_zero(bad_run) -> None:
    for codec in CODECS:
        row = bad_run["rows"][(codec, "silent")]
        assert row["status"] == "ok" and row["input_warning"] == "silent: all samples are zero"
        for m in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_sdr_aligned", "delay_ms"):
            _nan_with(row, m, "silent")


def test_clipped_and_stereo_are_scored_and_flagged(bad_run) -> None:
    for codec in CODECS:
        clipped, stereo = bad_run["rows"][(codec, "clipped")], bad_run["rows"][(codec, "stereo")]
        assert clipped["status"] == stereo["status"] == "ok"
        assert re.fullmatch(r"clipped: [\d.]+ % of samples at >= 0\.999 of full scale", clipped["input_warning"])
        assert stereo["input_warning"] == "2 channels averaged to mono"
        for row in (clipped, stereo):
            assert math.isfinite(row["pesq_wb"]) and math.isfinite(row["stoi"])
        good = bad_run["rows"][(codec, "good")]
        assert "input_warning" not in good
    # the stereo file's channels are speech and 0.5 x speech: its mono reference is 0.75 x speech,
    # which pcm reproduces essentially exactly
    assert bad_run["rows"][("pcm", "stereo")]["pesq_wb"] > 4.5


@pytest.mark.parametrize("utt, rate", [("sr8k", 8000), ("sr48k", 48000)])
def test_other_source_rates_are_resampled(bad_run, utt, rate) -> None:
    for codec in CODECS:
        row = bad_run["rows"][(codec, utt)]
        assert row["status"] == "ok" and row["source_sample_rate"] == rate and "input_warning" not in row
    assert bad_run["rows"][("pcm", utt)]["pesq_wb"] > 4.5  # 16 kHz PCM loses nothing measurable
    assert 1.0 < bad_run["rows"][("opus@12k", utt)]["pesq_wb"] < 4.5


def test_summary_counts_failed_rows(bad_run) -> None:
    import pandas as pd

    summary = pd.read_csv(bad_run["out"] / "summary.csv").set_index("codec")
    for codec in CODECS:
        assert summary.loc[codec, "n_failed"] == len(ERRORS) and summary.loc[codec, "n_ok"] == len(OK_IDS)


# ---- the metric rules the run relies on, checked directly ------------------------------------


def test_stoi_refuses_silent_reference_and_short_input() -> None:
    rng = np.random.default_rng(0)
    speechlike = rng.standard_normal(16000).astype(np.float32) * 0.1
    for fn in (sm.stoi, sm.estoi):
        silent = fn(np.zeros(16000), speechlike, 16000)
        assert math.isnan(silent.value) and "silent" in silent.error
        for n in (1, 100, int(sm.STOI_MIN_SECONDS * 16000) - 1):
            short = fn(speechlike[:n], speechlike[:n], 16000)
            assert math.isnan(short.value) and "too short" in short.error, (n, short)
        at_min = fn(speechlike[:6600], speechlike[:6600], 16000)  # 0.4125 s: computed, identical -> 1
        assert at_min.error is None and at_min.value > 0.99
