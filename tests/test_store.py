"""benchmarks.store: whole-line appends, tolerant reading, atomic files, content-addressed cache."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import store

REPO_ROOT = Path(__file__).resolve().parents[1]


def _row(i: int, **extra) -> dict:
    return {"codec": "opus@12k", "utt_id": f"u{i}", "status": "ok", "pesq_wb": 3.0 + i / 10, **extra}


def test_append_and_read_roundtrip_keeps_nan_and_inf(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with store.ResultsWriter(path) as w:
        w.append(_row(0, si_sdr=float("inf"), wer=float("nan"), note="line\nbreak"))
        w.append(_row(1))
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b""  # two complete lines, file ends with a newline
    rows, rep = store.read_rows(path)
    assert [r["utt_id"] for r in rows] == ["u0", "u1"]
    assert math.isinf(rows[0]["si_sdr"]) and math.isnan(rows[0]["wer"])
    assert rows[0]["note"] == "line\nbreak"  # escaped, still one line on disk
    assert rep == store.LoadReport(n_lines=2, dropped_partial=0, bad_lines=(), duplicates=0)


def test_trailing_partial_line_is_dropped_even_if_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with store.ResultsWriter(path) as w:
        w.append(_row(0))
    full = store.dumps_row(_row(1))
    with open(path, "ab") as f:  # a crash after writing the whole JSON object but not its newline
        f.write(full.encode())
    rows, rep = store.read_rows(path)
    assert [r["utt_id"] for r in rows] == ["u0"]
    assert rep.dropped_partial == 1
    with open(path, "ab") as f:  # a crash in the middle of the object
        f.write(b', "pesq')
    assert [r["utt_id"] for r in store.load_rows(path)] == ["u0"]


def test_writer_cuts_partial_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with store.ResultsWriter(path) as w:
        w.append(_row(0))
    good_size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'{"codec": "opus@12k", "utt_id": "u1", "sta')
    with store.ResultsWriter(path) as w:
        assert w.dropped_partial == len(b'{"codec": "opus@12k", "utt_id": "u1", "sta')
        assert path.stat().st_size == good_size
        w.append(_row(1))
    # every line is a complete JSON object again (readers that reject bad lines also work)
    parsed = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["utt_id"] for r in parsed] == ["u0", "u1"]


def test_partial_line_only_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"codec": "pc')
    assert store.load_rows(path) == []
    with store.ResultsWriter(path) as w:
        w.append(_row(5))
    assert [r["utt_id"] for r in store.load_rows(path)] == ["u5"]


def test_last_row_wins_and_bad_lines_reported(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with store.ResultsWriter(path) as w:
        w.append(_row(0, pesq_wb=1.0))
        w.append(_row(1))
    with open(path, "ab") as f:
        f.write(b"not json\n")
    with store.ResultsWriter(path) as w:
        w.append(_row(0, pesq_wb=2.0))
    rows, rep = store.read_rows(tmp_path)  # a run folder works too
    assert {r["utt_id"]: r["pesq_wb"] for r in rows} == {"u0": 2.0, "u1": 3.1}
    assert rep.duplicates == 1 and rep.bad_lines == (3,)


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert store.load_rows(tmp_path / "nope.jsonl") == []


def test_sigkill_during_appends_never_corrupts(tmp_path: Path) -> None:
    """A writer killed with SIGKILL at a random moment leaves only complete rows behind."""
    path = tmp_path / "results.jsonl"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from benchmarks import store
        w = store.ResultsWriter({str(path)!r}, fsync=False)
        i = 0
        while True:
            w.append({{"codec": "c", "utt_id": f"u{{i}}", "status": "ok", "blob": "x" * 5000}})
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.stat().st_size > 200_000:
                break
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    rows, rep = store.read_rows(path)
    assert len(rows) > 10 and rep.bad_lines == ()
    assert [r["utt_id"] for r in rows] == [f"u{i}" for i in range(len(rows))]  # nothing skipped
    assert all(r["blob"] == "x" * 5000 for r in rows)


def test_atomic_write_json_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "manifest.json"
    store.atomic_write_json(path, {"a": 1, "x": float("nan"), "p": Path("/tmp/q"), "n": np.float32(0.5)})
    store.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temp files left


def test_atomic_save_npy_roundtrip(tmp_path: Path) -> None:
    codes = np.arange(12, dtype=np.int64).reshape(3, 4)
    store.atomic_save_npy(tmp_path / "t" / "u.npy", codes)
    np.testing.assert_array_equal(store.load_npy(tmp_path / "t" / "u.npy"), codes)


def test_cache_key_changes_with_every_part() -> None:
    base = dict(codec="opus@12k", weights=None, audio="ab" * 32, code="c1")
    k0 = store.cache_key(**base)
    assert len(k0) == 64 and k0 == store.cache_key(**dict(reversed(list(base.items()))))
    for part, other in (("codec", "opus@16k"), ("weights", "w"), ("audio", "cd" * 32), ("code", "c2")):
        assert store.cache_key(**{**base, part: other}) != k0, part


def test_result_cache_put_get_force_and_size(tmp_path: Path) -> None:
    cache = store.ResultCache(tmp_path / "cache")
    key = store.cache_key(x=1)
    assert cache.get("reconstruction", key) is None and cache.size_bytes() == 0
    wav = np.linspace(-1, 1, 16000, dtype=np.float32)
    cache.put("reconstruction", key, {"encode_s": 0.5, "vocab_sizes": [1024, 1024], "bad": float("nan")},
              {"wav16k": wav, "codes": np.zeros((2, 5), np.int64)})
    hit = cache.get("reconstruction", key)
    assert hit is not None and hit.values["encode_s"] == 0.5 and math.isnan(hit.values["bad"])
    np.testing.assert_array_equal(hit.arrays["wav16k"], wav)
    assert hit.arrays["codes"].dtype == np.int64 and set(hit.arrays) == {"wav16k", "codes"}
    assert cache.size_bytes() > wav.nbytes and cache.n_entries() == 1
    assert store.ResultCache(tmp_path / "cache", read=False).get("reconstruction", key) is None
    assert cache.get("signal", key) is None  # kinds are separate namespaces


def test_damaged_cache_entry_is_a_miss(tmp_path: Path) -> None:
    cache = store.ResultCache(tmp_path)
    key = store.cache_key(y=2)
    cache.put("signal", key, {"pesq_wb": 4.0})
    entry = next(tmp_path.rglob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:20])
    assert cache.get("signal", key) is None


def test_bad_cache_address_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        store.ResultCache(tmp_path).get("signal", "../../etc")


def test_finished_keys() -> None:
    rows = [_row(0), {"codec": "c", "utt_id": "u1", "status": "error"}, {"codec": "c", "utt_id": "u2"}]
    assert store.finished_keys(rows) == {("opus@12k", "u0"), ("c", "u1")}
    assert store.finished_keys(rows, lambda r: "wer" in r) == {("c", "u1")}


def test_format_bytes() -> None:
    assert store.format_bytes(512) == "512 B"
    assert store.format_bytes(3 * 1024 ** 2) == "3.0 MiB"
