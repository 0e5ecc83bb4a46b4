"""`python -m benchmarks.run` end to end on real eval utterances (pcm and Opus 12k)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import components, run, runner, store

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Short real utterances from ../shared/data/eval (1.1 s - 2.1 s, with transcripts).
SHORT_IDS = ("ps_cards_001", "ps_cards_003", "1089-134691-0000")
MANIFEST_COLUMNS = ("id", "set", "path", "sample_rate", "num_samples", "duration_s", "speaker", "transcript", "license")


def write_manifest(folder: Path, eval_rows: list[dict[str, str]], ids: tuple[str, ...],
                   extra: list[dict[str, str]] = ()) -> Path:
    """A TSV manifest (shared/data layout) of the given eval ids with absolute paths, plus ``extra`` rows."""
    by_id = {r["id"]: r for r in eval_rows}
    eval_dir = REPO_ROOT.parent / "shared" / "data" / "eval"
    rows = [{**by_id[i], "path": str(eval_dir / by_id[i]["path"])} for i in ids] + list(extra)
    path = folder / "manifest.tsv"
    lines = ["\t".join(MANIFEST_COLUMNS)] + ["\t".join(r.get(c, "") for c in MANIFEST_COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def call_main(argv: list[str]) -> tuple[int, str, str]:
    """Run ``benchmarks.run.main`` in-process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, eval_rows):
    """One run over 3 good utterances + a missing file + a wrong manifest duration."""
    tmp = tmp_path_factory.mktemp("cli")
    good = {r["id"]: r for r in eval_rows}["ps_cards_003"]
    bad = [
        {**good, "id": "broken_path", "path": str(tmp / "no_such_file.flac")},
        {**good, "id": "wrong_duration", "path": str(REPO_ROOT.parent / "shared/data/eval" / good["path"]),
         "duration_s": "9.999"},
    ]
    manifest = write_manifest(tmp, eval_rows, SHORT_IDS, bad)
    out = tmp / "run"
    code, stdout, stderr = call_main(["--codecs", "pcm,opus@12k", "--data", str(manifest), "--out", str(out),
                                      "--cache-dir", str(tmp / "cache"), "--no-asr", "--no-perceptual", "--device", "auto"])
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out, "manifest": manifest}


def test_exit_status_and_files(cli_run) -> None:
    assert cli_run["code"] == 0, cli_run["stderr"]
    names = {p.name for p in cli_run["out"].iterdir()}
    assert {"results.jsonl", "summary.csv", "summary.md", "manifest.json", "skipped.json"} <= names
    assert json.loads((cli_run["out"] / "skipped.json").read_text()) == []


def test_one_row_per_codec_and_utterance(cli_run) -> None:
    rows = store.load_rows(cli_run["out"])
    ids = (*SHORT_IDS, "broken_path", "wrong_duration")
    assert sorted(store.row_key(r) for r in rows) == sorted((c, u) for c in ("pcm", "opus@12k") for u in ids)
    assert len(cli_run["out"].joinpath("results.jsonl").read_text().splitlines()) == len(rows)  # no duplicates
    required = ("codec", "utt_id", "set", "path", "duration_s", "status", "error", "pesq_wb", "pesq_nb", "stoi",
                "estoi", "si_sdr", "si_sdr_aligned", "delay_ms", "mel_distance", "bitrate_measured",
                "bitrate_nominal", "tokens_per_s", "frames_per_s", "encode_s", "decode_s", "encode_rtf",
                "decode_rtf", "n_streams", "n_frames", "codec_sample_rate", "code_version")
    for r in rows:
        if r["status"] == "ok":
            assert not [k for k in required if k not in r], r["utt_id"]


def test_metric_values_are_plausible(cli_run) -> None:
    ok = {store.row_key(r): r for r in store.load_rows(cli_run["out"]) if r["status"] == "ok"}
    assert len(ok) == 2 * len(SHORT_IDS)
    for utt in SHORT_IDS:
        pcm, opus = ok[("pcm", utt)], ok[("opus@12k", utt)]
        assert pcm["pesq_wb"] > 4.4 and pcm["stoi"] > 0.99 and pcm["bitrate_measured"] == 256000.0
        assert pcm["codec_sample_rate"] == 16000 and opus["codec_sample_rate"] == 48000
        assert 1.0 < opus["pesq_wb"] < pcm["pesq_wb"]
        assert abs(opus["bitrate_measured"] / 12000 - 1) < 0.25  # VBR on 1-2 s clips
        assert opus["encode_rtf"] > 0 and opus["decode_rtf"] > 0
        assert math.isnan(opus["tokens_per_s"]) and opus["tokens_per_s_error"]
        assert "wer" not in opus  # --no-asr
        assert pcm["from_cache"] is False


def test_bad_inputs_become_error_rows(cli_run) -> None:
    rows = {store.row_key(r): r for r in store.load_rows(cli_run["out"])}
    for codec in ("pcm", "opus@12k"):
        broken = rows[(codec, "broken_path")]
        assert broken["status"] == "error"
        assert "no_such_file.flac" in broken["error"] and "not found" in broken["error"]
        assert "\n" not in broken["error"] and broken["error_stage"] == "load"
        wrong = rows[(codec, "wrong_duration")]
        assert wrong["status"] == "error" and "9.999" in wrong["error"] and "duration" in wrong["error"]


def test_summary_table_printed_and_written(cli_run) -> None:
    stdout = cli_run["stdout"]
    pcm_line = next(line for line in stdout.splitlines() if line.startswith("| pcm |"))
    assert "3 / 2" in pcm_line  # 3 ok, 2 failed
    assert any(line.startswith("| opus@12k |") for line in stdout.splitlines())
    assert "PESQ-WB" in stdout and "cache" in stdout
    assert (cli_run["out"] / "summary.md").read_text().count("| opus@12k |") == 1
    assert "opus@12k" in (cli_run["out"] / "summary.csv").read_text()


def test_manifest_records_provenance(cli_run) -> None:
    m = json.loads((cli_run["out"] / "manifest.json").read_text())
    assert m["status"] == "finished" and m["device"].startswith("cpu")
    assert m["resampler"].startswith("soxr VHQ") and m["seeds"]["torch"] == 0
    assert m["packages"]["torch"] and m["asr"] is None and m["args"]["codecs"] == "pcm,opus@12k"
    first = m["data"][0]
    assert first["sha256"] == hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest()
    assert {d["utt_id"]: d["sha256"] for d in m["data"]}["broken_path"] is None


def test_manifest_records_cpu_instruction_sets(cli_run) -> None:
    """ASR values depend on the CPU's instruction sets (issue 16): every manifest names the CPU,
    its SIMD flags as the OS reports them, and CTranslate2's instruction-set settings."""
    from audiocore.machine import ISA_FLAG_PATTERN, cpu_isa_flags, cpu_model
    from metrics.asr.isa import ISA_VARIABLES

    cpu = json.loads((cli_run["out"] / "manifest.json").read_text())["cpu"]
    assert cpu["model"] == cpu_model() and cpu["isa_flags"] == cpu_isa_flags()
    assert set(cpu["ctranslate2_isa"]) == set(ISA_VARIABLES)
    if Path("/proc/cpuinfo").is_file():  # Linux: the flags are read, and only SIMD / matrix ones kept
        assert cpu["isa_flags"] and all(ISA_FLAG_PATTERN.match(f) for f in cpu["isa_flags"])


def test_unknown_codec_is_a_one_line_user_error(tmp_path, eval_rows) -> None:
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    for spec, expected in (("nosuch@1k", "unknown codec family 'nosuch'"), ("opus@7k", "opus@12k")):
        code, stdout, stderr = call_main(["--codecs", spec, "--data", str(manifest), "--out", str(tmp_path / "o")])
        assert code == 2 and stdout == ""
        assert stderr.startswith("error: ") and stderr.count("\n") == 1 and expected in stderr, stderr
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_missing_data_path_is_a_one_line_user_error(tmp_path) -> None:
    code, _, stderr = call_main(["--codecs", "pcm", "--data", str(tmp_path / "nothing.tsv")])
    assert code == 2 and stderr == f"error: --data path not found: {tmp_path / 'nothing.tsv'}\n"


def test_entry_point_prints_no_traceback(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--codecs", "pcm", "--data",
                           str(tmp_path / "missing"), "--no-asr", "--no-perceptual"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: --data path not found: {tmp_path / 'missing'}"]


def test_missing_asr_model_gives_nan_with_reason(tmp_path, eval_rows) -> None:
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    code, _, stderr = call_main(["--codecs", "pcm", "--data", str(manifest), "--out", str(tmp_path / "o"),
                                 "--cache-dir", str(tmp_path / "c"), "--asr", "faster-whisper:/no/such/model",
                                 "--no-report"])
    assert code == 0, stderr
    (row,) = store.load_rows(tmp_path / "o")
    assert row["status"] == "ok" and row["pesq_wb"] > 4.4
    for key in ("wer", "cer", "dwer"):
        assert math.isnan(row[key]) and "ASR unavailable" in row[f"{key}_error"]


def test_resolve_device() -> None:
    import torch

    assert run.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(run.UserError, match="auto, cpu, cuda"):
        run.resolve_device("tpu")


class ToyTokenCodec:
    """A token codec with a known id pattern: 2 streams at 100 frames/s, one padding frame.

    Stream 0 (V = 16): the frame's RMS level, quantised; stream 1 (V = 4): frame index mod 4.
    The padding frame carries ids (15, 3), which must not reach the codebook statistics.
    """

    name = "toy-tokens"
    sample_rate = 16000
    hop = 160

    def nominal_bitrate(self) -> float:
        return 100.0 * (4 + 2)

    def encode(self, wav):
        import torch

        from audiocore.codec import Encoded

        n = wav.shape[0] // self.hop
        frames = wav[: n * self.hop].reshape(n, self.hop)
        level = (frames.pow(2).mean(dim=1).sqrt() * 64).clamp(0, 14).long()
        codes = torch.stack([level, torch.arange(n) % 4])
        codes = torch.cat([codes, torch.tensor([[15], [3]])], dim=1)
        return Encoded(codes=codes, vocab_sizes=(16, 4), frame_rate=100.0, payload_bytes=None,
                       num_samples=int(wav.shape[0]), padded_frames=1)

    def decode(self, enc):
        import torch

        level = enc.codes[0, : enc.codes.shape[1] - enc.padded_frames].float() / 64
        noise = torch.randn(level.shape[0], self.hop, generator=torch.Generator().manual_seed(0))
        out = (noise * level[:, None]).reshape(-1)
        return torch.cat([out, torch.zeros(enc.num_samples - out.shape[0])])


def test_token_rows_carry_vocab_sizes_and_report_counts_codebooks(tmp_path, eval_rows, monkeypatch) -> None:
    import numpy as np
    import pandas as pd

    monkeypatch.setattr(components, "build_codecs", lambda text, device, weights_dir=None: ([ToyTokenCodec()], []))
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:2])
    out = tmp_path / "run"
    code, _, stderr = call_main(["--codecs", "toy-tokens", "--data", str(manifest), "--out", str(out),
                                 "--cache-dir", str(tmp_path / "cache"), "--no-asr", "--no-perceptual", "--device", "cpu"])
    assert code == 0, stderr
    rows = store.load_rows(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["vocab_sizes"] == [16, 4] and r["padded_frames"] == 1 for r in rows)
    payload = [r["n_payload_frames"] for r in rows]
    assert all(np.load(out / r["tokens_file"]).shape == (2, p + 1) for r, p in zip(rows, payload))

    cb = pd.read_csv(out / "codebook.csv").set_index(["level", "streams"])
    assert cb.loc[("total", "all"), "n_tokens"] == 2 * sum(payload)
    counts = np.bincount(np.concatenate([np.arange(p) % 4 for p in payload]), minlength=4)
    p = counts / counts.sum()
    assert cb.loc[("stream", "1"), "entropy_bits"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert cb.loc[("stream", "1"), "used"] == 4
    assert cb.loc[("stream", "0"), "n_tokens"] == sum(payload)
    summary = pd.read_csv(out / "summary.csv")
    assert 0 < summary.loc[0, "codebook_usage"] <= 1 and "codebook usage %" in (out / "summary.md").read_text()


def test_rows_without_vocab_sizes_are_redone_on_resume() -> None:
    complete = runner._row_complete(None)
    assert complete({"status": "ok", "tokens_file": "tokens/x/u.npy", "vocab_sizes": [4, 4]})
    assert not complete({"status": "ok", "tokens_file": "tokens/x/u.npy"})
    assert complete({"status": "ok"})  # bitstream codec: no tokens, nothing to add


def test_rows_of_another_code_version_are_redone_on_resume(tmp_path, eval_rows) -> None:
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    args = ["--codecs", "pcm", "--data", str(manifest), "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--no-asr", "--no-perceptual", "--no-report"]
    assert call_main(args)[0] == 0
    results = tmp_path / "run" / "results.jsonl"
    row = json.loads(results.read_text().splitlines()[0])
    stale = {**row, "code_version": "0.0.1+src.000000000000", "pesq_wb": 1.0}
    results.write_text(json.dumps(stale) + "\n")  # as if an older version had written it
    assert call_main(args)[0] == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["code_version"] == row["code_version"]
    assert rows[-1]["pesq_wb"] == row["pesq_wb"] != 1.0  # recomputed, not resumed from the stale row


def _tiny_jepa_codec(path: Path, seed: int) -> Path:
    """A small random JEPACodec checkpoint (different weights per seed) at `path`."""
    import dataclasses

    import torch

    from jepa.codec import JEPACodec
    from jepa.config import SMALL

    cfg = dataclasses.replace(SMALL, name="tiny", model=dataclasses.replace(
        SMALL.model, enc_channels=(4, 4, 4, 8, 8, 8), enc_resblocks=1, conformer_layers=1,
        dec_channels=(16, 8, 8, 8, 4, 4), mrf_kernels=(3,)))
    torch.manual_seed(seed)
    JEPACodec(cfg).save(path)
    return path


def test_rows_of_other_weights_behind_the_same_spec_are_redone_on_resume(tmp_path, eval_rows) -> None:
    """A checkpoint retrained in place (`jepa-daam:PATH`, same code) must not resume the old rows."""
    ckpt = _tiny_jepa_codec(tmp_path / "model.safetensors", seed=0)
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    args = ["--codecs", f"pcm,jepa-daam:{ckpt}", "--data", str(manifest), "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--no-asr", "--no-perceptual", "--no-report", "--jobs", "1"]
    assert call_main(args)[0] == 0
    results = tmp_path / "run" / "results.jsonl"
    first = {r["codec"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert call_main(args)[0] == 0  # same weights: everything resumed
    assert len(results.read_text().splitlines()) == 2
    _tiny_jepa_codec(ckpt, seed=1)  # retrained in place
    assert call_main(args)[0] == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["codec"] for r in rows[2:]] == [f"jepa-daam:{ckpt}"]  # only the changed codec is redone
    old, new = first[f"jepa-daam:{ckpt}"], rows[2]
    assert old["weights_hash"] != new["weights_hash"] and old["mel_distance"] != new["mel_distance"]
    assert "weights_hash" not in first["pcm"]  # no weights file, no hash


def test_weights_dir_is_passed_to_neural_codecs(tmp_path, eval_rows, monkeypatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.delenv("JEPA_DAAM_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # no cached weights either
    weights = tmp_path / "weights"
    weights.mkdir()
    manifest = write_manifest(tmp_path, eval_rows, SHORT_IDS[:1])
    code, stdout, stderr = call_main(["--codecs", "pcm,encodec@6k", "--data", str(manifest), "--out",
                                      str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-asr", "--no-perceptual",
                                      "--no-report", "--weights-dir", str(weights)])
    assert code == 0, stderr
    reason = json.loads((tmp_path / "run" / "skipped.json").read_text())[0]
    assert reason["codec"] == "encodec@6k" and str(weights / "facebook" / "encodec_24khz") in reason["reason"]
    manifest_json = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest_json["args"]["weights_dir"] == str(weights.resolve())
    code, _, stderr = call_main(["--codecs", "pcm", "--weights-dir", str(tmp_path / "nope")])
    assert code == 2 and "--weights-dir" in stderr and "not a folder" in stderr


def test_skipped_codecs_sharing_a_reason_are_listed_once() -> None:
    lines = runner.skipped_lines([("mimi@8", "mimi@8: weights not found in X"),
                               ("mimi@16", "mimi@16: weights not found in X"),
                               ("snac@24k", "snac@24k: package snac is not installed")])
    assert lines == ["skipped mimi@8, mimi@16: weights not found in X",
                     "skipped snac@24k: package snac is not installed"]
