"""Pretrained weights (audiocore.weights): local folders first, the Hugging Face cache, and the
download/offline switch. The network is never touched: downloads are mocked, and the "no
network" case points the hub endpoint at a closed port on the loopback interface."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from audiocore import weights as W

SOURCE = W.WeightsSource(repo_id="org/model", revision="0123456789abcdef0123456789abcdef01234567",
                         required=(("config.json",), ("model.safetensors", "pytorch_model.bin")),
                         optional=("tokenizer_config.json",))
COMMIT = SOURCE.revision
REAL_CONNECT = socket.create_connection


def _fill(folder: Path, names=("config.json", "model.safetensors")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text("x")
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty Hugging Face cache, no weights variable, downloads allowed by the environment,
    and any real network call turned into a test failure."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv(W.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    calls: list[str] = []

    def no_network(*a, **k):
        calls.append("network")
        raise AssertionError("the network was touched")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr("huggingface_hub.snapshot_download", no_network)
    return calls


def _fake_cache(root: Path, commit: str = COMMIT) -> Path:
    repo = root / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return _fill(repo / "snapshots" / commit)


def test_weights_dir_comes_first(tmp_path, monkeypatch):
    _fake_cache(tmp_path / "hf")
    env = _fill(tmp_path / "env" / "org" / "model")
    mine = _fill(tmp_path / "mine" / "org" / "model")
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path / "env"))
    got = W.resolve_weights("m", SOURCE, tmp_path / "mine")
    assert (got.folder, got.origin) == (mine, "weights-dir")
    got = W.resolve_weights("m", SOURCE)
    assert (got.folder, got.origin) == (env, "env")


def test_repo_name_folder_and_alternative_files(tmp_path):
    _fill(tmp_path / "model", ("config.json", "pytorch_model.bin"))
    got = W.resolve_weights("m", SOURCE, tmp_path)
    assert got.folder == tmp_path / "model" and got.files == ("config.json", "pytorch_model.bin")


def test_hf_cache_at_the_pinned_revision_records_the_commit(tmp_path):
    folder = _fake_cache(tmp_path / "hf")
    got = W.resolve_weights("m", SOURCE, download=False)
    assert got.origin == "hf-cache" and got.commit == COMMIT and got.folder.resolve() == folder.resolve()
    assert got.as_manifest()["revision"] == COMMIT


def test_another_commit_in_the_cache_is_not_the_pinned_one(tmp_path):
    _fake_cache(tmp_path / "hf", commit="f" * 40)
    with pytest.raises(W.WeightsUnavailable, match="no org/model@0123"):
        W.resolve_weights("m", SOURCE, download=False)


def test_incomplete_folder_names_what_it_lacks(tmp_path):
    _fill(tmp_path / "org" / "model", ("config.json",))
    with pytest.raises(W.WeightsUnavailable) as e:
        W.resolve_weights("m", SOURCE, tmp_path, download=False)
    msg = str(e.value)
    assert "\n" not in msg and "lacks model.safetensors|pytorch_model.bin" in msg and "hf download org/model" in msg


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_never_touches_the_network(how, monkeypatch, isolated):
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(W.WeightsUnavailable, match="downloads are off"):
        W.resolve_weights("m", SOURCE, offline=(how == "flag"))
    assert isolated == []


def test_disk_only_never_touches_the_network(isolated):
    with pytest.raises(W.WeightsUnavailable, match="weights not found"):
        W.resolve_weights("m", SOURCE, download=False)
    assert isolated == []


def test_online_download_uses_the_pinned_revision_and_records_the_commit(tmp_path, monkeypatch):
    asked = {}

    def fake_snapshot(repo_id, **kw):
        asked.update(repo_id=repo_id, **kw)
        return str(_fake_cache(tmp_path / "hf"))
    monkeypatch.setattr(W, "hub_unreachable_reason", lambda timeout=W.PROBE_TIMEOUT_S: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    got = W.resolve_weights("m", SOURCE)
    assert asked["repo_id"] == "org/model" and asked["revision"] == COMMIT
    assert set(asked["allow_patterns"]) == {"config.json", "model.safetensors", "pytorch_model.bin",
                                            "tokenizer_config.json"}
    assert got.origin == "download" and got.commit == COMMIT
    assert got.as_manifest() == {"repo_id": "org/model", "revision": COMMIT, "commit": COMMIT, "origin": "download",
                                 "folder": str(got.folder), "files": ["config.json", "model.safetensors"]}


def test_hub_errors_become_one_line(monkeypatch):
    def fail(repo_id, **kw):
        raise OSError("404 Client Error.\nRepository Not Found")
    monkeypatch.setattr(W, "hub_unreachable_reason", lambda timeout=W.PROBE_TIMEOUT_S: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fail)
    with pytest.raises(W.WeightsUnavailable) as e:
        W.resolve_weights("m", SOURCE)
    assert "\n" not in str(e.value) and "downloading org/model@0123" in str(e.value) and "404" in str(e.value)


def test_no_network_is_reported_within_seconds(monkeypatch):
    """A closed port on the loopback interface stands in for a machine without network."""
    monkeypatch.setattr(socket, "create_connection", REAL_CONNECT)  # real sockets, only to 127.0.0.1
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: pytest.fail("download attempted"))
    t0 = time.perf_counter()
    with pytest.raises(W.WeightsUnavailable) as e:
        W.resolve_weights("m", SOURCE, Path("/nonexistent-weights"), probe_timeout=2.0)
    assert time.perf_counter() - t0 < 5
    assert "no network: 127.0.0.1:9 not reachable" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_hf_hub_offline_values(value, expected, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert W.is_offline() is expected
    assert W.is_offline(True) is True
