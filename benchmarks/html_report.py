"""``report.html``: a self-contained page per run that people can read, sort and listen to.

The page is rendered with Jinja2 from ``benchmarks/templates/`` (autoescaped; no HTML is built by
string concatenation) and opens from disk with no network: CSS, the sorting script and the plots
(SVG) are inlined; the listening grid's FLAC files and spectrogram PNGs lie beside it in
``listen/`` (:mod:`benchmarks.listening`). It shows:

* the summary table of ``summary.csv`` with 95 % CIs, sortable by any column (click a header),
  units and ↑/↓ (which direction is better) in the headers, the ``self_check`` column when the run
  has one, the skipped codecs with their reasons;
* the rate-quality plots of :mod:`benchmarks.plots` (Pareto front ringed) and the codebook-health
  table of ``codebook.csv``;
* the listening grid;
* provenance from ``manifest.json`` and the failures by reason.

The leaderboard across runs is :mod:`benchmarks.leaderboard`; both share the table code here.

Usage::

    python -m benchmarks.report RUN_DIR [--listen N]   # writes RUN_DIR/report.html (+ listen/)
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from audiocore.atomic import atomic_write_text
from benchmarks import listening, store

REPORT_FILE = "report.html"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


# --------------------------------------------------------------------------------------------
# The summary table


@dataclass(frozen=True)
class Column:
    """One numeric column of the summary table.

    Attributes:
        key: summary key: ``<m>`` for ``<m>_mean`` with CI, a ``*_corpus`` rate (CI), or a plain
            column (``ci=False``).
        header: label.
        unit: unit shown under the label ('' when unitless).
        better: ``up`` (higher is better), ``down`` (lower is better) or ``''``.
        decimals: decimals shown (at least two significant digits when ``sig``).
        scale: display factor (1e-3 for bit/s -> kbit/s, 100 for rates -> %).
        ci: show ``[low, high]`` from ``<key>_ci_low`` / ``_ci_high``.
        sig: keep two significant digits for small values (RTF, usage).
    """

    key: str
    header: str
    unit: str = ""
    better: str = ""
    decimals: int = 2
    scale: float = 1.0
    ci: bool = True
    sig: bool = False

    @property
    def value_column(self) -> str:
        if not self.ci or self.key.endswith("_corpus"):
            return self.key
        return f"{self.key}_mean"

    @property
    def arrow(self) -> str:
        return {"up": "↑", "down": "↓"}.get(self.better, "")


#: Columns of the table, in order; a column the summary lacks (or holds only NaN in) is left out.
COLUMNS: tuple[Column, ...] = (
    Column("bitrate_measured", "bitrate measured", "kbit/s", "down", 2, 1e-3),
    Column("bitrate_nominal", "bitrate nominal", "kbit/s", "", 2, 1e-3, ci=False),
    Column("tokens_per_s", "tokens/s", "1/s", "down", 1),
    Column("pesq_wb", "PESQ-WB", "MOS-LQO", "up", 2),
    Column("pesq_nb", "PESQ-NB", "MOS-LQO", "up", 2),
    Column("stoi", "STOI", "0–1", "up", 3),
    Column("estoi", "ESTOI", "0–1", "up", 3),
    Column("si_sdr_aligned", "SI-SDR aligned", "dB", "up", 1),
    Column("mel_distance", "mel distance", "log10", "down", 2),
    Column("wer_corpus", "WER (corpus)", "%", "down", 1, 100.0),
    Column("cer_corpus", "CER (corpus)", "%", "down", 1, 100.0),
    Column("dwer_corpus", "dWER (corpus)", "%", "down", 1, 100.0),
    Column("dnsmos_ovrl", "DNSMOS OVRL", "MOS 1–5", "up", 2),
    Column("dnsmos_p808", "DNSMOS P.808", "MOS 1–5", "up", 2),
    Column("distillmos", "DistillMOS", "MOS 1–5", "up", 2),
    Column("utmos", "UTMOS", "MOS 1–5", "up", 2),
    Column("spk_sim", "SIM Resemblyzer", "cosine", "up", 3),
    Column("spk_sim_wavlm", "SIM WavLM-SV", "cosine", "up", 3),
    Column("codebook_usage", "codebook usage", "%", "up", 1, 100.0, ci=False, sig=True),
    Column("codebook_normalized_entropy", "H / log2 V", "0–1", "up", 3, ci=False),
    Column("encode_rtf_median", "encode RTF", "median", "down", 3, ci=False, sig=True),
    Column("decode_rtf_median", "decode RTF", "median", "down", 3, ci=False, sig=True),
)


def _finite_or_none(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def format_number(value: Any, decimals: int, scale: float = 1.0, sig: bool = False) -> str:
    """``value * scale`` as text: ``–`` for missing/NaN, ``∞``/``−∞``, else ``decimals`` decimals
    (more when ``sig`` and the value is small, so 7.4e-05 shows as ``0.000074``)."""
    x = _finite_or_none(value)
    if x is None:
        return "–"
    x *= scale
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if sig and x != 0:
        decimals = max(decimals, 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


@dataclass
class Cell:
    """One table cell: ``text`` shown, ``sort`` the value the script sorts by ('' sorts last),
    ``title`` a tooltip, ``cls`` a CSS class, ``href`` a link, ``ci`` the interval shown under the value."""

    text: str
    sort: str = ""
    title: str = ""
    cls: str = ""
    href: str = ""
    ci: str = ""


@dataclass
class Table:
    """A sortable table: headers (label, unit, arrow, kind) and rows of cells."""

    headers: list[dict[str, str]]
    rows: list[list[Cell]] = field(default_factory=list)


def _sort_key(value: float | None) -> str:
    if value is None:
        return ""
    return "Infinity" if value == math.inf else "-Infinity" if value == -math.inf else repr(value)


def metric_cell(row: Mapping[str, Any], column: Column) -> Cell:
    """The cell of one numeric column: mean (or value) and CI, sorted by the mean."""
    value = _finite_or_none(row.get(column.value_column))
    text = format_number(value, column.decimals, column.scale, column.sig)
    title = ci = ""
    if column.ci and text not in ("–", "∞", "−∞"):
        low, high = row.get(f"{column.key}_ci_low"), row.get(f"{column.key}_ci_high")
        if _finite_or_none(low) is not None and _finite_or_none(high) is not None:
            ci = (f"[{format_number(low, column.decimals, column.scale, column.sig)}, "
                  f"{format_number(high, column.decimals, column.scale, column.sig)}]")
    if value is None:
        reasons = row.get(f"{column.key}_nan_reasons") or row.get("codebook_error")
        title = str(reasons) if reasons and not (isinstance(reasons, float) and math.isnan(reasons)) else ""
    scaled = None if value is None else value * column.scale
    return Cell(text=text, sort=_sort_key(scaled), title=title, ci=ci)


def present_columns(summary: pd.DataFrame) -> list[Column]:
    """The :data:`COLUMNS` with at least one value in ``summary``."""
    out = []
    for column in COLUMNS:
        name = column.value_column
        if name in summary.columns and pd.to_numeric(summary[name], errors="coerce").notna().any():
            out.append(column)
    return out


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def self_check_cell(value: Any) -> Cell:
    """``ok`` (passed), ``not run``, or the names of the failed checks (flagged, :func:`benchmarks.selfcheck.is_flagged`)."""
    from benchmarks.selfcheck import is_flagged

    text = _text(value).strip()
    if is_flagged(value):
        return Cell(f"⚠ {text}", sort="1", cls="check flag", title="self-check failed: do not trust this codec's numbers")
    if text == "ok":
        return Cell("✓ ok", sort="0", cls="check ok")
    return Cell(text or "–", sort="", cls="check")


def summary_table(summary: pd.DataFrame, links: Mapping[str, tuple[str, str]] | None = None) -> Table:
    """The page's main table from a ``summary.csv`` frame.

    Args:
        summary: one row per codec (:func:`benchmarks.report.summarize` + codebook columns).
        links: optional ``codec -> (run label, href)``: adds a ``run`` column (leaderboard).
    """
    from benchmarks.selfcheck import is_flagged

    columns = present_columns(summary)
    has_check = "self_check" in summary.columns
    headers = [{"label": "codec", "unit": "", "arrow": "", "kind": "text"}]
    if links is not None:
        headers.append({"label": "run", "unit": "newest wins", "arrow": "", "kind": "text"})
    if has_check:
        headers.append({"label": "self-check", "unit": "", "arrow": "", "kind": "num"})
    headers.append({"label": "utterances", "unit": "ok / failed", "arrow": "", "kind": "num"})
    headers += [{"label": c.header, "unit": c.unit, "arrow": c.arrow, "better": c.better, "kind": "num"}
                for c in columns]
    has_failures = "failures" in summary.columns and any(_text(v) for v in summary["failures"])
    if has_failures:
        headers.append({"label": "failures", "unit": "by reason", "arrow": "", "kind": "text"})
    table = Table(headers)
    for _, row in summary.iterrows():
        codec = str(row["codec"])
        flagged = has_check and is_flagged(row.get("self_check"))
        cells = [Cell(("⚠ " if flagged else "") + codec, cls="codec flag" if flagged else "codec")]
        if links is not None:
            label, href = links.get(codec, ("", ""))
            cells.append(Cell(label, href=href))
        if has_check:
            cells.append(self_check_cell(row.get("self_check")))
        n_ok, n_failed = int(row.get("n_ok", 0) or 0), int(row.get("n_failed", 0) or 0)
        cells.append(Cell(f"{n_ok} / {n_failed}", sort=str(n_ok), cls="flag" if n_failed else ""))
        cells += [metric_cell(row, c) for c in columns]
        if has_failures:
            cells.append(Cell(_text(row.get("failures"))))
        table.rows.append(cells)
    return table


def codebook_tables(run_dir: Path) -> tuple[Table | None, Table | None]:
    """(whole-frame rows, per-stream and pooled rows) of ``codebook.csv``; None without one."""
    path = Path(run_dir) / "codebook.csv"
    if not path.is_file():
        return None, None
    frame = pd.read_csv(path)
    if frame.empty:
        return None, None
    spec = (("vocab_size", "vocabulary", "", 0), ("n_tokens", "tokens", "", 0), ("used", "used", "", 0),
            ("usage", "usage %", "↑", 2), ("entropy_bits", "entropy (bits)", "↑", 3),
            ("capacity_bits", "capacity (bits)", "", 1), ("normalized_entropy", "H / log2 V", "↑", 3),
            ("perplexity", "perplexity", "↑", 1))

    def build(rows: pd.DataFrame) -> Table:
        headers = [{"label": "codec", "unit": "", "arrow": "", "kind": "text"},
                   {"label": "level", "unit": "", "arrow": "", "kind": "text"},
                   {"label": "streams", "unit": "", "arrow": "", "kind": "text"}]
        headers += [{"label": label, "unit": "", "arrow": arrow, "better": "up" if arrow else "", "kind": "num"}
                    for _, label, arrow, _ in spec]
        table = Table(headers)
        for _, r in rows.iterrows():
            cells = [Cell(_text(r["codec"])), Cell(_text(r["level"])), Cell(_text(r["streams"]))]
            for key, _, _, decimals in spec:
                value = _finite_or_none(r.get(key))
                scale = 100.0 if key == "usage" else 1.0
                cells.append(Cell(format_number(value, decimals, scale, sig=key == "usage"),
                                  sort=_sort_key(None if value is None else value * scale)))
            table.rows.append(cells)
        return table

    total = frame[frame["level"] == "total"]
    return build(total if len(total) else frame), build(frame[frame["level"] != "total"])


# --------------------------------------------------------------------------------------------
# Plots, provenance, failures


def plot_images(summary: pd.DataFrame) -> list[dict[str, str]]:
    """The rate-quality figures as inline SVG data URIs: ``[{"name", "title", "src"}]``."""
    from benchmarks import plots

    out = []
    for name, svg in plots.render_svgs(summary).items():
        src = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
        title = "Quality vs measured bitrate" if name == "quality_vs_bitrate" else "Quality vs token rate (token codecs)"
        out.append({"name": name, "title": title, "src": src})
    return out


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def provenance(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs from ``manifest.json``: command, revision, device, ASR, packages ..."""
    if not manifest:
        return [("manifest.json", "missing or unreadable: provenance unknown")]
    asr = manifest.get("asr")
    if asr is None:
        asr_text = "off (--no-asr)"
    elif isinstance(asr, Mapping):
        asr_text = ", ".join(f"{k}: {asr[k]}" for k in ("spec", "model", "model_source", "version", "normaliser",
                                                        "unavailable") if asr.get(k))
    else:
        asr_text = str(asr)
    packages = manifest.get("packages") or {}
    data = manifest.get("data") or []
    out = [
        ("command", manifest.get("command")),
        ("git revision", manifest.get("git_revision") or "not a git checkout"),
        ("code version", manifest.get("code_version")),
        ("device", manifest.get("device")),
        ("ASR model", asr_text),
        ("resampler", manifest.get("resampler")),
        ("metric sample rate", f"{manifest['metric_sample_rate']} Hz" if manifest.get("metric_sample_rate") else None),
        ("length rule", manifest.get("length_rule")),
        ("data", f"{len(data)} utterances from {(manifest.get('args') or {}).get('data')}" if data else None),
        ("started / finished", " / ".join(str(manifest.get(k) or "–") for k in ("started", "finished"))),
        ("wall time", f"{manifest['wall_s']:.1f} s" if isinstance(manifest.get("wall_s"), (int, float)) else None),
        ("status", manifest.get("status")),
        ("Python", manifest.get("python")),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if v)),
    ]
    return [(k, str(v)) for k, v in out if v]


def failures(manifest: Mapping[str, Any], summary: pd.DataFrame) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """(failed rows by reason from the manifest, per-codec failure text from the summary)."""
    by_reason = [(str(k), int(v)) for k, v in (manifest.get("failures_by_reason") or {}).items()]
    per_codec = []
    if "failures" in summary.columns:
        per_codec = [(str(r["codec"]), _text(r["failures"])) for _, r in summary.iterrows() if _text(r["failures"])]
    return by_reason, per_codec


# --------------------------------------------------------------------------------------------
# Rendering


def environment() -> Any:
    """The Jinja2 environment of the templates (HTML autoescaping on, undefined names are errors)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)


def format_size(n: int) -> str:
    """Bytes as ``12.3 MB`` (decimal units, as file browsers show them)."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def load_summary(run_dir: Path) -> pd.DataFrame:
    """``summary.csv`` of a run (written by ``benchmarks.report``, which imports this module).

    Raises:
        FileNotFoundError: the run has none (``--no-report``), with the command that writes it.
    """
    path = Path(run_dir) / "summary.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no summary.csv; write it with `python -m benchmarks.report {run_dir}`")
    return pd.read_csv(path)


def write_run_report(run_dir: str | Path, summary: pd.DataFrame | None = None, listen: int = listening.DEFAULT_N,
                     max_seconds: float = listening.DEFAULT_MAX_SECONDS,
                     budget_bytes: int = listening.DEFAULT_BUDGET_BYTES, audio: Any = None,
                     cache_dir: Path | None = None) -> Path:
    """Write ``run_dir/report.html`` and its ``listen/`` folder.

    Args:
        run_dir: a run folder (``results.jsonl``, ``manifest.json``, ``summary.csv`` ...).
        summary: the per-codec frame (default: the run's ``summary.csv``).
        listen: utterances in the listening grid (0: no grid, and ``listen/`` is removed).
        max_seconds, budget_bytes: clip length cap and size budget of the grid's files.
        audio: object with ``original(row)`` and ``reconstruct(codec, row)`` (default
            :class:`benchmarks.listening.RunAudio` of the run).
        cache_dir: cache the default ``audio`` reads (default: the run's ``--cache-dir``).

    Returns:
        the path of the page.
    """
    run_dir = Path(run_dir)
    rows = store.load_rows(run_dir)
    summary = load_summary(run_dir) if summary is None else summary
    manifest = _load_json(run_dir / store.MANIFEST_FILE) or {}
    skipped = _load_json(run_dir / store.SKIPPED_FILE) or manifest.get("skipped") or []
    if listen > 0 and rows:
        audio = audio or listening.RunAudio(run_dir, cache_dir)
        grid = listening.build_grid(run_dir, rows, listen, audio.original, audio.reconstruct, max_seconds,
                                    budget_bytes)
    else:
        grid = listening.build_grid(run_dir, rows, 0, _no_audio, _no_audio)
    by_reason, per_codec = failures(manifest, summary)
    totals, streams = codebook_tables(run_dir)
    html = render(
        "report.html.j2", title=f"Codec benchmark: {run_dir.name}", run_name=run_dir.name,
        table=summary_table(summary), skipped=[(s.get("codec"), s.get("reason")) for s in skipped],
        plots=plot_images(summary) if len(summary) else [], codebook_total=totals, codebook_streams=streams,
        grid=grid, grid_size=format_size(grid.total_bytes), grid_budget=format_size(grid.budget_bytes),
        provenance=provenance(manifest), failures_by_reason=by_reason, failures_per_codec=per_codec,
        has_self_check="self_check" in summary.columns, n_rows=len(rows),
    )
    path = run_dir / REPORT_FILE
    atomic_write_text(path, html)
    path.chmod(0o644)  # a page to share: readable like any document, not 0600 like a temp file
    return path


def _no_audio(*_args: Any) -> Any:
    raise RuntimeError("listening grid disabled")


def page_bytes(run_dir: Path) -> int:
    """Bytes of ``report.html`` plus its ``listen/`` folder (what a user copies to share the page)."""
    run_dir = Path(run_dir)
    files = [run_dir / REPORT_FILE] + [p for p in (run_dir / listening.LISTEN_DIR).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())
