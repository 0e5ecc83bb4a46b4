"""Regression check: re-run the committed reference configuration and compare per-codec means.

The reference lives in ``results/reference/``:

* ``regress_config.json`` -- codecs, utterance ids (from ``../shared/data/eval``), extra runner
  arguments, and one tolerance per compared summary column;
* ``run/`` -- the committed reference run (``results.jsonl``, ``summary.*``, ``manifest.json``).

``python -m benchmarks.regress`` runs ``python -m benchmarks.run`` on that configuration (fresh
cache, ``--force``), summarises both runs with :func:`benchmarks.report.summarize`, prints a diff
table and exits 1 when any value moved outside its tolerance -- in either direction: a change that
looks like an improvement is still a change to explain, and ``--update`` records it on purpose.

Tolerance kinds (per summary column, e.g. ``pesq_wb_mean`` or ``wer_corpus``):

* ``{"abs": 0.1}``  -- |current - reference| <= 0.1 (PESQ, STOI, WER ...);
* ``{"rel": 0.02}`` -- |current - reference| <= 0.02 * |reference| (bitstream bitrates);
* ``{"exact": true}`` -- equal up to 1e-9 (token counts, token rates);
* ``{"count": 2}`` -- for corpus rates (``wer_corpus`` ...): |current - reference| <= 2 / N, N the
  pooled denominator (``<column>_n``: reference words, or characters for CER), i.e. at most
  2 more or fewer errors over the whole subset. On a small subset one word is several points of
  WER, so the band is stated in errors, the unit in which the rate actually moves.
``"exact_for_token_codecs": true`` makes a relative band exact for codecs with tokens
(``tokens_per_s`` > 0 in the reference), whose bitrate follows from vocabulary sizes and frame rate.
A ``"better"`` key (``"higher"`` / ``"lower"``) only labels a change as REGRESSED or IMPROVED.

**ASR and the CPU's instruction set.** CTranslate2's int8 kernels give different transcripts on
different instruction sets, so the ASR backend pins one path (``metrics.asr.isa``) and records
the settings in force in ``manifest.json`` (``asr.cpu_isa``). When the current run's settings
equal the reference's, the ``tolerances`` above apply. When they differ (a CPU that cannot run
the pinned path, or an instruction set forced on purpose), the ``cross_isa_tolerances`` of the
config replace them for the ASR columns: bands derived from the spread measured between
instruction sets, stated in the config. The diff says which case applied.

Usage::

    python -m benchmarks.regress                       # run, compare with results/reference/run
    python -m benchmarks.regress --compare RUN_DIR     # compare an existing run only
    python -m benchmarks.regress --update              # re-run and overwrite results/reference/run
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import report, tables

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO_ROOT / "results" / "reference" / "run"
DEFAULT_CONFIG = REPO_ROOT / "results" / "reference" / "regress_config.json"
#: Files of a run that make up the committed reference.
REFERENCE_FILES = ("results.jsonl", "manifest.json", "skipped.json", "summary.csv", "summary.md", "summary.tex")
#: Bootstrap resamples for the summaries compared here (CIs are not compared; keep it cheap).
_N_BOOT = 200
_EXACT_EPS = 1e-9
#: Statuses that pass the check.
PASSING = ("ok", "extra")
EXTRA = "extra"


@dataclass(frozen=True)
class Tolerance:
    """Allowed deviation of one summary column (see the module docstring)."""

    column: str
    abs: float | None = None
    rel: float | None = None
    count: float | None = None
    exact: bool = False
    exact_for_token_codecs: bool = False
    better: str | None = None  # "higher" | "lower" | None

    def allowed(self, reference: float, token_codec: bool, n_units: float = math.nan) -> float:
        """Largest |current - reference| that passes.

        Args:
            reference: the reference value.
            token_codec: the codec has tokens (for ``exact_for_token_codecs``).
            n_units: pooled denominator of a corpus rate (``<column>_n``), for ``count`` bands;
                NaN makes a ``count`` band exact.
        """
        if self.exact or (self.exact_for_token_codecs and token_codec):
            return _EXACT_EPS
        if self.count is not None:
            return self.count / n_units if n_units > 0 else _EXACT_EPS
        if self.abs is not None:
            return self.abs
        return (self.rel or 0.0) * abs(reference)

    def describe(self, token_codec: bool, n_units: float = math.nan) -> str:
        if self.exact or (self.exact_for_token_codecs and token_codec):
            return "exact"
        if self.count is not None:
            return f"±{self.count:g} of {n_units:g}" if n_units > 0 else "exact"
        return f"±{self.abs:g}" if self.abs is not None else f"±{100 * (self.rel or 0.0):g}%"


@dataclass(frozen=True)
class RegressConfig:
    """Parsed ``regress_config.json``."""

    codecs: tuple[str, ...]
    manifest: Path
    ids: tuple[str, ...]
    run_args: tuple[str, ...]
    tolerances: tuple[Tolerance, ...]
    cross_isa_tolerances: tuple[Tolerance, ...] = ()


def load_config(path: str | Path = DEFAULT_CONFIG) -> RegressConfig:
    """Read and validate the regression configuration.

    Raises:
        FileNotFoundError: no config at ``path``.
        ValueError: a missing key or a malformed tolerance, naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: regression config not found")
    raw = json.loads(path.read_text(encoding="utf-8"))
    for key in ("codecs", "data", "tolerances"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r} (needs codecs, data, tolerances)")
    data = raw["data"]
    if "manifest" not in data or not data.get("ids"):
        raise ValueError(f"{path}: 'data' needs 'manifest' (path relative to the repo root) and a non-empty 'ids' list")
    tolerances = _parse_tolerances(raw["tolerances"], path)
    cross_isa = _parse_tolerances(raw.get("cross_isa_tolerances", {}), path)
    manifest = Path(data["manifest"])
    return RegressConfig(
        codecs=tuple(raw["codecs"]),
        manifest=manifest if manifest.is_absolute() else (REPO_ROOT / manifest).resolve(),
        ids=tuple(data["ids"]),
        run_args=tuple(raw.get("run_args", ())),
        tolerances=tolerances,
        cross_isa_tolerances=cross_isa,
    )


def _parse_tolerances(specs: dict[str, Any], path: Path) -> tuple[Tolerance, ...]:
    """``{column: {"abs": ...}, "_comment": ...}`` -> Tolerances (keys starting with _ are comments)."""
    tolerances = []
    for column, spec in specs.items():
        if column.startswith("_"):
            continue  # comment keys
        unknown = set(spec) - {"abs", "rel", "count", "exact", "exact_for_token_codecs", "better"}
        if unknown or not ({"abs", "rel", "count", "exact"} & set(spec)):
            raise ValueError(f"{path}: tolerance for {column!r} must give one of abs/rel/count/exact; got {spec}")
        if spec.get("better") not in (None, "higher", "lower"):
            raise ValueError(f"{path}: tolerance {column!r}: 'better' must be 'higher' or 'lower'")
        tolerances.append(Tolerance(column=column, abs=spec.get("abs"), rel=spec.get("rel"), count=spec.get("count"),
                                    exact=bool(spec.get("exact", False)),
                                    exact_for_token_codecs=bool(spec.get("exact_for_token_codecs", False)),
                                    better=spec.get("better")))
    return tuple(tolerances)


def asr_isa(run_dir: Path) -> dict[str, Any] | None:
    """The CTranslate2 instruction-set settings a run's ASR ran with (``manifest.json``
    ``asr.cpu_isa``); None when the run has no manifest, no ASR, or predates the record."""
    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    asr = manifest.get("asr") if isinstance(manifest, dict) else None
    return asr.get("cpu_isa") if isinstance(asr, dict) else None


def tolerances_for(cfg: RegressConfig, reference_dir: Path, current_dir: Path) -> tuple[tuple[Tolerance, ...], str]:
    """The tolerances that apply to this pair of runs, and a line saying why.

    Same ASR instruction-set settings (or no record on either side): ``cfg.tolerances``. Different
    settings: ``cfg.cross_isa_tolerances`` replace the bands of the columns they name.
    """
    ref, cur = asr_isa(reference_dir), asr_isa(current_dir)
    if ref == cur or not cfg.cross_isa_tolerances:
        return cfg.tolerances, f"ASR instruction set: {_isa_text(cur)} in both runs"
    wider = {t.column: t for t in cfg.cross_isa_tolerances}
    merged = tuple(wider.get(t.column, t) for t in cfg.tolerances)
    return merged, (f"ASR instruction set differs (reference {_isa_text(ref)}, this run {_isa_text(cur)}): "
                    f"cross-instruction-set bands for {', '.join(sorted(wider))}")


def _isa_text(isa: dict[str, Any] | None) -> str:
    if not isa:
        return "not recorded"
    return ", ".join(f"{k}={v}" for k, v in sorted(isa.items()))


def write_subset_manifest(cfg: RegressConfig, out_path: Path) -> Path:
    """Write a JSONL manifest with the configured utterances (absolute audio paths), in config order.

    Raises:
        FileNotFoundError: the source manifest is missing.
        ValueError: an id of the config is not in the source manifest.
    """
    if not cfg.manifest.is_file():
        raise FileNotFoundError(f"{cfg.manifest}: evaluation manifest not found (regress_config.json 'data.manifest')")
    with open(cfg.manifest, newline="", encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    missing = [i for i in cfg.ids if i not in rows]
    if missing:
        raise ValueError(f"{cfg.manifest}: ids not found: {', '.join(missing)}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        for utt_id in cfg.ids:
            row = rows[utt_id]
            record: dict[str, Any] = {"id": utt_id, "path": str((cfg.manifest.parent / row["path"]).resolve())}
            for key in ("set", "speaker", "transcript"):
                if row.get(key):
                    record[key] = row[key]
            f.write(json.dumps(record) + "\n")
    return out_path


def run_reference_config(cfg: RegressConfig, out_dir: Path, work_dir: Path) -> Path:
    """Run ``python -m benchmarks.run`` on the configuration into ``out_dir`` (fresh cache, --force).

    Raises:
        RuntimeError: the runner exited with a non-zero status (its output is included).
    """
    subset = write_subset_manifest(cfg, work_dir / "subset.jsonl")
    cmd = [sys.executable, "-m", "benchmarks.run", "--codecs", ",".join(cfg.codecs), "--data", str(subset),
           "--out", str(out_dir), "--cache-dir", str(work_dir / "cache"), "--force", "--no-report", *cfg.run_args]
    print("running:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks.run exited with {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out_dir


def compare(reference: pd.DataFrame, current: pd.DataFrame, tolerances: tuple[Tolerance, ...]) -> pd.DataFrame:
    """Diff two per-codec summaries (from :func:`benchmarks.report.summarize`).

    Returns:
        One row per (codec, column) with ``reference``, ``current``, ``delta``, ``tolerance`` and
        ``status`` in {ok, extra, REGRESSED, IMPROVED, CHANGED, MISSING, NEW-FAILURES}; ``extra``
        (a codec the reference does not have, not compared) passes, every capitalised status fails. Columns absent from both runs are not listed; a value
        NaN in one run but not the other is CHANGED.
    """
    ref = reference.set_index("codec")
    cur = current.set_index("codec")
    out: list[dict[str, Any]] = []
    for codec in ref.index:
        if codec not in cur.index:
            out.append(dict(codec=codec, column="(codec)", reference="present", current="missing",
                            delta=math.nan, tolerance="", status="MISSING"))
            continue
        r, c = ref.loc[codec], cur.loc[codec]
        status = "ok" if (c["n_ok"], c["n_failed"]) == (r["n_ok"], r["n_failed"]) else "NEW-FAILURES"
        out.append(dict(codec=codec, column="n_ok / n_failed", reference=f"{r['n_ok']} / {r['n_failed']}",
                        current=f"{c['n_ok']} / {c['n_failed']}", delta=math.nan, tolerance="exact", status=status))
        token_codec = _finite(r.get("tokens_per_s_mean")) and float(r["tokens_per_s_mean"]) > 0
        for tol in tolerances:
            rv, cv = _value(r, tol.column), _value(c, tol.column)
            if math.isnan(rv) and math.isnan(cv):
                continue
            out.append(_compare_value(codec, tol, rv, cv, token_codec, _value(r, f"{tol.column}_n")))
    for codec in cur.index.difference(ref.index, sort=False):
        out.append(dict(codec=codec, column="(codec)", reference="absent", current="present",
                        delta=math.nan, tolerance="", status=EXTRA))
    return pd.DataFrame(out, columns=["codec", "column", "reference", "current", "delta", "tolerance", "status"])


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _value(row: pd.Series, column: str) -> float:
    return float(row[column]) if column in row.index and _finite(row[column]) else math.nan


def _compare_value(codec: str, tol: Tolerance, rv: float, cv: float, token_codec: bool,
                   n_units: float = math.nan) -> dict[str, Any]:
    delta = cv - rv
    if math.isnan(rv) or math.isnan(cv):
        status = "CHANGED"
    elif abs(delta) <= tol.allowed(rv, token_codec, n_units) + _EXACT_EPS:
        status = "ok"
    elif tol.better is None:
        status = "CHANGED"
    else:
        worse = delta < 0 if tol.better == "higher" else delta > 0
        status = "REGRESSED" if worse else "IMPROVED"
    return dict(codec=codec, column=tol.column, reference=rv, current=cv, delta=delta,
                tolerance=tol.describe(token_codec, n_units), status=status)


def format_diff(diff: pd.DataFrame) -> str:
    """The diff as a Markdown table (numbers to 4 significant digits)."""
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else ("" if isinstance(v, float) else str(v))

    table = diff.copy()
    for col in ("reference", "current", "delta"):
        table[col] = [fmt(v) for v in table[col]]
    return tables.to_markdown(table)


def check(reference_dir: Path, current_dir: Path, cfg: RegressConfig, out_dir: Path | None = None) -> tuple[bool, pd.DataFrame]:
    """Compare two run directories; write ``regress_diff.csv`` / ``.md`` into ``out_dir`` if given.

    Returns:
        (passed, diff frame).
    """
    ref = report.summarize(report.load_results(reference_dir), n_resamples=_N_BOOT)
    cur = report.summarize(report.load_results(current_dir), n_resamples=_N_BOOT)
    missing_ref = [c for c in cfg.codecs if c not in set(ref["codec"])]
    if missing_ref:
        raise ValueError(f"{reference_dir}: reference run lacks codecs {missing_ref}; regenerate it with --update")
    tolerances, note = tolerances_for(cfg, reference_dir, current_dir)
    print(note, flush=True)
    diff = compare(ref, cur, tolerances)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        diff.to_csv(out_dir / "regress_diff.csv", index=False)
        (out_dir / "regress_diff.md").write_text(format_diff(diff), encoding="utf-8")
    return bool(diff["status"].isin(PASSING).all()), diff


def update_reference(cfg: RegressConfig, reference_dir: Path, work_dir: Path) -> None:
    """Re-run the configuration and replace the committed reference files in ``reference_dir``."""
    fresh = run_reference_config(cfg, work_dir / "run", work_dir)
    report.write_reports(fresh, plots=False)
    reference_dir.mkdir(parents=True, exist_ok=True)
    for name in REFERENCE_FILES:
        if (fresh / name).is_file():
            shutil.copy2(fresh / name, reference_dir / name)
    print(f"reference updated in {reference_dir}; review and commit it")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 = within tolerance, 1 = regression/change, 2 = usage or setup error."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.regress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="reference run directory")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="regress_config.json")
    parser.add_argument("--out", type=Path, default=None, help="where the new run and the diff go (default: temp dir)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compare", type=Path, metavar="RUN_DIR", help="compare an existing run; do not run anything")
    mode.add_argument("--update", action="store_true", help="re-run and overwrite the reference run")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        with tempfile.TemporaryDirectory(prefix="regress-") as tmp:
            work = args.out if args.out is not None else Path(tmp)
            if args.update:
                update_reference(cfg, args.reference, work)
                return 0
            current = args.compare if args.compare is not None else run_reference_config(cfg, work / "run", work)
            passed, diff = check(args.reference, current, cfg, args.out)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_diff(diff))
    bad = diff[~diff["status"].isin(PASSING)]
    if passed:
        print(f"regression check passed: {int((diff['status'] == 'ok').sum())} values within tolerance of {args.reference}")
        return 0
    print(f"regression check FAILED: {len(bad)} of {len(diff)} values outside tolerance "
          f"({', '.join(sorted(set(bad['codec'])))}). If the change is intended, run "
          "`python -m benchmarks.regress --update` and commit results/reference/run.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
