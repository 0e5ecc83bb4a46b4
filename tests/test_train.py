"""jepa.train on a tiny configuration: both stages run, resume is exact, checkpoints are atomic,
export gives a loadable JEPACodec, and torchrun DDP (gloo, 2 processes) works on the CPU."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa import train
from jepa.config import SMALL, config_to_dict

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY = dataclasses.replace(
    SMALL,
    name="tiny",
    model=dataclasses.replace(
        SMALL.model, enc_channels=(4, 4, 4, 8, 8, 8), enc_resblocks=1, conformer_layers=1, conformer_heads=4,
        predictor_dim=32, predictor_heads=4, predictor_layers=1, dec_channels=(16, 8, 8, 8, 4, 4), mrf_kernels=(3,),
        mpd_periods=(2, 3), mpd_channels=(4, 4, 4, 4, 4), msd_scales=2, msd_channels=(4, 4, 4, 4, 4, 4),
        msd_groups=(1, 1, 1, 1, 1, 1),
    ),
    # The collapse monitor holds out no training data here (tests train on 4 utterances); its
    # own tests pass --monitor-data. The resume tests below train 2 steps with --steps 2 and
    # resume with --steps 4, so the schedules that depend on the run length (cosine lr, EMA ramp)
    # are constant here; test_recipe_resume_is_exact covers them.
    stage1=dataclasses.replace(SMALL.stage1, batch_size=2, crop_seconds=1.6, lr_schedule="constant", warmup_steps=2,
                               ema_tau_end=None, monitor_clips=0),
    stage2=dataclasses.replace(SMALL.stage2, batch_size=1, crop_seconds=1.6, disc_start_step=1, disc_start_fraction=None,
                               finetune_encoder=False, lr_schedule="constant", warmup_steps=2, monitor_clips=0),
)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(config_to_dict(TINY)), encoding="utf-8")
    return path


def _common(cfg: Path, data: Path, out: Path, steps: int) -> list[str]:
    return ["--config", str(cfg), "--data", str(data), "--out", str(out), "--steps", str(steps), "--device", "cpu",
            "--data-limit", "4", "--save-every", "2", "--no-progress", "--threads", "1"]


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def stage1_runs(tiny_config, eval_manifest, tmp_path_factory):
    """Stage 1 for 4 steps straight, and for 2 steps + resume to 4."""
    root = tmp_path_factory.mktemp("s1")
    assert train.main(["stage1", *_common(tiny_config, eval_manifest, root / "straight", 4)]) == 0
    assert train.main(["stage1", *_common(tiny_config, eval_manifest, root / "split", 2)]) == 0
    assert train.main(["stage1", *_common(tiny_config, eval_manifest, root / "split", 4), "--resume"]) == 0
    return root


def test_stage1_logs_finite_losses_and_plot(stage1_runs):
    log = train.read_log(stage1_runs / "straight" / train.LOG_NAME)
    assert list(log["step"]) == [1, 2, 3, 4]
    assert np.isfinite(log["loss"]).all() and (log["loss"] > 0).all()
    assert (log["n_masked"] >= 1).all()
    assert (stage1_runs / "straight" / train.PLOT_NAME).stat().st_size > 1000
    ckpt = train.load_checkpoint(stage1_runs / "straight" / train.CHECKPOINT_NAME)
    assert ckpt["stage"] == "stage1" and ckpt["step"] == 4
    # The EMA target moved towards the online encoder but is not equal to it (tau = 0.996).
    state = ckpt["model"]
    online = {k[len("context_encoder."):]: v for k, v in state.items() if k.startswith("context_encoder.")}
    target = {k[len("target_encoder."):]: v for k, v in state.items() if k.startswith("target_encoder.")}
    assert online.keys() == target.keys()
    assert not _states_equal(online, target)


def test_stage1_resume_is_exact(stage1_runs):
    a = train.load_checkpoint(stage1_runs / "straight" / train.CHECKPOINT_NAME)
    b = train.load_checkpoint(stage1_runs / "split" / train.CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 4
    assert _states_equal(a["model"], b["model"])  # online, EMA target, predictor, mask token
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    assert all(torch.equal(opt_a[k]["exp_avg_sq"], opt_b[k]["exp_avg_sq"]) for k in opt_a)
    la = train.read_log(stage1_runs / "straight" / train.LOG_NAME)
    lb = train.read_log(stage1_runs / "split" / train.LOG_NAME)
    np.testing.assert_array_equal(la["loss"], lb["loss"])


def test_stage2_resume_is_exact_and_export_loads(stage1_runs, tiny_config, eval_manifest, tmp_path):
    init = str(stage1_runs / "straight" / train.CHECKPOINT_NAME)
    common = ["--init-from", init]
    assert train.main(["stage2", *_common(tiny_config, eval_manifest, tmp_path / "a", 3), *common]) == 0
    assert train.main(["stage2", *_common(tiny_config, eval_manifest, tmp_path / "b", 2), *common]) == 0
    assert train.main(["stage2", *_common(tiny_config, eval_manifest, tmp_path / "b", 3), "--resume"]) == 0
    a = train.load_checkpoint(tmp_path / "a" / train.CHECKPOINT_NAME)
    b = train.load_checkpoint(tmp_path / "b" / train.CHECKPOINT_NAME)
    for key in ("codec", "mpd", "msd"):
        assert _states_equal(a[key], b[key]), key
    log = train.read_log(tmp_path / "a" / train.LOG_NAME)
    assert np.isfinite(log["l1"]).all() and np.isfinite(log["stft"]).all()
    # disc_start_step = 1: discriminators and GAN terms are active from step 2 only.
    assert list(log["gan_active"]) == [0, 1, 1]
    assert np.isnan(log["loss_d"][0]) and np.isfinite(log["loss_d"][1:]).all()
    # The frozen encoder is exactly the stage-1 online encoder.
    s1 = train.load_checkpoint(init)["model"]
    enc = {k[len("encoder."):]: v for k, v in a["codec"].items() if k.startswith("encoder.")}
    assert _states_equal(enc, {k[len("context_encoder."):]: v for k, v in s1.items()
                               if k.startswith("context_encoder.")})

    from jepa.codec import JEPACodec

    out = train.export_codec(tmp_path / "a" / train.CHECKPOINT_NAME, tmp_path / "codec.safetensors")
    codec = JEPACodec.load(out)
    assert _states_equal(codec.state_dict(), {k: v for k, v in a["codec"].items()})
    wav = torch.randn(48_000) * 0.1
    rec = codec.decode(codec.encode(wav))
    assert rec.shape == wav.shape and torch.isfinite(rec).all()



def _training_metadata(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    return json.loads(meta["training"]), json.loads(meta["config"])


def test_export_records_the_steps_actually_trained(stage1_runs, tiny_config, eval_manifest, tmp_path):
    from jepa.codec import JEPACodec

    init = stage1_runs / "straight" / train.CHECKPOINT_NAME
    # 5 steps requested, stopped by --max-minutes after the first one.
    assert train.main(["stage2", *_common(tiny_config, eval_manifest, tmp_path / "run", 5), "--init-from", str(init),
                       "--max-minutes", "1e-9"]) == 0
    ckpt_path = tmp_path / "run" / train.CHECKPOINT_NAME
    ckpt = train.load_checkpoint(ckpt_path)
    assert ckpt["step"] == 1
    out = train.export_codec(ckpt_path, tmp_path / "codec.safetensors")
    JEPACodec.load(out)  # the extra metadata entry does not disturb loading
    training, config = _training_metadata(out)
    assert config["stage2"]["steps"] == 5  # the config keeps what was requested ...
    s1 = train.load_checkpoint(init)
    assert training["stage2"]["steps_done"] == 1 and training["stage2"]["steps_requested"] == 5  # ... training, what ran
    assert training["stage2"]["wall_seconds"] == pytest.approx(ckpt["wall_seconds"]) and ckpt["wall_seconds"] > 0
    assert training["stage1"]["steps_done"] == s1["step"] == 4
    assert training["stage1"]["wall_seconds"] == pytest.approx(s1["wall_seconds"])
    assert training["stage1"]["source"] == "stage-2 checkpoint"

    # A format-1 stage-2 checkpoint has no stage-1 summary: it is read from init_from, or null with a reason.
    old = _as_format1(ckpt)
    del old["stage1"]
    torch.save(old, tmp_path / "old.pt")
    training, _ = _training_metadata(train.export_codec(tmp_path / "old.pt", tmp_path / "old.safetensors"))
    assert training["stage1"]["steps_done"] == 4 and training["stage1"]["source"] == "init_from at export"
    torch.save({**old, "init_from": str(tmp_path / "gone.pt")}, tmp_path / "orphan.pt")
    training, _ = _training_metadata(train.export_codec(tmp_path / "orphan.pt", tmp_path / "orphan.safetensors"))
    assert training["stage1"]["steps_done"] is None and "gone.pt" in training["stage1"]["reason"]
    assert training["stage2"]["steps_done"] == 1

def test_stage2_needs_matching_stage1(stage1_runs, tiny_config, eval_manifest, tmp_path, capsys):
    """Each refusal is one `error:` line naming the problem and exit status 2 (issue 16)."""
    def refused(argv: list[str], match: str) -> None:
        assert train.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and match in err[0], err

    refused(["stage2", *_common(tiny_config, eval_manifest, tmp_path / "x", 1)], "--init-from")
    refused(["stage2", "--config", "small", "--data", str(eval_manifest), "--out", str(tmp_path / "y"),
             "--init-from", str(stage1_runs / "straight" / train.CHECKPOINT_NAME), "--device", "cpu"], "model differs")
    refused(["stage1", *_common(tiny_config, eval_manifest, stage1_runs / "straight", 4)], "--resume")


def test_atomic_save_never_exposes_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    train.save_checkpoint({"format": train.CHECKPOINT_FORMAT, "stage": "stage1", "x": torch.arange(10)}, path)
    before = path.read_bytes()

    def broken_save(obj, f):  # writes half a file, then dies
        f.write(b"PARTIAL")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train.atomic_save({"x": torch.arange(99)}, path)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp file left behind
    assert torch.equal(train.load_checkpoint(path)["x"], torch.arange(10))



def _as_format1(ckpt: dict) -> dict:
    """The checkpoint as the format-1 code wrote it: RNG states as random.getstate() and
    np.random.get_state() tuples (a pickled uint32 ndarray), no content hash."""
    old = {k: v for k, v in ckpt.items() if k != "content_sha256"}
    old["format"] = 1
    old["rng"] = [{**s, "python": (s["python"]["version"], tuple(s["python"]["state"].tolist()),
                                   s["python"]["gauss_next"]),
                   "numpy": ("MT19937", s["numpy"]["key"].numpy().astype(np.uint32), s["numpy"]["pos"],
                             s["numpy"]["has_gauss"], s["numpy"]["cached_gaussian"])} for s in ckpt["rng"]]
    return old


def test_format1_checkpoint_loads_and_resumes_exactly(stage1_runs, tiny_config, eval_manifest, tmp_path):
    new = stage1_runs / "straight" / train.CHECKPOINT_NAME
    assert torch.serialization.get_unsafe_globals_in_checkpoint(new) == []  # format 2: tensors + primitives
    run = tmp_path / "legacy"
    assert train.main(["stage1", *_common(tiny_config, eval_manifest, run, 2)]) == 0
    at2 = train.load_checkpoint(run / train.CHECKPOINT_NAME)
    torch.save(_as_format1(at2), run / train.CHECKPOINT_NAME)  # as the format-1 code saved it
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(run / train.CHECKPOINT_NAME)

    old = train.load_checkpoint(run / train.CHECKPOINT_NAME)
    assert old["format"] == train.CHECKPOINT_FORMAT and old["step"] == 2
    for a, b in zip(old["rng"], at2["rng"]):  # converted back to the format-2 RNG layout, bit for bit
        assert torch.equal(a["numpy"]["key"], b["numpy"]["key"]) and a["numpy"]["pos"] == b["numpy"]["pos"]
        assert torch.equal(a["python"]["state"], b["python"]["state"]) and torch.equal(a["torch"], b["torch"])
    train.set_rng_state(old["rng"][0])
    state = (random.random(), np.random.random(), torch.rand(1))
    train.set_rng_state(at2["rng"][0])
    assert state == (random.random(), np.random.random(), torch.rand(1))

    assert train.main(["stage1", *_common(tiny_config, eval_manifest, run, 4), "--resume"]) == 0
    a, b = train.load_checkpoint(new), train.load_checkpoint(run / train.CHECKPOINT_NAME)
    assert b["format"] == train.CHECKPOINT_FORMAT and b["step"] == 4
    assert _states_equal(a["model"], b["model"])
    np.testing.assert_array_equal(train.read_log(stage1_runs / "straight" / train.LOG_NAME)["loss"],
                                  train.read_log(run / train.LOG_NAME)["loss"])


class _RunsShell:
    """Pickles as a call of os.system (what an attacker's "checkpoint" does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        train.load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_tampered_or_malicious_checkpoints_fail_clearly(stage1_runs, tmp_path):
    src = stage1_runs / "straight" / train.CHECKPOINT_NAME
    data = src.read_bytes()
    ckpt = train.load_checkpoint(src)

    # One flipped byte inside the largest tensor's data: the zip still reads, the content hash does not match.
    name, tensor = max(ckpt["model"].items(), key=lambda kv: kv[1].numel())
    offset = data.find(tensor.numpy().tobytes())
    assert offset > 0, name
    flipped = bytearray(data)
    flipped[offset + tensor.numel() * tensor.element_size() // 2] ^= 0x10
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    _one_line_error(tmp_path / "flipped.pt", "content_sha256")

    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    _one_line_error(tmp_path / "truncated.pt", "unreadable")

    # Pickles that would run os.system: refused before anything runs, whether zip (torch.save) or raw.
    marker = tmp_path / "pwned"
    torch.save({"format": train.CHECKPOINT_FORMAT, "stage": "stage1", "x": _RunsShell(marker)},
               tmp_path / "evil_zip.pt")
    assert "system" in _one_line_error(tmp_path / "evil_zip.pt", "refused by the weights-only loader")
    (tmp_path / "evil_raw.pt").write_bytes(pickle.dumps({"x": _RunsShell(marker)}, protocol=2))
    assert "system" in _one_line_error(tmp_path / "evil_raw.pt", "refused by the weights-only loader")
    assert not marker.exists()

    # Well-formed, but not a training checkpoint, or an edited value with a stale hash.
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    _one_line_error(tmp_path / "other.pt", "not a jepa.train checkpoint")
    edited = {**ckpt, "step": 999, "content_sha256": train.checkpoint_sha256(ckpt)}
    torch.save(edited, tmp_path / "edited.pt")
    _one_line_error(tmp_path / "edited.pt", "content_sha256")

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_ddp_gloo_two_processes(tiny_config, eval_manifest, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "jepa.train", "stage1", *_common(tiny_config, eval_manifest, out, 2),
           ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = train.load_checkpoint(out / train.CHECKPOINT_NAME)
    assert ckpt["step"] == 2 and ckpt["world_size"] == 2
    assert len(ckpt["rng"]) == 2  # every rank's RNG state, for exact resume
    log = train.read_log(out / train.LOG_NAME)
    assert list(log["step"]) == [1, 2] and np.isfinite(log["loss"]).all()
