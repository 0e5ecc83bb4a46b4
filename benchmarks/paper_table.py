"""Paper-style tables: what this code measures, beside what papers print, clearly labelled.

Four tables (Markdown ``paper_tables.md`` and LaTeX ``paper_tables.tex``):

(a) **Parameter counts** of the PAPER configuration, built on the ``meta`` device (no memory, no
    weights) from ``jepa.encoder`` / ``jepa.jepa`` / ``jepa.hifigan``, beside the JEPA-DAAM paper's
    printed counts. Weight-normed layers count their effective weight (``audiocore.params.count_parameters``).
(b) **Frame rate and tokens/s** measured in a benchmark run (``--run``) and derived from the PAPER
    config, beside the rates the JEPA-DAAM paper quotes for itself and other codecs.
(c) **Stage-1 loss with and without DAAM** from ``results/ablation/ablation.csv`` (``benchmarks.ablation``,
    SMALL config, few steps) beside the paper's 0.09 / 0.17 (PAPER config, 24k steps).
(d) **Reconstruction**: measured rows of the run beside the published rows of Protocol A
    (X-codec2 / Llasa Table 1) and Protocol B (FocalCodec Table 2), protocol differences stated.

Published numbers come only from ``results/reference/published.csv`` (each row cites its source);
a table whose inputs are missing says so instead of being left out silently.

Measured rows come from ``--run``; every metric there that differs from a published protocol's
(Whisper tiny.en in place of HuBERT, Resemblyzer in place of WavLM, UTMOS missing) is labelled in
the row. With ``--measure CODECS``, protocols A and B are run (``benchmarks.run --protocol A|B``)
when their models are on disk or downloadable, and their tables use those runs.

Usage::

    python -m benchmarks.paper_table [--run RUN_DIR] [--out DIR] [--measure CODECS --data DATA]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from audiocore.params import count_parameters
from benchmarks import report
from benchmarks.tables import fmt, fmt_ci, to_latex, to_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_CSV = REPO_ROOT / "results" / "reference" / "published.csv"
ABLATION_CSV = REPO_ROOT / "results" / "ablation" / "ablation.csv"
JEPA_SOURCE = "arXiv:2512.07168"


@dataclass
class Table:
    """One rendered table: title, body, and notes printed under it."""

    title: str
    frame: pd.DataFrame
    notes: list[str]


def load_published(path: Path = PUBLISHED_CSV) -> pd.DataFrame:
    """Read ``published.csv`` (long format: one number per row, see results/reference/README.md)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: published reference numbers not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    required = {"source_id", "table", "protocol", "model", "setting", "metric", "value", "unit"}
    if missing := required - set(df.columns):
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return df


def _norm(name: str) -> str:
    """Family key for matching paper names to codec specs: 'EnCodec' / 'encodec@6k' -> 'encodec'."""
    return re.sub(r"[^a-z0-9]", "", str(name).split("@", 1)[0].split(":", 1)[0].lower())


def _num(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


# ----------------------------------------------------------------------------------------------
# (a) parameter counts
# ----------------------------------------------------------------------------------------------
def measured_parameter_counts() -> tuple[dict[str, int], str | None]:
    """Parameter counts of the PAPER configuration, built on the meta device.

    Returns:
        ({component: count}, None), or ({}, reason) when the model modules are not importable.
    """
    try:
        import torch

        from jepa.config import PAPER
        from jepa.hifigan import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator
        from jepa.jepa import JEPA
    except ImportError as exc:
        return {}, f"model modules not importable yet ({exc}); measured counts skipped"

    with torch.device("meta"):
        jepa = JEPA(PAPER.model)
        decoder = Generator(PAPER.model)
        mpd, msd = MultiPeriodDiscriminator(PAPER.model), MultiScaleDiscriminator(PAPER.model)
    encoder = count_parameters(jepa.context_encoder)
    predictor = count_parameters(jepa.predictor)
    stage1 = count_parameters(jepa)
    dec = count_parameters(decoder)
    return {
        "online encoder (= EMA target)": encoder,
        "predictor": predictor,
        "online encoder + predictor + mask token": encoder + predictor + jepa.mask_token.numel(),
        "stage-1 total": stage1,
        "decoder incl. un-projection": dec,
        "FSQ": 0,
        "stage-2 total": stage1 + dec,
        "stage-2 trainable": dec,
        "inference (online encoder + decoder)": encoder + dec,
        "MPD": count_parameters(mpd),
        "MSD": count_parameters(msd),
    }, None


def parameter_table(published: pd.DataFrame) -> Table:
    """(a) measured PAPER parameter counts beside the paper's."""
    paper = published[(published.source_id == JEPA_SOURCE) & (published.metric == "params")]
    paper_by_setting = {r.setting: (_num(r.value), r.note) for r in paper.itertuples()}
    measured, reason = measured_parameter_counts()
    rows = []
    for component in dict.fromkeys([*measured, *paper_by_setting]):
        m = measured.get(component)
        p, note = paper_by_setting.get(component, (math.nan, ""))
        rows.append({
            "Component": component,
            "measured (this code, PAPER config)": f"{m:,}" if m is not None else "–",
            "published (paper)": f"{p / 1e6:.2f}M" if math.isfinite(p) else "–",
            "measured / published": f"{m / p:.3f}" if m is not None and math.isfinite(p) and p > 0 else "–",
            "note": note,
        })
    notes = [f"Published: {JEPA_SOURCE}, parameter table (as transcribed in ../shared/docs/paper-spec.md §9). "
             "Measured: modules built on the meta device; weight-normed layers counted by effective weight."]
    if reason:
        notes.append(f"Measured column missing: {reason}.")
    return Table("(a) Parameter counts, PAPER configuration", pd.DataFrame(rows), notes)


# ----------------------------------------------------------------------------------------------
# (b) frame rates and token rates
# ----------------------------------------------------------------------------------------------
def rate_table(published: pd.DataFrame, summary: pd.DataFrame | None) -> Table:
    """(b) frame rate and tokens/s: measured per codec of the run; derived from PAPER; quoted by the paper."""
    quoted = published[(published.source_id == JEPA_SOURCE) & (published.metric.isin(["frames_per_s", "tokens_per_s"]))]
    rows = []
    for r in quoted.itertuples():
        rows.append({"Model": r.model, "setting": r.setting, "source": f"published ({JEPA_SOURCE})",
                     "frames/s": r.value if r.metric == "frames_per_s" else "–",
                     "tokens/s": r.value if r.metric == "tokens_per_s" else "–", "bit/s": "–"})
    notes = [f"Published rows: nominal rates quoted by {JEPA_SOURCE} (paper-spec §11); no quality numbers."]
    try:
        from jepa.config import PAPER

        m = PAPER.model
        rows.append({"Model": "JEPA-DAAM", "setting": "PAPER config", "source": "derived (jepa.config)",
                     "frames/s": f"{m.frame_rate:g}", "tokens/s": f"{m.frame_rate * m.tokens_per_frame:g}",
                     "bit/s": f"{m.bitrate:g}"})
    except ImportError as exc:
        notes.append(f"Derived JEPA-DAAM row missing: jepa.config not importable ({exc}).")
    if summary is None:
        notes.append("No --run given: no measured rows.")
    else:
        for r in summary.itertuples():
            tok = getattr(r, "tokens_per_s_mean", math.nan)
            fps = getattr(r, "frames_per_s_mean", math.nan)
            rows.append({"Model": r.codec, "setting": "", "source": "measured (this run)",
                         "frames/s": fmt(fps, 2), "tokens/s": fmt(tok, 2),
                         "bit/s": fmt(getattr(r, "bitrate_measured_mean", math.nan), 1)})
        notes.append("Measured: means over the run's utterances; frames/s and tokens/s exist for token codecs only.")
    frame = pd.DataFrame(rows)
    frame["_key"] = [_norm(m) for m in frame["Model"]]
    frame = frame.sort_values(["_key", "source"], kind="stable").drop(columns="_key").reset_index(drop=True)
    return Table("(b) Frame rate and token rate", frame, notes)


# ----------------------------------------------------------------------------------------------
# (c) stage-1 loss ablation
# ----------------------------------------------------------------------------------------------
def loss_table(published: pd.DataFrame, ablation_csv: Path = ABLATION_CSV) -> Table:
    """(c) stage-1 masked-MSE with and without DAAM: our CPU-sized ablation beside the paper."""
    rows = []
    for r in published[(published.source_id == JEPA_SOURCE) & (published.metric == "stage1_loss_final")].itertuples():
        rows.append({"Run": r.setting, "source": f"published ({JEPA_SOURCE})", "config": "PAPER",
                     "steps": "24000", "final loss": r.value, "mean of last steps": "–"})
    notes = ["Published: read off the paper's loss curves (≈ values), PAPER model, LibriLight, leaky latent masking."]
    if not ablation_csv.is_file():
        notes.append(f"No measured rows: {ablation_csv} not found (run `python -m benchmarks.ablation`).")
    else:
        measured = pd.read_csv(ablation_csv)
        if "source" in measured.columns:
            measured = measured[measured["source"] == "measured"]
        mean_col = next((c for c in measured.columns if c.startswith("mean_last")), None)
        for r in measured.to_dict("records"):
            rows.append({"Run": str(r.get("run", "")), "source": "measured (results/ablation)",
                         "config": str(r.get("config", "")), "steps": str(r.get("steps", "")),
                         "final loss": fmt(_num(r.get("final_loss")), 4),
                         "mean of last steps": fmt(_num(r.get(mean_col)), 4) if mean_col else "–"})
        notes.append(f"Measured: {ablation_csv.relative_to(REPO_ROOT) if ablation_csv.is_relative_to(REPO_ROOT) else ablation_csv}"
                     " (the config column names the preset; far fewer steps than the paper and targets normalised per "
                     "frame: compare the direction, not the values).")
    return Table("(c) Stage-1 loss with and without DAAM", pd.DataFrame(rows), notes)


# ----------------------------------------------------------------------------------------------
# (d) reconstruction
# ----------------------------------------------------------------------------------------------
RECON_METRICS = (  # (published metric, header)
    ("bitrate", "kbit/s"), ("tokens_per_s", "tokens/s"), ("frames_per_s", "frames/s"),
    ("pesq_wb", "PESQ-WB"), ("pesq_nb", "PESQ-NB"), ("stoi", "STOI"), ("wer", "WER %"), ("dwer", "dWER %"),
    ("spk_sim", "SPK-SIM"), ("utmos", "UTMOS"),
)


def _published_recon(published: pd.DataFrame, protocol: str) -> pd.DataFrame:
    sub = published[published.protocol == protocol]
    rows = []
    for (model, setting), group in sub.groupby(["model", "setting"], sort=False):
        values = dict(zip(group.metric, group.value))
        cited = "; ".join(dict.fromkeys(f"{r.source_id} {r.table}" for r in group.itertuples()))
        row = {"Codec": model, "setting": setting, "source": f"published (Protocol {protocol}: {cited})"}
        row.update({header: values.get(metric, "–") for metric, header in RECON_METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


def _manifest(run_dir: Path | None) -> dict:
    path = run_dir / "manifest.json" if run_dir is not None else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}


def _measured_recon(summary: pd.DataFrame, protocol: str = "A", manifest: dict | None = None) -> pd.DataFrame:
    """Measured rows for a protocol's table; the source cell names every substitution, and a
    codec whose self-check failed is marked ⚠."""
    from benchmarks.protocols import measured_choices
    from benchmarks.selfcheck import is_flagged

    choice, labels = measured_choices(protocol, manifest or {}, set(summary.columns))
    source = "measured (this run" + "".join(f"; {label}" for label in labels) + ")"
    rows = []
    for _, r in summary.iterrows():
        check = r.get("self_check", None)
        name = f"⚠ {r['codec']} (self-check: {check})" if is_flagged(check) else r["codec"]
        row = {"Codec": name, "setting": "", "source": source}
        values = {
            "bitrate": fmt(r.get("bitrate_measured_mean", math.nan), 2, 1e-3),
            "tokens_per_s": fmt(r.get("tokens_per_s_mean", math.nan), 1),
            "frames_per_s": fmt(r.get("frames_per_s_mean", math.nan), 2),
            "pesq_wb": fmt_ci(r, "pesq_wb", 2, 1.0), "pesq_nb": fmt_ci(r, "pesq_nb", 2, 1.0),
            "stoi": fmt_ci(r, "stoi", 3, 1.0), "wer": fmt_ci(r, "wer_corpus", 1, 100.0),
            "dwer": fmt_ci(r, "dwer_corpus", 1, 100.0),
            "spk_sim": fmt_ci(r, choice["spk_sim"], 3, 1.0) if choice["spk_sim"] else "–",
            "utmos": fmt_ci(r, choice["utmos"], 2, 1.0) if choice["utmos"] else "–",
        }
        row.update({header: values[metric] for metric, header in RECON_METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


def _run_protocol(run_dir: Path | None) -> str:
    if run_dir is None:
        return "no run given"
    path = run_dir / "manifest.json"
    if not path.is_file():
        return f"{run_dir.name}: manifest.json missing (data and ASR unknown)"
    m = json.loads(path.read_text(encoding="utf-8"))
    asr = m.get("asr") or {}
    asr_text = f"{asr.get('backend', '?')} {asr.get('model', '?')}, normaliser {asr.get('normaliser', asr.get('normalizer', '?'))}" \
        if isinstance(asr, dict) and asr else "no ASR"
    n = len(m.get("data", []))
    data = (m.get("args") or {}).get("data", "?")
    return f"{n} utterances from {data}; ASR {asr_text}; resampler {m.get('resampler', '?')}; metrics at {m.get('metric_sample_rate', '?')} Hz"


def reconstruction_tables(published: pd.DataFrame, summary: pd.DataFrame | None, run_dir: Path | None,
                          protocol_runs: dict[str, Path] | None = None) -> list[Table]:
    """(d) one table per protocol: published rows, then measured rows of the same families (from
    the protocol's own run when ``protocol_runs`` has one, else from ``run_dir``)."""
    tables = []
    base_summary, base_dir = summary, run_dir
    for protocol, differences in (
        ("A", "Protocol A: full LibriSpeech test-clean (2620 utterances), 16 kHz, WER with hubert-large-ls960-ft "
              "(HuBERT CTC, no LM), SPK-SIM with WavLM-large, UTMOS."),
        ("B", "Protocol B: LibriSpeech test-clean, 16 kHz, dWER = WER of Whisper-small on the reconstruction against "
              "Whisper-small on the reference, Sim with WavLM-base-SV (x100), UTMOS; no PESQ/STOI by design."),
    ):
        run_dir = (protocol_runs or {}).get(protocol, base_dir)
        summary = _summary(run_dir) if run_dir is not base_dir else base_summary
        manifest = _manifest(run_dir)
        measured = _measured_recon(summary, protocol, manifest) if summary is not None else pd.DataFrame()
        pub = _published_recon(published, protocol)
        if pub.empty:
            tables.append(Table(f"(d) Reconstruction vs Protocol {protocol}", pub,
                                [f"No Protocol {protocol} rows in published.csv."]))
            continue
        families = {_norm(c) for c in pub["Codec"]}
        if len(measured):
            measured["_codec"] = measured["Codec"].str.replace("⚠ ", "", regex=False).str.split(" ").str[0]
        ours = measured[[_norm(c) in families for c in measured["_codec"]]].drop(columns="_codec") if len(measured) else measured
        others = measured[[_norm(c) not in families for c in measured["_codec"]]].drop(columns="_codec") if len(measured) else measured
        frame = pd.concat([pub, ours, others], ignore_index=True)
        notes = [differences, f"Measured rows: {_run_protocol(run_dir)}. Published and measured rows are not "
                 "comparable number for number: data, ASR model and text normaliser differ."]
        if len(others):
            notes.append("Measured codecs without a published counterpart are listed last.")
        tables.append(Table(f"(d) Reconstruction: measured vs published Protocol {protocol}", frame, notes))
    return tables


# ----------------------------------------------------------------------------------------------
# Rendering and CLI
# ----------------------------------------------------------------------------------------------
def _summary(run_dir: Path | None) -> pd.DataFrame | None:
    """The run's per-codec summary with its ``self_check`` column (None without a run)."""
    if run_dir is None:
        return None
    from benchmarks.selfcheck import load_self_checks, status_of

    summary = report.summarize(report.load_results(run_dir), n_resamples=1000)
    checks = load_self_checks(run_dir)
    summary["self_check"] = [status_of(checks, c) for c in summary["codec"]]
    return summary


def build_tables(run_dir: Path | None, published_csv: Path = PUBLISHED_CSV, ablation_csv: Path = ABLATION_CSV,
                 protocol_runs: dict[str, Path] | None = None) -> list[Table]:
    """All paper tables; ``run_dir`` may be None (no measured rate/reconstruction rows);
    ``protocol_runs`` maps ``A`` / ``B`` to runs made with that ``--protocol``."""
    published = load_published(published_csv)
    summary = _summary(run_dir)
    return [parameter_table(published), rate_table(published, summary), loss_table(published, ablation_csv),
            *reconstruction_tables(published, summary, run_dir, protocol_runs)]


def protocol_unavailable(protocol: str, weights_dir: Path | None = None, offline: bool = False) -> str | None:
    """None when every model of published protocol ``A`` / ``B`` is on disk or could be downloaded
    now (which downloads it), else the first reason."""
    from audiocore.weights import WeightsUnavailable, resolve_weights
    from metrics.asr.hubert import HUBERT_SOURCE
    from metrics.perceptual import UTMOS_SOURCE
    from metrics.speaker import WAVLM_SV_SOURCE

    sources = {"A": (UTMOS_SOURCE, WAVLM_SV_SOURCE, HUBERT_SOURCE), "B": (UTMOS_SOURCE, WAVLM_SV_SOURCE)}[protocol]
    for source in sources:
        try:
            resolve_weights(source.repo_id, source, weights_dir, download=True, offline=offline)
        except WeightsUnavailable as exc:
            return str(exc)
    return None


def measure_protocols(codecs: str, data: str, out_root: Path, *, limit: int | None = None,
                      weights_dir: Path | None = None, offline: bool = False) -> dict[str, Path]:
    """Run ``benchmarks.run --protocol P`` for each published protocol whose models are present
    (or downloadable); returns the runs made. A protocol without its models is reported and left
    to the labelled substitutes of the ``--run`` rows."""
    from benchmarks import run as run_cli

    runs: dict[str, Path] = {}
    for protocol in ("A", "B"):
        reason = protocol_unavailable(protocol, weights_dir, offline)
        if reason:
            print(f"protocol {protocol}: not measured ({reason})", file=sys.stderr)
            continue
        out = out_root / f"protocol-{protocol}"
        argv = ["--codecs", codecs, "--data", data, "--out", str(out), "--protocol", protocol]
        argv += ["--offline"] if offline else []
        argv += ["--limit", str(limit)] if limit else []
        argv += ["--weights-dir", str(weights_dir)] if weights_dir else []
        if run_cli.main(argv) == 0:
            runs[protocol] = out
    return runs


def render_markdown(tables: list[Table]) -> str:
    parts = ["# Paper tables: measured (this code) beside published", ""]
    for t in tables:
        parts += [f"## {t.title}", ""]
        parts.append(to_markdown(t.frame) if len(t.frame) else "_(no rows)_\n")
        parts += [f"- {n}" for n in t.notes] + [""]
    return "\n".join(parts)


def render_latex(tables: list[Table]) -> str:
    parts = ["% Paper tables generated by `python -m benchmarks.paper_table`; needs \\usepackage{booktabs}", ""]
    for i, t in enumerate(tables):
        if len(t.frame):
            parts.append(to_latex(t.frame, caption=f"{t.title}. {' '.join(t.notes)}", label=f"tab:paper-{i}"))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="benchmark run directory (results.jsonl) for measured rows")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the run directory, else runs/paper_tables)")
    parser.add_argument("--published", type=Path, default=PUBLISHED_CSV, help="published numbers CSV")
    parser.add_argument("--ablation", type=Path, default=ABLATION_CSV, help="ablation CSV from benchmarks.ablation")
    parser.add_argument("--measure", metavar="CODECS", default=None,
                        help="also run --protocol A and B on these codecs when their models are present or "
                             "downloadable (HuBERT-large CTC, WavLM-SV, UTMOS); their tables then use those runs")
    parser.add_argument("--data", default="default", help="data for --measure (as benchmarks.run --data)")
    parser.add_argument("--limit", type=int, default=None, help="utterances for --measure")
    parser.add_argument("--weights-dir", type=Path, default=None, help="weights folder for --measure")
    parser.add_argument("--offline", action="store_true", help="--measure: never download")
    args = parser.parse_args(argv)
    out = args.out or args.run or (REPO_ROOT / "runs" / "paper_tables")
    protocol_runs = measure_protocols(args.measure, args.data, out, limit=args.limit, weights_dir=args.weights_dir,
                                      offline=args.offline) if args.measure else {}
    try:
        tables = build_tables(args.run, args.published, args.ablation, protocol_runs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    md = render_markdown(tables)
    (out / "paper_tables.md").write_text(md, encoding="utf-8")
    (out / "paper_tables.tex").write_text(render_latex(tables), encoding="utf-8")
    print(md)
    print(f"wrote {out / 'paper_tables.md'} and {out / 'paper_tables.tex'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
