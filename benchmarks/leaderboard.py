"""A leaderboard across runs: one HTML page, one row per codec setting, the newest run winning.

``python -m benchmarks.report --html OUT.html RUN [RUN ...]`` merges the ``summary.csv`` of runs made
on the same data under the same protocol. "Same data" means the same utterances with the same audio
bytes (``manifest.json`` ``data``: utterance ids and SHA-256 of every file); "same protocol" means
the same resampler, metric sample rate, length rule, ASR model and normaliser, and ``--protocol``
preset when the runs record one. Runs that differ are refused with a one-line reason unless
``--allow-mixed`` is given; the page then says what differs.

When several runs hold the same codec spec, the row of the run that finished last wins (its
``manifest.json`` ``finished``, else ``started``, else the modification time of ``results.jsonl``).
Each row links to its run's ``report.html``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from audiocore.atomic import atomic_write_text
from benchmarks import html_report


class MergeRefused(ValueError):
    """The runs were made on different data or under different protocols (one-line reason)."""


@dataclass
class RunInfo:
    """One run folder as the leaderboard sees it."""

    path: Path
    manifest: dict[str, Any]
    summary: pd.DataFrame
    when: str

    @property
    def name(self) -> str:
        return self.path.name

    def data_fingerprint(self) -> tuple[tuple[str, str], ...] | None:
        """Sorted (utterance id, SHA-256) pairs, or None when the manifest lists no data."""
        data = self.manifest.get("data")
        if not data:
            return None
        return tuple(sorted((str(d.get("utt_id")), str(d.get("sha256"))) for d in data))

    def protocol(self) -> dict[str, Any]:
        """What must match for numbers of two runs to be comparable."""
        asr = self.manifest.get("asr")
        if isinstance(asr, dict):
            asr = {k: asr.get(k) for k in ("spec", "model", "model_sha256", "normaliser") if asr.get(k)}
        return {"resampler": self.manifest.get("resampler"), "metric sample rate": self.manifest.get("metric_sample_rate"),
                "length rule": self.manifest.get("length_rule"), "ASR": asr or "off",
                "protocol preset": self.manifest.get("protocol")}


def load_run(path: str | Path) -> RunInfo:
    """Read a run folder's manifest and ``summary.csv`` (FileNotFoundError when either folder or summary is missing)."""
    path = Path(path)
    if not (path / "results.jsonl").is_file():
        raise FileNotFoundError(f"{path}: not a run folder (no results.jsonl)")
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    when = manifest.get("finished") or manifest.get("started")
    if not when:
        mtime = (path / "results.jsonl").stat().st_mtime
        when = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    return RunInfo(path, manifest, html_report.load_summary(path), str(when))


def _data_reason(a: RunInfo, b: RunInfo) -> str | None:
    fa, fb = a.data_fingerprint(), b.data_fingerprint()
    if fa is None or fb is None:
        missing = a if fa is None else b
        return f"{missing.path} records no data checksums (manifest.json missing or old), so its data cannot be compared"
    if fa == fb:
        return None
    ids_a, ids_b = dict(fa), dict(fb)
    changed = sum(1 for u in set(ids_a) & set(ids_b) if ids_a[u] != ids_b[u])
    only = len(set(ids_a) ^ set(ids_b))
    return (f"{a.path} and {b.path} were run on different data ({len(fa)} vs {len(fb)} utterances; "
            f"{only} in only one of them, {changed} with different audio)")


def _protocol_reason(a: RunInfo, b: RunInfo) -> str | None:
    pa, pb = a.protocol(), b.protocol()
    diffs = [f"{k} {pa[k]!r} vs {pb[k]!r}" for k in pa if pa[k] != pb[k]]
    if not diffs:
        return None
    return f"{a.path} and {b.path} differ in protocol: " + "; ".join(diffs)


def check_comparable(runs: Sequence[RunInfo]) -> list[str]:
    """Every reason why ``runs`` should not share one table (empty: comparable)."""
    reasons = []
    for other in runs[1:]:
        for reason in (_data_reason(runs[0], other), _protocol_reason(runs[0], other)):
            if reason:
                reasons.append(reason)
    return reasons


def merge(runs: Sequence[RunInfo]) -> tuple[pd.DataFrame, dict[str, RunInfo]]:
    """(merged summary, codec -> winning run): newest run wins per codec spec.

    Rows are ordered as in the newest run that has them, the newest run's codecs first.
    """
    winner: dict[str, RunInfo] = {}
    rows: dict[str, pd.Series] = {}
    for run in sorted(runs, key=lambda r: r.when):  # oldest first, so newer runs overwrite
        for _, row in run.summary.iterrows():
            winner[str(row["codec"])] = run
            rows[str(row["codec"])] = row
    order: list[str] = []
    for run in sorted(runs, key=lambda r: r.when, reverse=True):
        order += [str(c) for c in run.summary["codec"] if str(c) not in order]
    merged = pd.DataFrame([rows[c] for c in order]).reset_index(drop=True) if order else pd.DataFrame({"codec": []})
    return merged, winner


def _link(out_dir: Path, run: RunInfo) -> str:
    """Relative link from the leaderboard's folder to the run's page (or its summary.md)."""
    target = run.path / html_report.REPORT_FILE
    if not target.is_file():
        target = run.path / "summary.md"
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def write_leaderboard(out: str | Path, run_dirs: Sequence[str | Path], allow_mixed: bool = False) -> Path:
    """Merge ``run_dirs`` into the page ``out``.

    Raises:
        MergeRefused: the runs differ in data or protocol and ``allow_mixed`` is False.
        FileNotFoundError: a path is not a run folder.
    """
    out = Path(out)
    runs = [load_run(p) for p in run_dirs]
    names = [r.path.resolve() for r in runs]
    if len(set(names)) != len(names):
        raise MergeRefused("the same run folder is given twice")
    reasons = check_comparable(runs)
    if reasons and not allow_mixed:
        raise MergeRefused(f"{reasons[0]}; pass --allow-mixed to merge anyway")
    merged, winner = merge(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    links = {codec: (run.name, _link(out.parent, run)) for codec, run in winner.items()}
    won = {run.path: sum(1 for r in winner.values() if r is run) for run in runs}
    run_rows = [{"name": r.name, "href": _link(out.parent, r), "when": r.when, "codecs": len(r.summary),
                 "won": won[r.path], "revision": r.manifest.get("git_revision") or "–",
                 "code_version": r.manifest.get("code_version") or "–",
                 "command": r.manifest.get("command") or "–"} for r in sorted(runs, key=lambda r: r.when, reverse=True)]
    skipped = {}
    for run in runs:
        for item in run.manifest.get("skipped") or []:
            if item.get("codec") not in winner:
                skipped[item.get("codec")] = item.get("reason")
    data = runs[0].manifest.get("data") or []
    html = html_report.render(
        "leaderboard.html.j2", title=f"Codec leaderboard: {len(winner)} codec settings from {len(runs)} runs",
        table=html_report.summary_table(merged, links=links), runs=run_rows, mixed=reasons,
        plots=html_report.plot_images(merged) if len(merged) else [],
        skipped=sorted(skipped.items()), n_utts=len(data), data=(runs[0].manifest.get("args") or {}).get("data"),
        protocol=runs[0].protocol(), has_self_check="self_check" in merged.columns,
    )
    atomic_write_text(out, html)
    out.chmod(0o644)
    return out
