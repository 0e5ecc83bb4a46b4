"""Shared fixtures: the real speech in ../shared/data (read in place, never copied)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
EVAL_MANIFEST = SHARED_DATA / "eval" / "manifest.tsv"
TRAIN_MANIFEST = SHARED_DATA / "train" / "manifest.tsv"


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="session")
def eval_manifest() -> Path:
    if not EVAL_MANIFEST.exists():
        pytest.fail(f"shared evaluation data not found at {EVAL_MANIFEST}; tests expect ../shared/data beside the repo")
    return EVAL_MANIFEST


@pytest.fixture(scope="session")
def eval_rows(eval_manifest: Path) -> list[dict[str, str]]:
    return _rows(eval_manifest)


@pytest.fixture(scope="session")
def speech_16k(eval_rows):
    """A few seconds of real transcribed speech: (float32 numpy [T], 16000, transcript)."""
    import soundfile as sf

    row = next(r for r in eval_rows if r["set"] == "librispeech_test_clean")
    wav, sr = sf.read(EVAL_MANIFEST.parent / row["path"], dtype="float32")
    return wav, sr, row["transcript"]


@pytest.fixture(scope="session")
def speech_clips_24k(eval_rows):
    """Eight different 4-s clips of real speech at 24 kHz from eight eval utterances, as a
    float32 tensor [8, 1, 96000] (one clip per speaker where possible)."""
    import numpy as np
    import soundfile as sf
    import soxr
    import torch

    clips, speakers = [], set()
    for row in eval_rows:
        if row["speaker"] in speakers or float(row["duration_s"]) < 4.5:
            continue
        wav, sr = sf.read(EVAL_MANIFEST.parent / row["path"], dtype="float32")
        clips.append(soxr.resample(wav, sr, 24_000)[:96_000].astype(np.float32))
        speakers.add(row["speaker"])
        if len(clips) == 8:
            break
    return torch.from_numpy(np.stack(clips))[:, None]


@pytest.fixture(autouse=True)
def _serial_runs_by_default(monkeypatch):
    """``python -m benchmarks.run`` without ``--jobs`` evaluates in the test's own process, so
    tests may hand the runner codecs that only exist in the test (worker processes rebuild codecs
    by name). Tests of ``--jobs N`` and ``--executor ray`` pass the flags explicitly."""
    from benchmarks import run

    monkeypatch.setattr(run, "default_jobs", lambda device: 1)
