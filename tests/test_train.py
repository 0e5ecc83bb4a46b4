"""jepa.train on a tiny configuration: both stages run, resume is exact, checkpoints are atomic,
export gives a loadable JEPACodec, and torchrun DDP (gloo, 2 processes) works on the CPU."""
from __future__ import annotations

import dataclasses
import json
import os
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
    stage1=dataclasses.replace(SMALL.stage1, batch_size=2, crop_seconds=1.6),
    stage2=dataclasses.replace(SMALL.stage2, batch_size=1, crop_seconds=1.6, disc_start_step=1),
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


def test_stage2_needs_matching_stage1(stage1_runs, tiny_config, eval_manifest, tmp_path):
    with pytest.raises(ValueError, match="--init-from"):
        train.main(["stage2", *_common(tiny_config, eval_manifest, tmp_path / "x", 1)])
    with pytest.raises(ValueError, match="model differs"):
        train.main(["stage2", "--config", "small", "--data", str(eval_manifest), "--out", str(tmp_path / "y"),
                    "--init-from", str(stage1_runs / "straight" / train.CHECKPOINT_NAME), "--device", "cpu"])
    with pytest.raises(ValueError, match="--resume"):
        train.main(["stage1", *_common(tiny_config, eval_manifest, stage1_runs / "straight", 4)])


def test_atomic_save_never_exposes_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    train.atomic_save({"format": train.CHECKPOINT_FORMAT, "stage": "stage1", "x": torch.arange(10)}, path)
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
