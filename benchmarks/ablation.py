"""The paper's DAAM ablation, both stages: stage-1 loss and codec quality with and without DAAM.

The paper (arXiv:2512.07168, paper-spec §11) reports a stage-1 masked-prediction MSE of about
0.09 with DAAM versus about 0.17 without, after 24k steps of the PAPER model on LibriLight, with
the leaky "latent" context masking. This command trains a configuration (`--config`, default SMALL)
twice, DAAM on and off, with the same seed, data, crops, masks and step count (the two runs
differ only in `model.use_daam`; their configs are written to `RUNS/<run>.config.json`). With
`--stage2-steps N` (N > 0) each arm then gets N stage-2 steps from its own stage-1 encoder
(reconstruction losses only: the discriminators never start, so both arms get the same recipe),
is exported to `RUNS/<run>.safetensors` and evaluated as a codec by the benchmark runner on
`--eval-data` (STOI, ESTOI, PESQ, mel distance, WER with bootstrap CIs). It writes

* `OUT/ablation.csv`: one row per run (final loss, mean of the last k steps, steps, wall time,
  the collapse monitor's lowest between-clip std during training, two collapse diagnostics of
  the trained online encoder on held-out clips, see `representation_diagnostics`, and the codec
  quality columns), a row for the untrained encoder, and the paper's published rows labelled
  `published`;
* `OUT/ablation.md`: the same as Markdown tables (stage 1; codec quality);
* `OUT/loss_curves.png` / `.pdf`: both loss curves (raw and moving average);
* `OUT/<run>_log.csv` (and `OUT/<run>_stage2_log.csv`): the per-step training logs.

Usage::

    python -m benchmarks.ablation --config small-50hz --steps 400 --stage2-steps 400 \\
        --out results/ablation --data ../shared/data/train/manifest.tsv

Each run is `python -m jepa.train` (of this same checkout) in a subprocess with its run folder
under `--runs` (default `runs/ablation/`); an existing run folder is resumed (a finished one is
reused as is) and the evaluation resumes from its results, so the command is restartable.
`--jobs 2` trains both arms at once.
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
import pandas as pd

from benchmarks.tables import fmt, fmt_ci, to_markdown
from jepa.config import JEPADAAMConfig, config_from_dict, config_to_dict, get_config
from jepa.train import CHECKPOINT_NAME, EXIT_COLLAPSED, LOG_NAME, load_checkpoint, read_log

if TYPE_CHECKING:
    import torch

PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # this checkout's root, which holds its `jepa` package

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


def stage1_command(v: Variant, config_path: Path, args: argparse.Namespace) -> list[str]:
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


def stage2_run(v: Variant, args: argparse.Namespace) -> Path:
    """The stage-2 run folder of one variant."""
    return Path(args.runs) / f"{v.name}_stage2"


def stage2_command(v: Variant, config_path: Path, args: argparse.Namespace) -> list[str]:
    """The `jepa.train stage2` command line of one variant: `--stage2-steps` steps from the arm's own
    stage-1 checkpoint, reconstruction losses only (the discriminators start after the last step)."""
    run = stage2_run(v, args)
    cmd = [sys.executable, "-m", "jepa.train", "stage2", "--config", str(config_path), "--data", str(args.data),
           "--out", str(run), "--init-from", str(Path(args.runs) / v.name / CHECKPOINT_NAME),
           "--steps", str(args.stage2_steps), "--disc-start-step", str(args.stage2_steps), "--seed", str(args.seed),
           "--save-every", str(args.save_every), "--threads", str(args.threads), "--device", args.device,
           "--no-progress", "--monitor-data", str(args.eval_data)]
    if (run / CHECKPOINT_NAME).is_file():
        cmd.append("--resume")
    return cmd


def run_commands(commands: list[tuple[Variant, list[str], Path]], jobs: int) -> None:
    """Run `(variant, command line, log file)` subprocesses, at most `jobs` at a time; raise if one fails.

    The subprocesses import this same checkout's `jepa` (its folder leads PYTHONPATH), whatever
    the working directory or installed copy.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                                      os.environ.get("PYTHONPATH")]))}
    pending = list(commands)
    running: list[tuple[Variant, subprocess.Popen, Path]] = []
    while pending or running:
        while pending and len(running) < jobs:
            v, cmd, log_path = pending.pop(0)
            print("running:", " ".join(cmd), flush=True)
            with open(log_path, "a", encoding="utf-8") as f:
                running.append((v, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), log_path))
        time.sleep(1.0)
        for item in list(running):
            v, proc, log_path = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode == EXIT_COLLAPSED:
                    raise RuntimeError(f"ablation run {v.name}: the collapse monitor stopped it (the encoder "
                                       f"output no longer depends on the audio); see {log_path}")
                if proc.returncode != 0:
                    raise RuntimeError(f"ablation run {v.name} failed (exit {proc.returncode}); see {log_path}")


def run_variants(base: JEPADAAMConfig, args: argparse.Namespace) -> None:
    """Stage 1 of every variant of `base`, then (with `--stage2-steps`) stage 2 and the export."""
    from jepa.train.export import export_codec

    runs = Path(args.runs)
    configs = write_variant_configs(base, runs)
    run_commands([(v, stage1_command(v, configs[v.name], args), runs / f"{v.name}.log") for v in VARIANTS],
                 args.jobs)
    if args.stage2_steps == 0:
        return
    run_commands([(v, stage2_command(v, configs[v.name], args), runs / f"{v.name}_stage2.log") for v in VARIANTS],
                 args.jobs)
    for v in VARIANTS:
        ckpt, out = stage2_run(v, args) / CHECKPOINT_NAME, codec_path(v, args)
        if not out.is_file() or out.stat().st_mtime < ckpt.stat().st_mtime:
            export_codec(ckpt, out)


def codec_path(v: Variant, args: argparse.Namespace) -> Path:
    """Where a variant's exported codec (stage 2) is written."""
    return Path(args.runs) / f"{v.name}.safetensors"


QUALITY_COLUMNS = tuple(f"{metric}{stat}" for metric in ("bitrate_measured", "stoi", "estoi", "pesq_wb", "mel_distance")
                        for stat in ("_mean", "_ci_low", "_ci_high")) + ("wer_corpus", "wer_corpus_ci_low",
                                                                        "wer_corpus_ci_high")
"""Columns of the benchmark run's summary.csv copied, under the same names, into the table (means with
95 % bootstrap CIs; WER pooled over the corpus)."""


def evaluate_codecs(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each arm's exported codec through the benchmark runner on `--eval-data`.

    Returns {variant name: {column: value}} for QUALITY_COLUMNS (bitrate in bit/s; the WER columns
    NaN with `--no-asr`) and `n_utts`.
    The run folder is `RUNS/eval` (resumed; its report.html has the listening grid).
    """
    from benchmarks.report import SUMMARY_STEM
    from benchmarks.run import parse_args
    from benchmarks.runner import run_benchmark

    specs = {v.name: f"jepa-daam:{codec_path(v, args)}" for v in VARIANTS}
    out = Path(args.runs) / "eval"
    argv = ["--codecs", ",".join(specs.values()), "--data", str(args.eval_data), "--out", str(out),
            "--no-perceptual", "--jobs", str(args.jobs), "--device", args.device, "--listen", "2"]
    if args.eval_limit is not None:
        argv += ["--limit", str(args.eval_limit)]
    if args.no_asr:
        argv.append("--no-asr")
    run_benchmark(parse_args(argv))
    summary = pd.read_csv(out / f"{SUMMARY_STEM}.csv").set_index("codec")
    results = {}
    for name, spec in specs.items():
        if spec not in summary.index:
            raise RuntimeError(f"the evaluation of {spec} wrote no summary row; see {out}")
        row = summary.loc[spec]
        results[name] = {"n_utts": float(row["n_ok"]),
                         **{c: float(row.get(c, float("nan"))) for c in QUALITY_COLUMNS}}
    return results


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


def _monitor_min(log: dict[str, np.ndarray]) -> float:
    """Lowest between-clip std the collapse monitor logged during a run (NaN if it never ran)."""
    values = log.get("mon_std", np.array([]))
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else float("nan")


STAGE2_COLUMNS = ("stage2_steps", "stage2_monitor_min_std", "stage2_wall_minutes", "n_utts", *QUALITY_COLUMNS)


def _stage2_columns(v: Variant, args: argparse.Namespace, quality: dict[str, dict[str, float]]) -> dict[str, float]:
    """A variant's stage-2 training and codec quality columns (NaN without --stage2-steps)."""
    nan = float("nan")
    if args.stage2_steps == 0:
        return dict.fromkeys(STAGE2_COLUMNS, nan)
    run = stage2_run(v, args)
    ckpt = load_checkpoint(run / CHECKPOINT_NAME)
    if int(ckpt["step"]) != args.stage2_steps:
        raise ValueError(f"run {run} holds {int(ckpt['step'])} stage-2 steps, expected {args.stage2_steps}")
    return {"stage2_steps": float(ckpt["step"]), "stage2_monitor_min_std": _monitor_min(read_log(run / LOG_NAME)),
            "stage2_wall_minutes": float(ckpt["wall_seconds"]) / 60.0, **quality[v.name]}


def summarise(base: JEPADAAMConfig, args: argparse.Namespace,
              quality: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    """Rows of the ablation table from the run folders (measured) plus the published values.

    `quality`: `evaluate_codecs`'s result ({} without --stage2-steps)."""
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
                     "monitor_min_std": _monitor_min(data), **diag,
                     "wall_minutes": float(ckpt["wall_seconds"]) / 60.0, "config": expected.name,
                     **_stage2_columns(v, args, quality)})
    blank = dict.fromkeys(rows[0], float("nan"))  # the other rows: the measured columns, NaN unless known
    untrained = representation_diagnostics(None, clips, model_cfgs[VARIANTS[0].name])
    rows.append({**blank, "run": "untrained encoder (reference for the diagnostics)", "source": "measured",
                 "use_daam": True, "steps": 0, **untrained, "config": variant_config(base, VARIANTS[0]).name})
    for label, value in PUBLISHED:
        rows.append({**blank, "run": label, "source": "published", "use_daam": "without" not in label,
                     "steps": 24000, "final_loss": value, "config": "paper"})
    return rows


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "–" if np.isnan(v) else f"{v:.4g}"
    return str(v)


def write_table(rows: list[dict[str, object]], out: Path) -> None:
    """`out/ablation.csv` (every column) and `out/ablation.md`: the stage-1 table, then (when stage 2
    ran) the codec-quality table of the measured arms with 95 % bootstrap CIs."""
    cols = list(rows[0])
    with open(out / "ablation.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    stage1 = [c for c in cols if c not in STAGE2_COLUMNS]
    text = "## Stage 1: masked-prediction loss and collapse diagnostics\n\n"
    text += to_markdown(pd.DataFrame([[_cell(r[c]) for c in stage1] for r in rows], columns=stage1))
    arms = [pd.Series(r) for r in rows if np.isfinite(float(r["stage2_steps"]))]
    if arms:
        text += "\n## Codec quality after stage 2 (measured, mean [95 % bootstrap CI])\n\n"
        text += to_markdown(pd.DataFrame({
            "run": [r["run"] for r in arms],
            "stage-2 steps": [_cell(r["stage2_steps"]) for r in arms],
            "monitor min std": [_cell(r["stage2_monitor_min_std"]) for r in arms],
            "kbit/s": [fmt(r["bitrate_measured_mean"], 2, 1e-3) for r in arms],
            **{header: [fmt_ci(r, key, decimals, scale) for r in arms] for key, header, decimals, scale in (
                ("stoi", "STOI", 3, 1.0), ("estoi", "ESTOI", 3, 1.0), ("pesq_wb", "PESQ-WB", 2, 1.0),
                ("mel_distance", "mel distance", 3, 1.0), ("wer_corpus", "WER % (corpus)", 1, 100.0))},
            "utterances": [_cell(r["n_utts"]) for r in arms]}))
    (out / "ablation.md").write_text(text, encoding="utf-8")


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
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, required=True, help="stage-1 steps of each run")
    p.add_argument("--config", default="small",
                   help="the DAAM arm's config (preset name or YAML/JSON path); the other arm sets use_daam false")
    p.add_argument("--out", type=Path, default=Path("results/ablation"), help="table, plot and logs")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/manifest.tsv"),
                   help="training data (manifest or folder)")
    p.add_argument("--eval-data", default=str(Path(__file__).resolve().parents[2] / "shared/data/eval/manifest.tsv"),
                   help="held-out speech for the collapse monitor, the diagnostics and the codec evaluation")
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
    p.add_argument("--stage2-steps", type=int, default=0,
                   help="stage-2 steps of each arm, then its codec quality on --eval-data (default 0: stage 1 only)")
    p.add_argument("--eval-limit", type=int, help="evaluate the codecs on at most N utterances (default: all)")
    p.add_argument("--no-asr", action="store_true", help="no WER in the codec evaluation")
    args = p.parse_args(argv)
    if args.steps < 1 or args.last_k < 1 or args.jobs < 1:
        p.error("--steps, --last-k and --jobs must be >= 1")
    if args.stage2_steps < 0 or (args.eval_limit is not None and args.eval_limit < 1):
        p.error("--stage2-steps must be >= 0 and --eval-limit >= 1")
    base = get_config(args.config)
    variant_config(base, VARIANTS[0])  # fails early on a no-DAAM base config
    run_variants(base, args)
    args.out.mkdir(parents=True, exist_ok=True)
    quality = evaluate_codecs(args) if args.stage2_steps else {}
    rows = summarise(base, args, quality)
    write_table(rows, args.out)
    plot_curves(base, args, args.out)
    for v in VARIANTS:
        shutil.copyfile(Path(args.runs) / v.name / LOG_NAME, args.out / f"{v.name}_log.csv")
        if args.stage2_steps:
            shutil.copyfile(stage2_run(v, args) / LOG_NAME, args.out / f"{v.name}_stage2_log.csv")
    print((args.out / "ablation.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
