"""The listening grid of a run's HTML report: a few utterances, the original and every codec's
reconstruction as small FLAC files with a spectrogram each, written beside the page.

Where the audio comes from (see docs/reports.md, "Listening grid"): a run does not keep its
reconstructions in the run folder. The grid asks the runner's own :meth:`benchmarks.evaluate.Runner.reconstruct`
for each (codec, utterance) pair, with the run's settings from ``manifest.json``:

* right after a run (``benchmarks.run`` writes the report at its end), and later while the cache is
  still there, that is a cache hit: the exact signal the metrics were computed on;
* when the cache entry is gone, or the code changed since the run (the cache key holds the code's
  digest), the codec is run again on that utterance now, and the clip says so.

What is written is the 16 kHz signal the metrics compare (reference: the original resampled to 16 kHz
with the run's resampler; reconstruction: the codec output resampled to 16 kHz), as 16-bit FLAC,
cut to the first ``max_seconds`` seconds. The clips and spectrograms of one grid stop at
``budget_bytes``; clips past the budget are left out and counted.

Usage: ``build_grid(run_dir, rows, n=3)`` (called by :mod:`benchmarks.html_report`).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: Default number of utterances in the grid (``--listen N``).
DEFAULT_N = 3
#: Clips are cut to this many seconds (the scores are those of the whole utterance).
DEFAULT_MAX_SECONDS = 10.0
#: Audio + spectrogram bytes of one grid at most.
DEFAULT_BUDGET_BYTES = 16 * 1024 * 1024
#: Rate of every clip: the metric rate, so a listener hears exactly what was scored.
SAMPLE_RATE = 16_000
#: Folder of the grid's files, relative to the page.
LISTEN_DIR = "listen"
#: Spectrogram image size in pixels (width for ``max_seconds``; shorter clips are narrower).
SPEC_HEIGHT = 72
SPEC_PX_PER_S = 40
#: Per-utterance scores shown under each player: (row key, label, decimals, scale, unit).
CLIP_SCORES = (
    ("bitrate_measured", "kbit/s", 2, 1e-3, ""),
    ("pesq_wb", "PESQ-WB", 2, 1.0, ""),
    ("stoi", "STOI", 3, 1.0, ""),
    ("wer", "WER", 0, 100.0, " %"),
)

#: ``reconstruct(codec, utt_row) -> (wav16k float32 [T], origin, origin detail)``; raises on failure.
Reconstructor = Callable[[str, Mapping[str, Any]], "tuple[np.ndarray, str, str]"]
#: ``original(utt_row) -> wav16k float32 [T]``; raises on failure.
OriginalLoader = Callable[[Mapping[str, Any]], np.ndarray]


@dataclass
class Clip:
    """One player of the grid.

    Attributes:
        label: ``original`` or the codec spec.
        audio: FLAC path relative to the page, or None when there is no audio (see ``note``).
        spectrogram: PNG path relative to the page, or None.
        seconds: length of the clip (s).
        nbytes: bytes of the FLAC and PNG together.
        origin: where the signal came from, short (``as scored (run cache)``, ``re-encoded now`` ...).
        origin_detail: the longer story (code versions), shown as a tooltip.
        note: why there is no audio, or a caveat; empty otherwise.
        scores: (label, formatted value) pairs of this utterance's row.
        hypothesis: the ASR transcript of the reconstruction, when the run had ASR.
    """

    label: str
    audio: str | None = None
    spectrogram: str | None = None
    seconds: float = 0.0
    nbytes: int = 0
    origin: str = ""
    origin_detail: str = ""
    note: str = ""
    scores: list[tuple[str, str]] = field(default_factory=list)
    hypothesis: str = ""


@dataclass
class ListenUtterance:
    """One row of the grid: the utterance and its clips (original first)."""

    utt_id: str
    set: str
    duration_s: float
    clips: list[Clip]
    cut: bool = False


@dataclass
class Grid:
    """The whole grid, with the numbers the page states about it."""

    utterances: list[ListenUtterance]
    total_bytes: int
    budget_bytes: int
    max_seconds: float
    sample_rate: int = SAMPLE_RATE
    omitted: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Choosing utterances


def _duration(row: Mapping[str, Any]) -> float:
    try:
        value = float(row.get("duration_s"))
    except (TypeError, ValueError):
        return math.nan
    return value


def choose_utterances(rows: Sequence[Mapping[str, Any]], n: int) -> list[str]:
    """Pick ``n`` utterance ids that span the data set.

    Candidates are the utterances with at least one ``ok`` row. They are sorted by duration and
    picked at evenly spaced positions (shortest, ..., longest); when the data has several ``set``
    values, each pick prefers, near its position, a set not picked yet. Deterministic.

    Args:
        rows: results rows of a run.
        n: how many (0 -> none).

    Returns:
        utterance ids in pick order (at most the number of candidates).
    """
    info: dict[str, tuple[float, str]] = {}
    for row in rows:
        if row.get("status") == "ok" and str(row["utt_id"]) not in info:
            info[str(row["utt_id"])] = (_duration(row), str(row.get("set") or ""))
    ordered = sorted(info, key=lambda u: (math.isnan(info[u][0]), info[u][0], u))
    if n <= 0 or not ordered:
        return []
    n = min(n, len(ordered))
    targets = [len(ordered) // 2] if n == 1 else [round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)]
    all_sets = {s for _, s in info.values()}
    chosen: list[str] = []
    for target in targets:
        used_sets = {info[u][1] for u in chosen}
        free = [i for i, u in enumerate(ordered) if u not in chosen]
        fresh = [i for i in free if info[ordered[i]][1] not in used_sets]
        pool = fresh if fresh and len(used_sets) < len(all_sets) else free
        chosen.append(ordered[min(pool, key=lambda i: (abs(i - target), i))])
    return chosen


# --------------------------------------------------------------------------------------------
# Files


def slug(text: str) -> str:
    """A file-name-safe version of ``text``; a short hash is added when characters changed."""
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", text)[:60]
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def write_flac(path: Path, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> int:
    """Write mono float audio as 16-bit FLAC (peaks above full scale are clipped); returns bytes."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sample_rate,
             format="FLAC", subtype="PCM_16")
    return path.stat().st_size


def spectrogram_db(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    """Log-magnitude STFT in dB, float32 [freq bins, frames] (Hann window, 0 Hz in row 0)."""
    x = np.asarray(wav, dtype=np.float32)
    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    n_frames = 1 + (x.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft).astype(np.float32), axis=1)).T
    return (20.0 * np.log10(spec + 1e-6)).astype(np.float32)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array (enough for a thumbnail)."""
    rows = np.minimum((np.arange(height) * image.shape[0] / height).astype(int), image.shape[0] - 1)
    cols = np.minimum((np.arange(width) * image.shape[1] / width).astype(int), image.shape[1] - 1)
    return image[rows][:, cols]


def write_spectrogram(path: Path, wav: np.ndarray, top_db: float, dynamic_range: float = 80.0) -> int:
    """Save a small spectrogram PNG (magma colours, low frequencies at the bottom); returns bytes.

    Args:
        path: PNG file to write.
        wav: 16 kHz signal [T].
        top_db: level shown as the brightest colour (the original's peak, so all clips of an
            utterance share one colour scale).
        dynamic_range: dB below ``top_db`` shown as black.
    """
    import matplotlib.image

    spec = spectrogram_db(wav)
    width = max(8, int(round(SPEC_PX_PER_S * wav.shape[0] / SAMPLE_RATE)))
    image = _resize(spec, SPEC_HEIGHT, width)[::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(str(path), image, cmap="magma", vmin=top_db - dynamic_range, vmax=top_db)
    return path.stat().st_size


def _format_score(row: Mapping[str, Any], key: str, decimals: int, scale: float, unit: str) -> str | None:
    value = row.get(key)
    if value is None or isinstance(value, (str, bool)):
        return None
    value = float(value) * scale
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{decimals}f}{unit}"


def clip_scores(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The per-utterance numbers shown under a player (only those the row has)."""
    out = []
    for key, label, decimals, scale, unit in CLIP_SCORES:
        text = _format_score(row, key, decimals, scale, unit)
        if text is not None:
            out.append((label, text))
    return out


# --------------------------------------------------------------------------------------------
# Building the grid


def _codec_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Codecs of the run, highest mean measured bitrate first (errors-only codecs last)."""
    rates: dict[str, list[float]] = {}
    for row in rows:
        rates.setdefault(str(row["codec"]), [])
        value = row.get("bitrate_measured")
        if row.get("status") == "ok" and isinstance(value, (int, float)) and math.isfinite(value):
            rates[str(row["codec"])].append(float(value))
    return sorted(rates, key=lambda c: (-(np.mean(rates[c]) if rates[c] else -1.0), c))


def build_grid(page_dir: Path, rows: Sequence[Mapping[str, Any]], n: int, original: OriginalLoader,
               reconstruct: Reconstructor, max_seconds: float = DEFAULT_MAX_SECONDS,
               budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Grid:
    """Write the grid's FLAC and PNG files under ``page_dir/listen/`` and describe them.

    The folder is emptied first, so it holds only this grid. Failures of one clip (codec not
    available now, original file gone) become a note on that clip, never an exception.

    Args:
        page_dir: folder of the HTML page.
        rows: results rows of the run (last row per key).
        n: number of utterances (:func:`choose_utterances`).
        original: loads the 16 kHz reference of an utterance (given one of its rows).
        reconstruct: gives the 16 kHz reconstruction of (codec, utterance) and where it came from.
        max_seconds: clips are cut to this length.
        budget_bytes: clips past this total are left out.
    """
    out = Path(page_dir) / LISTEN_DIR
    if out.exists():
        shutil.rmtree(out)
    grid = Grid([], 0, int(budget_bytes), float(max_seconds))
    by_key = {(str(r["codec"]), str(r["utt_id"])): r for r in rows}
    codecs = _codec_order(rows)
    limit = int(round(max_seconds * SAMPLE_RATE))
    for utt_id in choose_utterances(rows, n):
        some_row = next(r for r in rows if str(r["utt_id"]) == utt_id and r.get("status") == "ok")
        entry = ListenUtterance(utt_id, str(some_row.get("set") or ""), _duration(some_row), [])
        grid.utterances.append(entry)
        folder = out / slug(utt_id)
        try:
            ref = np.asarray(original(some_row), dtype=np.float32)
        except Exception as exc:  # the original file moved or changed: no grid row for it
            entry.clips.append(Clip("original", note=f"original not available: {_one_line(exc)}"))
            continue
        entry.cut = ref.shape[0] > limit
        top_db = float(spectrogram_db(ref[:limit]).max())
        clip = Clip("original", origin="original file at 16 kHz", origin_detail=str(some_row.get("path") or ""))
        _add_audio(grid, clip, folder, "original", ref[:limit], top_db, page_dir)
        entry.clips.append(clip)
        for codec in codecs:
            row = by_key.get((codec, utt_id))
            if row is None:
                continue
            clip = Clip(codec, scores=clip_scores(row), hypothesis=str(row.get("asr_hypothesis") or ""))
            entry.clips.append(clip)
            if row.get("status") != "ok":
                clip.note = f"failed in the run: {row.get('error_reason') or row.get('error')}"
                continue
            try:
                wav, clip.origin, clip.origin_detail = reconstruct(codec, row)
            except Exception as exc:
                clip.note = f"no audio: {_one_line(exc)}"
                continue
            _add_audio(grid, clip, folder, slug(codec), np.asarray(wav, dtype=np.float32)[:limit], top_db, page_dir)
    if grid.omitted:
        grid.notes.append(f"{grid.omitted} clips left out: the grid's files reached the "
                          f"{grid.budget_bytes / 2**20:.0f} MiB budget")
    return grid


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _add_audio(grid: Grid, clip: Clip, folder: Path, stem: str, wav: np.ndarray, top_db: float,
               page_dir: Path) -> None:
    """Write one clip's FLAC + PNG unless that would pass the budget (then it is left out)."""
    flac, png = folder / f"{stem}.flac", folder / f"{stem}.png"
    nbytes = write_flac(flac, wav) + write_spectrogram(png, wav, top_db)
    if grid.total_bytes + nbytes > grid.budget_bytes:
        flac.unlink()
        png.unlink()
        grid.omitted += 1
        clip.note = "left out: size budget reached"
        return
    grid.total_bytes += nbytes
    clip.nbytes = nbytes
    clip.seconds = wav.shape[0] / SAMPLE_RATE
    clip.audio = flac.relative_to(page_dir).as_posix()
    clip.spectrogram = png.relative_to(page_dir).as_posix()


# --------------------------------------------------------------------------------------------
# Audio of a finished run


class RunAudio:
    """The originals and reconstructions of a finished run, obtained as the run obtained them.

    Builds the run's codecs and a :class:`benchmarks.evaluate.Runner` with the settings recorded in
    ``manifest.json`` and calls its ``reconstruct``: a cache hit returns the reconstruction the
    run scored; a miss runs the codec now (and fills the cache).

    Args:
        run_dir: the run folder.
        cache_dir: cache to read (default: the run's ``--cache-dir``).
        codecs: codec objects already built (``benchmarks.run`` passes its own), by spec; the
            others are built from their spec when needed.
        version: the code version of the cache keys (``benchmarks.run`` passes the one its rows
            were computed with; default: the code on disk now).
    """

    def __init__(self, run_dir: Path, cache_dir: Path | None = None, codecs: Sequence[Any] = (),
                 version: Any = None) -> None:
        from benchmarks import evaluate, provenance, store
        from benchmarks.runconfig import RunConfig

        self._evaluate, self._store = evaluate, store
        manifest_path = Path(run_dir) / store.MANIFEST_FILE
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        args = self.manifest.get("args") or {}
        self.data_sha = {d.get("utt_id"): d.get("sha256") for d in self.manifest.get("data") or []}
        weights = args.get("weights_dir")
        self.cfg = RunConfig(
            codecs=str(args.get("codecs") or ""), data=str(args.get("data") or "default"), limit=args.get("limit"),
            out=Path(run_dir), device=str(args.get("device") or "cpu"), resume=True, force=False, asr=None,
            cache_dir=Path(cache_dir or args.get("cache_dir") or store.default_cache_dir()), report=False,
            weights_dir=Path(weights) if weights else None,
        )
        self.version = version or provenance.code_version()
        self._runner = None
        self._codecs: dict[str, Any] = {c.name: c for c in codecs}
        self._failed: dict[str, str] = {}
        self._sources: dict[str, Any] = {}

    def _source(self, row: Mapping[str, Any]) -> Any:
        utt_id = str(row["utt_id"])
        if utt_id not in self._sources:
            from audiocore.datasets import Utterance

            utt = Utterance(id=utt_id, path=Path(str(row["path"])), set=str(row.get("set") or ""))
            src = self._evaluate.load_source(utt, None)
            recorded = self.data_sha.get(utt_id)
            if recorded and recorded != src.checksum:
                raise ValueError(f"{row['path']} changed since the run (SHA-256 differs from manifest.json)")
            self._sources[utt_id] = src
        return self._sources[utt_id]

    def original(self, row: Mapping[str, Any]) -> np.ndarray:
        """The 16 kHz reference of the row's utterance, exactly as the run made it."""
        return self._source(row).ref16

    def _codec(self, name: str) -> Any:
        if name in self._failed:
            raise RuntimeError(self._failed[name])
        if name not in self._codecs:
            from baselines import registry

            try:
                codecs, skipped = registry.build_codecs(name, self.cfg.device, weights_dir=self.cfg.weights_dir)
            except Exception as exc:
                codecs, skipped = [], [(name, _one_line(exc))]
            if not codecs:
                self._failed[name] = f"codec not available now ({skipped[0][1] if skipped else 'unknown'})"
                raise RuntimeError(self._failed[name])
            self._codecs[name] = codecs[0]
        return self._codecs[name]

    def reconstruct(self, codec_name: str, row: Mapping[str, Any]) -> tuple[np.ndarray, str, str]:
        """(16 kHz reconstruction, origin, origin detail) of ``row``'s utterance through ``codec_name``."""
        if self._runner is None:
            self._runner = self._evaluate.Runner(self.cfg, self.version, self._store.ResultCache(self.cfg.cache_dir), None)
        codec = self._codec(codec_name)
        src = self._source(row)
        key = self._runner.recon_key(codec, src)
        entry, from_cache = self._runner.reconstruct(codec, src, key, ["reconstruct"])
        if row.get("code_version") != self.version.label:
            return entry.arrays["wav16k"], "re-encoded now: code changed since the run", (
                f"audio from code {self.version.label}; the scores are from {row.get('code_version')}")
        if from_cache:
            return entry.arrays["wav16k"], "as scored (run cache)", f"cache {self.cfg.cache_dir}, key {key[:12]}"
        return entry.arrays["wav16k"], "re-encoded now (cache entry gone)", (
            f"same code version as the scores ({self.version.label})")
