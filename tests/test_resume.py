"""Resume and cache: a rerun recomputes nothing; a run killed with SIGKILL resumes to the same results."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from baselines import registry
from benchmarks import provenance, runconfig, store
from test_run_cli import REPO_ROOT, SHORT_IDS, call_main, write_manifest

#: Columns that legitimately differ between two runs of the same work.
VOLATILE = (*runconfig.TIMING_COLUMNS, "from_cache")


SELF_CHECK = 4
"""Encodes of one codec's self-check (benchmarks.selfcheck: two clips, silence, one repeat); it is
cached like a reconstruction, so resumed and repeated runs do not encode again."""


@pytest.fixture
def encode_calls(monkeypatch) -> Counter:
    """Count `encode` calls per codec (warm-up included) of every codec the runner builds."""
    calls: Counter = Counter()
    real = registry.build_codecs

    def counting(text: str, device: str = "cpu", weights_dir=None):
        codecs, skipped = real(text, device, weights_dir)
        for codec in codecs:
            def encode(wav, _orig=codec.encode, _name=codec.name):
                calls[_name] += 1
                return _orig(wav)
            codec.encode = encode
        return codecs, skipped

    monkeypatch.setattr(registry, "build_codecs", counting)
    return calls


def comparable(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Rows keyed by (codec, utt_id), volatile columns dropped and floats rounded to 10
    significant digits (ESTOI's BLAS reductions vary in the last bit between processes)."""
    def canon(v):
        return float(f"{v:.10g}") if isinstance(v, float) else v

    return {store.row_key(r): json.dumps({k: canon(v) for k, v in r.items() if k not in VOLATILE}, sort_keys=True)
            for r in rows}


def test_rerun_recomputes_nothing_and_cache_serves_new_out(tmp_path, eval_rows, encode_calls) -> None:
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:2])
    args = ["--codecs", "pcm,opus@12k", "--data", str(manifest), "--cache-dir", str(tmp_path / "cache"),
            "--no-asr", "--no-perceptual", "--no-report"]
    assert call_main([*args, "--out", str(tmp_path / "a")])[0] == 0
    assert encode_calls == {"pcm": 3 + SELF_CHECK, "opus@12k": 3 + SELF_CHECK}  # warm-up + 2 utterances + self-check
    results = tmp_path / "a" / "results.jsonl"
    first_bytes, first_mtime = results.read_bytes(), results.stat().st_mtime_ns

    encode_calls.clear()
    code, stdout, _ = call_main([*args, "--out", str(tmp_path / "a")])  # resume (default)
    assert code == 0 and sum(encode_calls.values()) == 0
    assert "0 rows computed, 0 from cache, 4 already done" in stdout
    assert results.read_bytes() == first_bytes and results.stat().st_mtime_ns == first_mtime

    code, stdout, _ = call_main([*args, "--out", str(tmp_path / "b")])  # new run folder, same cache
    assert code == 0 and sum(encode_calls.values()) == 0
    assert "0 rows computed, 4 from cache" in stdout
    rows_b = store.load_rows(tmp_path / "b")
    assert all(r["from_cache"] for r in rows_b)
    assert comparable(rows_b) == comparable(store.load_rows(tmp_path / "a"))

    code, stdout, _ = call_main([*args, "--out", str(tmp_path / "b"), "--force"])  # recompute everything
    assert code == 0 and encode_calls == {"pcm": 3 + SELF_CHECK, "opus@12k": 3 + SELF_CHECK}
    assert "4 rows computed" in stdout and (tmp_path / "b" / "results.prev.jsonl").exists()
    assert len((tmp_path / "b" / "results.jsonl").read_text().splitlines()) == 4


def test_changed_audio_or_code_is_not_served_from_cache(tmp_path, eval_rows, encode_calls, monkeypatch) -> None:
    import soundfile as sf

    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    args = ["--codecs", "pcm", "--cache-dir", str(tmp_path / "cache"), "--no-asr", "--no-perceptual", "--no-report"]
    assert call_main([*args, "--data", str(manifest), "--out", str(tmp_path / "a")])[0] == 0
    assert encode_calls["pcm"] == 2 + SELF_CHECK

    # same utterance id, same duration, different samples -> new checksum -> recomputed
    row = {r["id"]: r for r in eval_rows}[SHORT_IDS[0]]
    wav, sr = sf.read(REPO_ROOT.parent / "shared" / "data" / "eval" / row["path"], dtype="float32")
    sf.write(tmp_path / "quieter.wav", 0.5 * wav, sr, subtype="PCM_16")
    changed = tmp_path / "changed"
    changed.mkdir()
    write_manifest(changed, [], (), [{**row, "path": str(tmp_path / "quieter.wav")}])
    code, stdout, _ = call_main([*args, "--data", str(changed / "manifest.tsv"), "--out", str(tmp_path / "b")])
    assert code == 0 and "1 rows computed, 0 from cache" in stdout and encode_calls["pcm"] == 2 * (2 + SELF_CHECK)  # new audio: new self-check clips

    # same audio, changed codec code -> recomputed
    real = provenance.code_version()
    monkeypatch.setattr(provenance, "code_version", lambda: provenance.CodeVersion(real.codec + "0", real.metrics, "changed"))
    code, stdout, _ = call_main([*args, "--data", str(manifest), "--out", str(tmp_path / "c")])
    assert code == 0 and "1 rows computed, 0 from cache" in stdout and encode_calls["pcm"] == 3 * (2 + SELF_CHECK)


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_midway_then_resume_equals_uninterrupted_run(tmp_path, eval_rows) -> None:
    ids = (*SHORT_IDS, "ps_cards_004", "ps_cards_002", "3005-163389-0007")
    manifest = write_manifest(tmp_path, eval_rows, ids)
    common = ["--codecs", "pcm,opus@12k", "--data", str(manifest), "--no-asr", "--no-perceptual", "--no-report"]
    n_rows = 2 * len(ids)

    # uninterrupted reference, with its own cache so nothing is shared with the killed run
    assert call_main([*common, "--out", str(tmp_path / "ref"), "--cache-dir", str(tmp_path / "c_ref")])[0] == 0
    expected = comparable(store.load_rows(tmp_path / "ref"))
    assert len(expected) == n_rows

    out, cache = tmp_path / "killed", tmp_path / "c_killed"
    results = out / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.run", *common, "--out", str(out),
                             "--cache-dir", str(cache)], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None and _line_count(results) < 3:
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(store.load_rows(results))
    assert 3 <= done_before < n_rows, f"kill did not land midway ({done_before} of {n_rows} rows)"

    code, stdout, stderr = call_main([*common, "--out", str(out), "--cache-dir", str(cache)])
    assert code == 0, stderr
    assert f"{done_before} already done" in stdout
    lines = results.read_text().splitlines()
    assert len(lines) == n_rows  # nothing missing, no duplicates, no partial line
    assert [json.loads(line)["status"] for line in lines] == ["ok"] * n_rows
    assert comparable(store.load_rows(results)) == expected


def test_turning_asr_on_adds_wer_without_re_encoding(tmp_path, eval_rows, encode_calls) -> None:
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    args = ["--codecs", "pcm", "--data", str(manifest), "--out", str(tmp_path / "o"),
            "--cache-dir", str(tmp_path / "cache"), "--no-report", "--no-perceptual"]
    assert call_main([*args, "--no-asr", "--no-perceptual"])[0] == 0
    encode_calls.clear()
    code, stdout, stderr = call_main([*args, "--asr", "faster-whisper:tiny.en"])
    assert code == 0, stderr
    assert sum(encode_calls.values()) == 0 and "0 rows computed, 1 from cache, 0 already done" in stdout
    (row,) = store.load_rows(tmp_path / "o")  # the newer row wins
    assert row["asr"] == "faster-whisper:tiny.en" and row["dwer"] == 0.0 and row["wer"] <= 0.5
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 2
    code, stdout, _ = call_main([*args, "--asr", "faster-whisper:tiny.en"])  # now complete: nothing to do
    assert code == 0 and "1 already done" in stdout
