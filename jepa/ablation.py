"""The paper's only quantitative claim, at SMALL scale: stage-1 loss with and without DAAM.

The paper (arXiv:2512.07168, paper-spec §11) reports a stage-1 masked-prediction MSE of about
0.09 with DAAM versus about 0.17 without, after 24k steps of the PAPER model on LibriLight, with
the leaky "latent" context masking. This command trains a configuration (`--config`, default SMALL)
twice, DAAM on and off, with the same seed, data, crops, masks and step count (the two runs
differ only in `model.use_daam`; their configs are written to `RUNS/<run>.config.json`), and
writes

* `OUT/ablation.csv`: one row per run (final loss, mean of the last k steps, steps, wall time,
  and two collapse diagnostics of the trained online encoder on held-out clips, see
  `representation_diagnostics`), a row for the untrained encoder, and the paper's published
  rows labelled `published`;
* `OUT/ablation.md`: the same as a Markdown table;
* `OUT/loss_curves.png` / `.pdf`: both loss curves (raw and moving average);
* `OUT/<run>_log.csv`: the per-step training logs the table and plot come from.

Usage::

    python -m jepa.ablation --steps 120 --out results/ablation --data ../shared/data/train/manifest.tsv

Each run is `python -m jepa.train stage1` (of this same package) in a subprocess with its run folder under `--runs`
(default `runs/ablation/`); an existing run folder is resumed (a finished one is reused as is),
so the command is restartable. `--jobs 2` trains both runs at once.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jepa.config import JEPADAAMConfig, config_from_dict, config_to_dict, get_config
from jepa.train import CHECKPOINT_NAME, EXIT_COLLAPSED, LOG_NAME, load_checkpoint, read_log

if TYPE_CHECKING:
    import torch

PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # the folder holding this `jepa` package

PUBLISHED = (
    # (run, final loss) read off the paper's stage-1 curve after 24k steps (paper-spec §11).
    ("JEPA + DAAM (paper, PAPER config, 24k steps)", 0.09),
    ("JEPA without DAAM (paper, PAPER config, 24k steps)", 0.17),
)


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: a run name, whether DAAM is on, and a label."""

    name: str
    use_daam: bool
    label: str


VARIANTS = (Variant("daam", True, "JEPA + DAAM"), Variant("no_daam", False, "JEPA without DAAM"))


def variant_config(base: JEPADAAMConfig, v: Variant) -> JEPADAAMConfig:
    """`base` with DAAM on or off (named `<base>` / `<base>_no_daam`); nothing else differs.

    For base SMALL this gives exactly the `small` and `small_no_daam` presets.
    """
    if not base.model.use_daam:
        raise ValueError(f"--config {base.name!r} has use_daam false; give the DAAM configuration, the "
                         "no-DAAM arm is derived from it")
    name = base.name if v.use_daam else f"{base.name}_no_daam"
    return dataclasses.replace(base, name=name, model=dataclasses.replace(base.model, use_daam=v.use_daam))


def run_label(v: Variant, base: JEPADAAMConfig) -> str:
    return f"{v.label} ({base.name.upper()})"


def write_variant_configs(base: JEPADAAMConfig, runs: Path) -> dict[str, Path]:
    """Write each arm's config to `runs/<name>.config.json`; returns {variant name: path}."""
    runs.mkdir(parents=True, exist_ok=True)
    paths = {}
    for v in VARIANTS:
        paths[v.name] = runs / f"{v.name}.config.json"
        paths[v.name].write_text(json.dumps(config_to_dict(variant_config(base, v)), indent=2), encoding="utf-8")
    return paths


def train_command(v: Variant, config_path: Path, args: argparse.Namespace) -> list[str]:
    """The `jepa.train stage1` command line of one variant (resumes an existing run folder)."""
    run = Path(args.runs) / v.name
    cmd = [sys.executable, "-m", "jepa.train", "stage1", "--config", str(config_path), "--data", str(args.data),
           "--out", str(run), "--steps", str(args.steps), "--seed", str(args.seed), "--save-every",
           str(args.save_every), "--threads", str(args.threads), "--device", args.device, "--no-progress",
           "--monitor-data", str(args.eval_data)]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.crop_seconds is not None:
        cmd += ["--crop-seconds", str(args.crop_seconds)]
    if (run / CHECKPOINT_NAME).is_file():
        cmd.append("--resume")
    return cmd


def run_variants(base: JEPADAAMConfig, args: argparse.Namespace) -> None:
    """Train every variant of `base` (at most `args.jobs` at a time); raise if one fails.

    The subprocesses import this same `jepa` package (its folder leads PYTHONPATH), whatever
    the working directory or installed copy.
    """
    configs = write_variant_configs(base, Path(args.runs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                                      os.environ.get("PYTHONPATH")]))}
    pending = list(VARIANTS)
    running: list[tuple[Variant, subprocess.Popen, Path]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            v = pending.pop(0)
            log_path = Path(args.runs) / f"{v.name}.log"
            cmd = train_command(v, configs[v.name], args)
            print("running:", " ".join(cmd), flush=True)
            with open(log_path, "a", encoding="utf-8") as f:
                running.append((v, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), log_path))
        time.sleep(2.0)
        for item in list(running):
            v, proc, log_path = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode == EXIT_COLLAPSED:
                    raise RuntimeError(f"ablation run {v.name}: the collapse monitor stopped it (the encoder "
                                       f"output no longer depends on the audio); see {log_path}")
                if proc.returncode != 0:
                    raise RuntimeError(f"ablation run {v.name} failed (exit {proc.returncode}); see {log_path}")


def _eval_clips(spec: str, n_clips: int, seconds: float) -> "torch.Tensor":
    """Centre crops of `seconds` of the first `n_clips` utterances at least that long (the collapse
    monitor's clips, ``jepa.monitor.fixed_crops``): [N, 1, L] at 24 kHz."""
    from jepa.data import load_utterances
    from jepa.monitor import fixed_crops

    waves, _ = load_utterances(spec, sample_rate=24_000)
    clips, _ = fixed_crops(waves, n_clips, int(round(seconds * 24_000)))
    if clips.shape[0] < 2:
        raise ValueError(f"{spec}: fewer than 2 utterances of at least {seconds} s for the diagnostics")
    return clips


def representation_diagnostics(state: dict | None, clips: "torch.Tensor", model_cfg) -> dict[str, float]:
    """Is the online encoder's output about the audio, or only about the frame position?

    Args:
        state: a stage-1 JEPA state dict (None: the seeded untrained model).
        clips: [N, 1, L] held-out speech, all of the same length (so frame t is the same
            position in every clip).
        model_cfg: the ModelConfig the state belongs to.
    Returns:
        ``between_clip_std``: std of z_e across clips at the same frame position, averaged over
            channels and positions (0 = the latent ignores the audio: positional collapse);
        ``distinct_frames``: distinct FSQ code vectors / frames (1 = every frame has its own code;
            1/T_z = codes depend only on the position).
    """
    import torch

    from jepa.jepa import JEPA
    from jepa.monitor import between_clip_std, distinct_codes, latent_quantizer

    torch.manual_seed(0)
    model = JEPA(model_cfg)
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    with torch.inference_mode():
        z = model.context_encoder(clips)  # [N, C, T]
        _, idx = latent_quantizer(model_cfg)(z)
    return {"between_clip_std": between_clip_std(z),
            "distinct_frames": distinct_codes(idx) / (idx.shape[0] * idx.shape[1])}


def summarise(base: JEPADAAMConfig, args: argparse.Namespace) -> list[dict[str, object]]:
    """Rows of the ablation table from the run folders (measured) plus the published values."""
    rows: list[dict[str, object]] = []
    model_cfgs = {}
    clips = _eval_clips(args.eval_data, args.eval_clips, args.crop_seconds or 4.0)
    for v in VARIANTS:
        run = Path(args.runs) / v.name
        ckpt = load_checkpoint(run / CHECKPOINT_NAME)
        model_cfgs[v.name] = config_from_dict(ckpt["config"]).model
        expected = variant_config(base, v)
        if model_cfgs[v.name] != expected.model:
            raise ValueError(f"run {run} was trained with another model than --config {base.name} with "
                             f"use_daam={v.use_daam}; remove it or choose another --runs")
        diag = representation_diagnostics(ckpt["model"], clips, model_cfgs[v.name])
        data = read_log(run / LOG_NAME)
        loss, steps = data["loss"], data["step"]
        if int(ckpt["step"]) != args.steps or len(loss) != args.steps:
            raise ValueError(f"run {run} holds {int(ckpt['step'])} steps ({len(loss)} logged), expected {args.steps}")
        k = min(args.last_k, len(loss))
        rows.append({"run": run_label(v, base), "source": "measured", "use_daam": v.name == "daam", "steps": int(steps[-1]),
                     "final_loss": float(loss[-1]), f"mean_last_{args.last_k}": float(np.mean(loss[-k:])),
                     "std_last_k": float(np.std(loss[-k:])), "min_loss": float(np.min(loss)),
                     **diag, "wall_minutes": float(ckpt["wall_seconds"]) / 60.0, "config": expected.name})
    nan = float("nan")
    untrained = representation_diagnostics(None, clips, model_cfgs[VARIANTS[0].name])
    rows.append({"run": "untrained encoder (reference for the diagnostics)", "source": "measured",
                 "use_daam": True, "steps": 0, "final_loss": nan, f"mean_last_{args.last_k}": nan, "std_last_k": nan,
                 "min_loss": nan, **untrained, "wall_minutes": nan,
                 "config": variant_config(base, VARIANTS[0]).name})
    for label, value in PUBLISHED:
        rows.append({"run": label, "source": "published", "use_daam": "without" not in label, "steps": 24000,
                     "final_loss": value, f"mean_last_{args.last_k}": nan, "std_last_k": nan, "min_loss": nan,
                     "between_clip_std": nan, "distinct_frames": nan, "wall_minutes": nan, "config": "paper"})
    return rows


def write_table(rows: list[dict[str, object]], out: Path) -> None:
    cols = list(rows[0])
    with open(out / "ablation.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "–" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    (out / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_curves(base: JEPADAAMConfig, args: argparse.Namespace, out: Path) -> None:
    """Both measured loss curves, with the paper's final values as dashed published lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, v in enumerate(VARIANTS):
        data = read_log(Path(args.runs) / v.name / LOG_NAME)
        x, y = data["step"], data["loss"]
        ax.plot(x, y, color=f"C{i}", lw=0.6, alpha=0.35)
        k = max(1, min(args.last_k, len(y) // 5))
        if k > 1:
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), color=f"C{i}", lw=1.8,
                    label=f"{run_label(v, base)}, measured (moving avg {k})")
        else:
            ax.plot(x, y, color=f"C{i}", lw=1.8, label=f"{run_label(v, base)}, measured")
    for (label, value), i in zip(PUBLISHED, range(len(VARIANTS))):
        ax.axhline(value, color=f"C{i}", ls="--", lw=1.0, label=f"published: {label} = {value}")
    ax.set_xlabel("stage-1 step")
    ax.set_ylabel("masked-prediction MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Stage-1 loss, DAAM on vs off ({base.name.upper()}, {args.steps} steps, seed {args.seed})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=130)
    fig.savefig(out / "loss_curves.pdf")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jepa.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, required=True, help="stage-1 steps of each run")
    p.add_argument("--config", default="small",
                   help="the DAAM arm's config (preset name or YAML/JSON path); the other arm sets use_daam false")
    p.add_argument("--out", type=Path, default=Path("results/ablation"), help="table, plot and logs")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/manifest.tsv"),
                   help="training data (manifest or folder)")
    p.add_argument("--eval-data", default=str(Path(__file__).resolve().parents[2] / "shared/data/eval/manifest.tsv"),
                   help="held-out speech for the collapse diagnostics")
    p.add_argument("--eval-clips", type=int, default=16, help="clips used by the diagnostics")
    p.add_argument("--runs", default="runs/ablation", help="run folders (checkpoints; resumed when present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="global batch (default: the SMALL config's)")
    p.add_argument("--crop-seconds", type=float, help="crop length (default: the SMALL config's)")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="torch threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at the same time")
    p.add_argument("--device", default="auto")
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--last-k", type=int, default=20, help="steps averaged for the mean-of-last-k column")
    args = p.parse_args(argv)
    if args.steps < 1 or args.last_k < 1 or args.jobs < 1:
        p.error("--steps, --last-k and --jobs must be >= 1")
    base = get_config(args.config)
    variant_config(base, VARIANTS[0])  # fails early on a no-DAAM base config
    run_variants(base, args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = summarise(base, args)
    write_table(rows, args.out)
    plot_curves(base, args, args.out)
    for v in VARIANTS:
        shutil.copyfile(Path(args.runs) / v.name / LOG_NAME, args.out / f"{v.name}_log.csv")
    print((args.out / "ablation.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
