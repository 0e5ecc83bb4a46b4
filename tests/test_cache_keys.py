"""The content-addressed cache never serves a stale value.

A change in any input of a cached value must recompute it: codec spec, codec weights hash, the
utterance's audio bytes (same path, same id), codec code, metric code, codec/metric package
versions; ``--force`` recomputes everything; the cache size is reported. Each case checks both
that the codec really ran again (encode calls) and that the new row's values belong to the new
input, not the old one.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import soundfile as sf
import torch

from audiocore.codec import Encoded
from audiocore.hashing import file_sha256
from benchmarks import components, provenance, runner, store
from test_run_cli import REPO_ROOT, SHORT_IDS, call_main, write_manifest


class GainCodec:
    """A waveform codec whose "weights" are one gain: decode(encode(x)) = gain * x + hiss.

    The hiss (-40 dBFS, fixed seed) keeps every metric finite; ``mel_distance`` grows with
    |log gain|, so a row shows which gain produced it.
    """

    sample_rate = 16000

    def __init__(self, name: str, weights_hash: str, gain: float, calls: Counter) -> None:
        self.name = name
        self.weights_hash = weights_hash
        self.gain = gain
        self.calls = calls

    def nominal_bitrate(self) -> float:
        return 256000.0

    def encode(self, wav: torch.Tensor) -> Encoded:
        self.calls[self.name, self.weights_hash] += 1
        return Encoded(codes=None, vocab_sizes=(), frame_rate=0.0, payload_bytes=2 * int(wav.shape[0]),
                       num_samples=int(wav.shape[0]), payload=wav.clone())

    def decode(self, enc: Encoded) -> torch.Tensor:
        hiss = torch.randn(enc.num_samples, generator=torch.Generator().manual_seed(0)) * 0.01
        return self.gain * enc.payload + hiss


@pytest.fixture
def setup(tmp_path, eval_rows, monkeypatch):
    """A one-utterance manifest (audio copied to tmp_path so it can be rewritten in place) and a
    ``go(name, weights, gain, out, *extra)`` that runs the CLI with one GainCodec."""
    row = {r["id"]: r for r in eval_rows}[SHORT_IDS[0]]
    wav, sr = sf.read(REPO_ROOT.parent / "shared" / "data" / "eval" / row["path"], dtype="float32")
    audio = tmp_path / "utt.wav"
    sf.write(audio, wav, sr, subtype="PCM_16")
    manifest = write_manifest(tmp_path, [], (), [{**row, "path": str(audio)}])
    calls: Counter = Counter()

    def go(name: str, weights: str, gain: float, out: str, *extra: str) -> tuple[str, dict]:
        monkeypatch.setattr(components, "build_codecs",
                            lambda text, device, weights_dir=None: ([GainCodec(name, weights, gain, calls)], []))
        # the self-check's own encodes (cached separately, counted in test_resume) stay out of these counts
        monkeypatch.setattr(runner, "run_self_checks", lambda *a, **k: {})
        code, stdout, stderr = call_main(["--codecs", name, "--data", str(manifest), "--out", str(tmp_path / out),
                                          "--cache-dir", str(tmp_path / "cache"), "--no-asr", "--no-perceptual",
                                          "--no-report", "--jobs", "1", *extra])  # GainCodec lives in this process
        assert code == 0, stderr
        (result,) = store.load_rows(tmp_path / out)
        assert result["status"] == "ok", result
        return stdout, result

    return {"go": go, "calls": calls, "audio": audio, "wav": wav, "sr": sr, "tmp": tmp_path}


def test_same_inputs_come_from_cache(setup) -> None:
    go, calls = setup["go"], setup["calls"]
    stdout, first = go("gain@1", "w1", 1.0, "a")
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@1", "w1")] == 2  # warm-up + 1
    stdout, again = go("gain@1", "w1", 1.0, "b")
    assert "0 rows computed, 1 from cache" in stdout and calls[("gain@1", "w1")] == 2
    assert again["from_cache"] is True and again["mel_distance"] == first["mel_distance"]


def test_changed_weights_hash_recomputes(setup) -> None:
    go, calls = setup["go"], setup["calls"]
    _, first = go("gain@1", "w1", 1.0, "a")
    stdout, second = go("gain@1", "w2", 0.25, "b")  # same spec, new weights
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@1", "w2")] == 2
    assert second["from_cache"] is False
    assert second["mel_distance"] > first["mel_distance"] + 0.3  # 12 dB quieter: the new weights' output


def test_weights_change_without_new_hash_would_be_stale(setup) -> None:
    """Why weights_hash must be in the key: the same spec and hash with other weights is served
    from the cache (the cache cannot see weights it is not told about)."""
    go = setup["go"]
    _, first = go("gain@1", "w1", 1.0, "a")
    _, second = go("gain@1", "w1", 0.25, "b")
    assert second["from_cache"] is True and second["mel_distance"] == first["mel_distance"]


def test_changed_codec_spec_recomputes(setup) -> None:
    go, calls = setup["go"], setup["calls"]
    go("gain@1", "w1", 1.0, "a")
    stdout, other = go("gain@2", "w1", 1.0, "b")
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@2", "w1")] == 2 and other["codec"] == "gain@2"


def test_audio_rewritten_in_place_recomputes(setup) -> None:
    go, calls = setup["go"], setup["calls"]
    _, first = go("gain@1", "w1", 1.0, "a")
    # same path, same id, same length: only the bytes change (time-reversed speech)
    sf.write(setup["audio"], setup["wav"][::-1].copy(), setup["sr"], subtype="PCM_16")
    stdout, second = go("gain@1", "w1", 1.0, "b")
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@1", "w1")] == 4
    assert second["duration_s"] == first["duration_s"] and second["pesq_wb"] != first["pesq_wb"]
    m = json.loads((setup["tmp"] / "b" / "manifest.json").read_text())
    assert m["data"][0]["sha256"] == file_sha256(setup["audio"])


def test_changed_codec_code_or_codec_package_recomputes(setup, monkeypatch) -> None:
    go, calls = setup["go"], setup["calls"]
    go("gain@1", "w1", 1.0, "a")
    real = provenance.code_version()
    monkeypatch.setattr(provenance, "code_version", lambda: provenance.CodeVersion(real.codec + "x", real.metrics, "changed"))
    stdout, _ = go("gain@1", "w1", 1.0, "b")
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@1", "w1")] == 4
    monkeypatch.undo()
    real_versions = provenance.package_versions
    monkeypatch.setattr(provenance, "package_versions",
                        lambda names=provenance.RECORDED_PACKAGES: {**real_versions(names), **({"av": "999.0"} if "av" in names else {})})
    stdout, _ = go("gain@1", "w1", 1.0, "c")  # e.g. a PyAV upgrade bringing another libopus
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@1", "w1")] == 6


def test_changed_metric_code_recomputes_metrics_not_reconstruction(setup, monkeypatch) -> None:
    go, calls = setup["go"], setup["calls"]
    go("gain@1", "w1", 1.0, "a")
    cache = store.ResultCache(setup["tmp"] / "cache")
    n_signal = len(list((cache.root / "signal").rglob("*.npz")))
    real = provenance.code_version()
    monkeypatch.setattr(provenance, "code_version", lambda: provenance.CodeVersion(real.codec, real.metrics + "x", "changed"))
    stdout, row = go("gain@1", "w1", 1.0, "b")
    assert "0 rows computed, 1 from cache" in stdout and calls[("gain@1", "w1")] == 2  # no re-encode
    assert len(list((cache.root / "signal").rglob("*.npz"))) == n_signal + 1  # metrics recomputed


def test_force_recomputes_and_cache_size_is_reported(setup) -> None:
    go, calls, tmp = setup["go"], setup["calls"], setup["tmp"]
    go("gain@1", "w1", 1.0, "a")
    stdout, row = go("gain@1", "w1", 1.0, "a", "--force")
    assert "1 rows computed, 0 from cache" in stdout and calls[("gain@1", "w1")] == 4 and row["from_cache"] is False
    files = [p for p in (tmp / "cache").rglob("*.npz")]
    size = sum(p.stat().st_size for p in files)
    line = next(l for l in stdout.splitlines() if l.startswith("results:"))
    assert f"{store.format_bytes(size)} in {len(files)} entries" in line and len(files) == 2  # recon + signal
    cache = json.loads((tmp / "a" / "manifest.json").read_text())["cache"]
    assert cache["size_bytes"] == size and cache["entries"] == 2 and cache["hits"] == 0
