"""The main job: run speech codecs over a data set and write per-utterance results.

Usage::

    python -m benchmarks.run --codecs all --limit 5
    python -m benchmarks.run --codecs pcm,opus@12k,codec2@700C \\
        --data ../shared/data/eval/manifest.tsv --limit 20 --out runs/eval20 --no-asr

One utterance through one codec, top to bottom (:func:`evaluate`):

1. load the file (``audiocore.audio.read_audio``: mono float32 at its own rate; bad files raise
   ``AudioError`` naming the file and the problem);
2. resample to the codec's native rate with the one resampler, soxr VHQ (``audiocore.audio.resample``);
3. ``codec.encode`` and ``codec.decode``, each timed with ``metrics.speed.Stopwatch``
   (device-synchronised; one untimed warm-up call per codec and process comes first);
4. resample the reconstruction to 16 kHz, the metric rate;
5. **length rule**: reference and reconstruction are trimmed to the shorter of the two; the number
   of samples dropped is recorded (``trimmed_samples``). No delay is removed: PESQ aligns
   internally, ``si_sdr_aligned`` reports the delay it found (``delay_ms``);
6. ``metrics.signal.signal_metrics`` at 16 kHz; bitrate and token columns from
   ``metrics.tokens``; WER/CER/dWER from ``metrics.asr`` when ASR is on;
7. one JSON line appended to ``OUT/results.jsonl`` (schema: docs/results-format.md).

Any exception for one (codec, utterance) becomes a ``status == "error"`` row naming the file and
the problem, and the run continues. Reconstructions and metric values are cached by content
(:mod:`benchmarks.store`), and a rerun of the same command resumes where it stopped.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import random
import re
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from audiocore.codec import Codec, Encoded
from audiocore.device import VALID_DEVICES
from audiocore.device import resolve_device as _resolve_device
from audiocore.hashing import file_sha256
from audiocore.params import count_parameters
from benchmarks import store
from audiocore import audio as jaudio
from metrics import speed, tokens
from metrics.signal import signal_metrics

#: Sample rate (Hz) at which every metric is computed (PESQ-WB, STOI, ASR input).
METRIC_SR = 16000
#: Default ASR backend (metrics.asr spec); ``--no-asr`` turns ASR off.
DEFAULT_ASR = "faster-whisper:tiny.en"
#: Seed for every random number generator touched by a run (recorded in manifest.json).
SEED = 0
#: Packages whose versions are recorded in manifest.json (missing ones are recorded as None).
RECORDED_PACKAGES = (
    "jepa-daam", "torch", "numpy", "scipy", "soundfile", "soxr", "pesq", "pystoi", "jiwer", "pandas",
    "av", "pycodec2", "safetensors", "faster-whisper", "ctranslate2", "openai-whisper", "piper-tts",
)
#: Packages whose versions determine a reconstruction (codec libraries, resampler, tensor maths):
#: part of the reconstruction cache key, so an upgraded libopus or torch recomputes.
CODEC_PACKAGES = ("torch", "numpy", "soxr", "soundfile", "av", "pycodec2", "safetensors", "transformers", "snac",
                  "einops", "speechtokenizer")
#: Packages whose versions determine the signal metrics: part of the signal-metric cache key.
METRIC_PACKAGES = ("numpy", "scipy", "soxr", "pesq", "pystoi", "torch")
#: Row columns that hold wall-clock timings (they differ between otherwise identical runs).
TIMING_COLUMNS = ("encode_s", "decode_s", "encode_rtf", "decode_rtf")


class UserError(Exception):
    """A mistake in the command line or its inputs; reported as one ``error: ...`` line, exit 2."""


# --------------------------------------------------------------------------------------------
# Command line


@dataclass(frozen=True)
class RunConfig:
    """Everything one invocation was asked to do (recorded in manifest.json).

    Attributes:
        codecs: ``"all"`` or comma-separated codec specs.
        data: ``"default"`` or a manifest / folder path (see ``audiocore.datasets``).
        limit: evaluate at most this many utterances (None = all).
        out: run folder (results.jsonl, summary.*, manifest.json, skipped.json, tokens/).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``auto`` already resolved).
        resume: skip (codec, utterance) pairs already in ``out/results.jsonl``.
        force: recompute everything (no cache reads, no resume).
        asr: ASR backend spec, or None for ``--no-asr``.
        cache_dir: content-addressed cache folder.
        report: write summary tables at the end.
        weights_dir: folder of pretrained codec weights (``--weights-dir``; None = the backends'
            own search: ``$JEPA_DAAM_WEIGHTS``, then the Hugging Face cache).
        argv: the command line as given.
    """

    codecs: str
    data: str
    limit: int | None
    out: Path
    device: str
    resume: bool
    force: bool
    asr: str | None
    cache_dir: Path
    report: bool = True
    argv: tuple[str, ...] = ()
    weights_dir: Path | None = None


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; others
    validated (``audiocore.device``). Raises UserError naming the valid values."""
    try:
        return str(_resolve_device(name))
    except ValueError as exc:
        raise UserError(f"--device: {exc} (see README for CUDA builds of torch; valid: {VALID_DEVICES})") from exc


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.run`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Run speech codecs over a data set; write per-utterance results and summary tables.",
    )
    p.add_argument("--codecs", default="all", help="'all' (every available codec) or comma-separated specs, "
                   "e.g. pcm,opus@12k,codec2@700C,jepa-daam:/path/ckpt.safetensors (default: all)")
    p.add_argument("--data", default="default", help="'default' (bundled synthetic sentences), a TSV/JSONL "
                   "manifest, a LibriSpeech-layout folder or a folder of audio files (default: default)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N utterances")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<data>-<codecs>)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--resume", dest="resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip (codec, utterance) pairs already in OUT/results.jsonl (default: on)")
    p.add_argument("--force", action="store_true",
                   help="recompute everything: ignore the cache and start results.jsonl afresh")
    asr = p.add_mutually_exclusive_group()
    asr.add_argument("--asr", default=DEFAULT_ASR, metavar="BACKEND[:MODEL]",
                     help=f"ASR backend for WER/CER/dWER (default: {DEFAULT_ASR})")
    asr.add_argument("--no-asr", dest="asr", action="store_const", const=None, help="skip WER/CER/dWER")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"cache of reconstructions and metric values (default: {store.default_cache_dir()})")
    p.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                   help="folder holding neural-codec weights as <DIR>/<repo id>/ (e.g. DIR/facebook/encodec_24khz); "
                        "searched before $JEPA_DAAM_WEIGHTS and the Hugging Face cache (docs/codecs-neural.md)")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not write summary tables")
    return p


def _default_out(data: str, codecs: str) -> Path:
    stem = Path(data).stem if data != "default" else "default"
    tag = re.sub(r"[^A-Za-z0-9._@-]+", "_", codecs)[:40]
    return Path("runs") / f"{stem}-{tag}"


def parse_args(argv: Sequence[str] | None) -> RunConfig:
    """Parse and validate the command line (raises UserError for bad values)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number of utterances, got {args.limit}")
    if args.data != "default" and not Path(args.data).expanduser().exists():
        raise UserError(f"--data path not found: {args.data}")
    if args.weights_dir is not None and not args.weights_dir.expanduser().is_dir():
        raise UserError(f"--weights-dir {args.weights_dir}: not a folder")
    if args.asr is not None and not args.asr.strip():
        raise UserError("--asr needs a backend such as faster-whisper:tiny.en (or use --no-asr)")
    return RunConfig(
        codecs=args.codecs, data=args.data, limit=args.limit,
        out=(args.out or _default_out(args.data, args.codecs)).expanduser(),
        device=resolve_device(args.device), resume=args.resume and not args.force, force=args.force,
        asr=args.asr, cache_dir=(args.cache_dir or store.default_cache_dir()).expanduser(),
        report=args.report, argv=tuple(argv),
        weights_dir=None if args.weights_dir is None else args.weights_dir.expanduser().resolve(),
    )


# --------------------------------------------------------------------------------------------
# Inputs: utterances, codecs, ASR


def load_utterances(data: str, limit: int | None) -> list[Any]:
    """The utterances of ``--data`` (``audiocore.datasets.load_dataset``); errors -> UserError."""
    from audiocore.datasets import load_dataset

    try:
        utts = load_dataset(data, limit=limit)
    except ValueError as exc:  # DatasetError is a ValueError
        raise UserError(" ".join(str(exc).split())) from exc
    if not utts:
        raise UserError(f"--data {data}: no utterances found")
    ids = [u.id for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise UserError(f"--data {data}: utterance ids must be unique; repeated: {', '.join(dup)}")
    return utts


def build_codecs(text: str, device: str, weights_dir: Path | None = None) -> tuple[list[Codec], list[tuple[str, str]]]:
    """Codec objects for ``--codecs`` plus (spec, reason) for the unavailable ones.

    ``weights_dir`` (``--weights-dir``) goes to the backends that load pretrained weights.

    Unknown families or settings are user errors (``registry`` raises ValueError listing the
    valid ones); a missing package or weights file makes a codec *skipped*, never a crash.
    """
    from baselines import registry

    try:
        return registry.build_codecs(text, device, weights_dir=weights_dir)
    except ValueError as exc:
        raise UserError(" ".join(str(exc).split())) from exc


class AsrStage:
    """WER/CER/dWER columns for one reconstruction, through ``metrics.asr``.

    The single integration point with ``metrics.asr``: ``load_asr`` / ``AsrUnavailable``,
    ``AsrBackend.transcribe`` / ``info``, ``transcribe_cached`` + ``TranscriptCache`` (transcripts
    of the uncompressed originals, on disk under ``<cache>/transcripts``, reused across codecs and
    runs), ``utterance_asr_metrics`` and ``unavailable_asr_metrics``. When the backend's package or
    model is missing, :attr:`reason` says why and every row gets the ASR metrics as NaN with
    ``<metric>_error`` = that reason; the run goes on.

    Args:
        spec: backend spec, e.g. ``faster-whisper:tiny.en``.
        device: device for the ASR model.
        cache_dir: root of the run cache.

    Raises:
        UserError: unknown backend family (a typo, not a missing package).
    """

    def __init__(self, spec: str, device: str, cache_dir: Path) -> None:
        self.spec = spec
        self.backend: Any = None
        self.reason: str | None = None
        self.info: dict[str, Any] = {"spec": spec}
        try:
            from metrics import asr as asr_module
        except ImportError as exc:  # a dependency of metrics.asr itself is missing
            self.reason = f"ASR unavailable: metrics.asr cannot be imported ({type(exc).__name__}: {exc})"
            return
        self._asr = asr_module
        self.transcripts = asr_module.TranscriptCache(Path(cache_dir) / "transcripts")
        try:
            self.backend = asr_module.load_asr(spec, device=device)
        except asr_module.AsrUnavailable as exc:
            self.reason = f"ASR unavailable ({spec}): {' '.join(str(exc).split())}"
            return
        except ValueError as exc:
            raise UserError(f"--asr {spec}: {' '.join(str(exc).split())}") from exc
        self.info = {"spec": spec, **self.backend.info()}

    @property
    def available(self) -> bool:
        """True when a backend was loaded."""
        return self.backend is not None

    def columns(self, reference: str | None, ref16: np.ndarray, est16: np.ndarray) -> dict[str, Any]:
        """WER/CER against ``reference``, dWER against the transcript of the original ``ref16``,
        the raw counts for corpus pooling and the hypothesis text (all 16 kHz float32 [T])."""
        if not self.available:
            return {**{k: math.nan for k in ("wer", "cer", "dwer")},
                    **{f"{k}_error": str(self.reason) for k in ("wer", "cer", "dwer")}}
        original = self._asr.transcribe_cached(self.backend, [ref16], self.transcripts)[0]
        hypothesis = self.backend.transcribe([est16])[0]
        return {**self._asr.utterance_asr_metrics(reference, hypothesis, original),
                "asr_hypothesis": hypothesis, "asr": self.spec}


# --------------------------------------------------------------------------------------------
# Provenance: code version, git revision, package versions


def _source_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the relative names and bytes of the given ``.py`` files (sorted)."""
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        h.update(f"{p.parent.name}/{p.name}".encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _package_files(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return []
    return list(Path(spec.origin).parent.rglob("*.py"))


@dataclass(frozen=True)
class CodeVersion:
    """Digests of the source code that determines cached values.

    Attributes:
        codec: digest of ``baselines/``, ``jepa/`` and this file (encode/decode/resampling path).
        metrics: digest of ``metrics/`` (signal, token and ASR metrics).
        label: ``<package version>+<12 hex digits of both>``, written into every row.
    """

    codec: str
    metrics: str
    label: str


def _package_version() -> str:
    """Installed version of jepa-daam, else the version in the checkout's pyproject.toml."""
    try:
        return importlib.metadata.version("jepa-daam")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        return "0+unknown"
    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


def code_version() -> CodeVersion:
    """The :class:`CodeVersion` of the code now importable (a changed file changes it)."""
    codec = _source_digest([*_package_files("baselines"), *_package_files("jepa"), Path(__file__)])
    metric = _source_digest(_package_files("metrics"))
    version = _package_version()
    both = hashlib.sha256((codec + metric).encode()).hexdigest()[:12]
    return CodeVersion(codec=codec, metrics=metric, label=f"{version}+src.{both}")


def git_revision() -> str | None:
    """``<commit>`` (``-dirty`` when the tree has changes) of the checkout holding this file."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def package_versions(names: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def seed_everything(seed: int = SEED) -> dict[str, int]:
    """Seed Python, numpy and torch; returns what was seeded (for manifest.json)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return {"python": seed, "numpy": seed, "torch": seed}


# --------------------------------------------------------------------------------------------
# One utterance through one codec


@dataclass
class Source:
    """One loaded utterance, shared by all codecs.

    Attributes:
        utt: the ``audiocore.datasets.Utterance``.
        checksum: SHA-256 of the audio file's bytes.
        wav: mono float32 [T] at ``sr`` (as stored in the file).
        sr: the file's sample rate (Hz).
        ref16: the reference at ``METRIC_SR``: float32 [T16].
        notes: properties of the input that do not stop the evaluation but qualify its metrics
            (downmixed channels, clipping, silence); written to the row's ``input_warning``.
    """

    utt: Any
    checksum: str
    wav: np.ndarray
    sr: int
    ref16: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.wav.shape[0] / self.sr


def input_notes(wav: np.ndarray, info: jaudio.AudioInfo) -> tuple[str, ...]:
    """Loadable-but-odd properties of one input file, each a short sentence for ``input_warning``.

    Args:
        wav: the decoded mono float32 waveform [T] (after any downmix).
        info: what ``audiocore.audio.read_audio`` found in the file.

    Returns:
        zero or more of: ``"<C> channels averaged to mono"``, ``"clipped: <p> % of samples at
        >= 0.999 of full scale"``, ``"silent: all samples are zero"``.
    """
    notes = []
    if info.downmixed:
        notes.append(f"{info.channels} channels averaged to mono")
    clipped = jaudio.clipped_fraction(wav)
    if clipped > 0:
        notes.append(f"clipped: {100 * clipped:.3g} % of samples at >= 0.999 of full scale")
    if not np.any(wav):
        notes.append("silent: all samples are zero")
    return tuple(notes)


def load_source(utt: Any, checksum: str | None) -> Source:
    """Load one utterance at its own rate and make the 16 kHz reference.

    Multichannel files are averaged to mono; that, clipping and silence are recorded in
    :attr:`Source.notes` (and so in the row), not raised.

    Raises:
        AudioError: missing / empty / corrupt / non-audio / NaN-Inf file, or a decoded duration
            that differs from the manifest's (``audiocore.datasets.read_utterance``).
    """
    from audiocore.datasets import read_utterance

    wav, info = read_utterance(utt)
    checksum = checksum or file_sha256(Path(utt.path))
    return Source(utt=utt, checksum=checksum, wav=wav, sr=info.sample_rate,
                  ref16=jaudio.resample(wav, info.sample_rate, METRIC_SR), notes=input_notes(wav, info))


def _codec_weights_hash(codec: Codec) -> str | None:
    """``codec.weights_hash`` (attribute or method) when the codec exposes one."""
    value = getattr(codec, "weights_hash", None)
    if callable(value):
        value = value()
    return None if value is None else str(value)


def _slug(text: str) -> str:
    """A file-name-safe version of ``text``; a short hash is appended when characters changed."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class Runner:
    """Evaluates (codec, utterance) pairs with caching; one instance per invocation.

    Args:
        cfg: the run configuration.
        version: digests of the code (cache keys, ``code_version`` column).
        cache: the content-addressed cache.
        asr: the ASR stage, or None for ``--no-asr``.
    """

    def __init__(self, cfg: RunConfig, version: CodeVersion, cache: store.ResultCache, asr: AsrStage | None) -> None:
        self.cfg = cfg
        self.version = version
        self.cache = cache
        self.asr = asr
        self.device_type = torch.device(cfg.device).type
        self._warm: set[str] = set()
        self.codec_packages = package_versions(CODEC_PACKAGES)
        self.metric_packages = package_versions(METRIC_PACKAGES)
        self.n_computed = 0
        self.n_from_cache = 0

    # ---- cache keys ------------------------------------------------------------------------

    def recon_key(self, codec: Codec, src: Source) -> str:
        """Address of a reconstruction: codec spec + weights + audio bytes + codec code + versions of
        the codec packages + resampler + device."""
        return store.cache_key(
            kind="reconstruction", codec=codec.name, weights=_codec_weights_hash(codec), audio=src.checksum,
            code=self.version.codec, resampler=jaudio.RESAMPLER, device=self.device_type,
            torch=torch.__version__, metric_sr=METRIC_SR, packages=self.codec_packages,
        )

    # ---- stages ----------------------------------------------------------------------------

    def _warm_up(self, codec: Codec) -> None:
        """One untimed encode/decode of 2 s of low-level noise, so timings exclude start-up
        (lazy initialisation, kernel selection, allocator growth)."""
        if codec.name in self._warm:
            return
        self._warm.add(codec.name)
        noise = np.random.default_rng(SEED).standard_normal(2 * codec.sample_rate).astype(np.float32) * 0.01
        try:
            with torch.inference_mode():
                codec.decode(codec.encode(torch.from_numpy(noise)))
        except Exception as exc:  # the real utterances will report the problem in their rows
            warnings.warn(f"{codec.name}: warm-up failed ({type(exc).__name__}: {exc})", RuntimeWarning,
                          stacklevel=2)

    def reconstruct(self, codec: Codec, src: Source, key: str, stage: list[str]) -> tuple[store.CacheEntry, bool]:
        """Encode + decode ``src`` (or fetch the cached result).

        The codec gets a CPU tensor [T] at its own rate; a codec built for CUDA moves it itself.

        Args:
            codec: the codec.
            src: the loaded utterance.
            key: :meth:`recon_key` of (codec, src).
            stage: one-element list set to the step under way, so an error row can name it.

        Returns:
            (entry, from_cache). ``entry.arrays``: ``wav16k`` float32 [T16] (the reconstruction at
            ``METRIC_SR``) and, for token codecs, ``codes`` int64 [S, N]. ``entry.values``: the
            ``Encoded`` fields needed for bitrate math, ``encode_s``, ``decode_s``, ``device``.
        """
        cached = self.cache.get("reconstruction", key)
        if cached is not None:
            return cached, True
        self._warm_up(codec)
        stage[0] = "resample"
        x = jaudio.resample(src.wav, src.sr, codec.sample_rate)
        with torch.inference_mode():
            stage[0] = "encode"
            with speed.Stopwatch(self.cfg.device) as sw_enc:
                enc = codec.encode(torch.from_numpy(np.ascontiguousarray(x)))
            stage[0] = "decode"
            with speed.Stopwatch(self.cfg.device) as sw_dec:
                y = codec.decode(enc)
        stage[0] = "resample"
        y = jaudio.check_waveform(y.detach().to("cpu", torch.float32).reshape(-1).numpy(),
                                  f"{src.utt.path}: decoded output of {codec.name}")
        wav16k = jaudio.resample(y, codec.sample_rate, METRIC_SR)
        values = {
            "vocab_sizes": list(enc.vocab_sizes), "frame_rate": enc.frame_rate,
            "payload_bytes": enc.payload_bytes, "num_samples": enc.num_samples,
            "padded_frames": enc.padded_frames, "stream_groups": list(enc.stream_groups),
            "decoded_samples": int(y.shape[0]),
            "encode_s": sw_enc.seconds, "decode_s": sw_dec.seconds, "device": self.cfg.device,
        }
        arrays = {"wav16k": wav16k}
        if enc.codes is not None:
            arrays["codes"] = enc.codes.detach().to("cpu", torch.int64).numpy()
        self.cache.put("reconstruction", key, values, arrays)
        return store.CacheEntry(values=values, arrays=arrays), False

    def signal_columns(self, recon_key: str, ref16: np.ndarray, est16: np.ndarray) -> dict[str, Any]:
        """Signal metrics after the length rule (trim both to the shorter), cached."""
        key = store.cache_key(kind="signal", recon=recon_key, code=self.version.metrics, packages=self.metric_packages)
        cached = self.cache.get("signal", key)
        if cached is not None:
            return cached.values
        n = min(ref16.shape[0], est16.shape[0])
        values = dict(signal_metrics(ref16[:n].copy(), est16[:n].copy(), METRIC_SR))
        values["trimmed_samples"] = int(abs(ref16.shape[0] - est16.shape[0]))
        self.cache.put("signal", key, values)
        return values

    def asr_columns(self, recon_key: str, src: Source, est16: np.ndarray) -> dict[str, Any]:
        """WER/CER/dWER (+ counts, hypothesis) of the reconstruction, cached; {} with --no-asr."""
        if self.asr is None:
            return {}
        if not self.asr.available:
            return self.asr.columns(src.utt.transcript, src.ref16, est16)
        key = store.cache_key(kind="asr", recon=recon_key, code=self.version.metrics, asr=self.asr.info,
                              reference=src.utt.transcript)
        cached = self.cache.get("asr", key)
        if cached is not None:
            return cached.values
        values = self.asr.columns(src.utt.transcript, src.ref16, est16)
        self.cache.put("asr", key, values)
        return values

    def save_tokens(self, codec: Codec, utt_id: str, codes: np.ndarray) -> str:
        """Write the token ids [S, N] of one utterance to ``OUT/tokens/<codec>/<utt>.npy``."""
        rel = Path("tokens") / _slug(codec.name) / f"{_slug(utt_id)}.npy"
        store.atomic_save_npy(self.cfg.out / rel, codes)
        return rel.as_posix()

    # ---- one row ---------------------------------------------------------------------------

    def base_row(self, codec: Codec, utt: Any) -> dict[str, Any]:
        """Identity columns shared by ok and error rows."""
        return {
            "codec": codec.name, "utt_id": utt.id, "set": utt.set, "path": str(utt.path),
            "duration_s": utt.duration_s, "codec_sample_rate": int(codec.sample_rate),
            "code_version": self.version.label,
        }

    def evaluate(self, codec: Codec, src: Source) -> dict[str, Any]:
        """The results row of ``src`` through ``codec`` (status ok or error; never raises Exception)."""
        row = self.base_row(codec, src.utt)
        row["duration_s"] = src.duration_s
        stage = ["reconstruct"]
        try:
            key = self.recon_key(codec, src)
            entry, from_cache = self.reconstruct(codec, src, key, stage)
            arrays, values = entry.arrays, entry.values
            stage[0] = "metrics"
            codes = arrays.get("codes")
            enc = Encoded(
                codes=None if codes is None else torch.from_numpy(codes),
                vocab_sizes=tuple(values["vocab_sizes"]), frame_rate=float(values["frame_rate"]),
                payload_bytes=values["payload_bytes"], num_samples=int(values["num_samples"]),
                padded_frames=int(values["padded_frames"]),
                stream_groups=tuple(values.get("stream_groups", ())),
            )
            duration = enc.num_samples / codec.sample_rate
            est16 = arrays["wav16k"]
            row.update(status="ok", error=None, source_sample_rate=int(src.sr))
            if src.notes:
                row["input_warning"] = "; ".join(src.notes)
            row.update(tokens.bitrate_columns(enc, duration, codec.nominal_bitrate()))
            row.update(tokens.token_rates(enc, duration), padded_frames=enc.padded_frames)
            row.update(encode_s=values["encode_s"], decode_s=values["decode_s"],
                       encode_rtf=speed.rtf(values["encode_s"], duration),
                       decode_rtf=speed.rtf(values["decode_s"], duration), timing_device=values["device"])
            row.update(self.signal_columns(key, src.ref16, est16))
            stage[0] = "asr"
            row.update(self.asr_columns(key, src, est16))
            if codes is not None:
                row["tokens_file"] = self.save_tokens(codec, src.utt.id, codes)
                # The token file holds ids only; the alphabet each row of it is drawn from lives
                # here, so the report can compute codebook usage/entropy from the run folder alone.
                row.update(vocab_sizes=[int(v) for v in enc.vocab_sizes],
                           stream_groups=[int(g) for g in enc.stream_groups])
            row["from_cache"] = from_cache
        except Exception as exc:  # one bad utterance or codec failure must not stop the run
            return self.error_row(codec, src.utt, exc, stage[0])
        if from_cache:
            self.n_from_cache += 1
        else:
            self.n_computed += 1
        return row

    def error_row(self, codec: Codec, utt: Any, exc: BaseException, stage: str) -> dict[str, Any]:
        """A ``status == "error"`` row: one line naming the file, the stage and the problem.

        ``error_reason`` is a short category to count failures by (:func:`failure_reason`).
        """
        message = " ".join(str(exc).split()) or type(exc).__name__
        if str(utt.path) not in message:
            message = f"{utt.path}: {message}"
        row = self.base_row(codec, utt)
        row.update(status="error", error=f"{message} [{stage}: {type(exc).__name__}]",
                   error_stage=stage, error_type=type(exc).__name__, error_reason=failure_reason(exc, stage))
        return row


def failure_reason(exc: BaseException, stage: str) -> str:
    """Short category of a failure: ``AudioError.reason`` for bad input (``file_not_found``,
    ``corrupt_audio``, ... see ``audiocore.audio.AUDIO_ERROR_REASONS``), else ``<stage>:<exception type>``
    (e.g. ``encode:RuntimeError``)."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, jaudio.AudioError) and isinstance(reason, str) and reason:
        return reason
    return f"{stage}:{type(exc).__name__}"


def failures_by_reason(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Error rows counted by ``error_reason`` (``<error_stage>:<error_type>`` for rows written
    before that column existed), most frequent first."""
    from collections import Counter

    counts = Counter(
        str(r.get("error_reason") or f"{r.get('error_stage', '?')}:{r.get('error_type', '?')}")
        for r in rows if r.get("status") == "error"
    )
    return dict(counts.most_common())


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class RunStats:
    """Counts of what one invocation did.

    Attributes:
        computed: rows whose reconstruction was computed now.
        from_cache: rows whose reconstruction came from the cache.
        resumed: (codec, utterance) pairs skipped because results.jsonl already had them.
        errors: error rows written now.
        failures: error rows of the whole results file (resumed ones included) by reason.
        skipped: (spec, reason) of unavailable codecs.
        wall_s: wall time of the invocation (s).
        summary: the Markdown summary printed at the end.
    """

    computed: int = 0
    from_cache: int = 0
    resumed: int = 0
    errors: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    summary: str = ""


def _data_checksums(utts: Sequence[Any]) -> dict[str, str | None]:
    """SHA-256 of each utterance file (None where unreadable; its row will say why)."""
    out: dict[str, str | None] = {}
    for u in utts:
        try:
            out[u.id] = file_sha256(Path(u.path))
        except OSError:
            out[u.id] = None
    return out


def _prepare_results(cfg: RunConfig) -> Path:
    """The results file; without resume an existing one is moved aside to ``results.prev.jsonl``."""
    path = cfg.out / store.RESULTS_FILE
    if path.exists() and not cfg.resume:
        os.replace(path, cfg.out / "results.prev.jsonl")
    return path


def skipped_lines(skipped: Sequence[tuple[str, str]]) -> list[str]:
    """One line per distinct reason: specs that share a reason (the settings of one family without
    weights, say) are listed together instead of repeating a long message per setting."""
    by_reason: dict[str, list[str]] = {}
    for spec, reason in skipped:
        by_reason.setdefault(reason.removeprefix(f"{spec}: "), []).append(spec)
    return [f"skipped {', '.join(specs)}: {reason}" for reason, specs in by_reason.items()]


def _print(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="row", desc="benchmark", dynamic_ncols=True, disable=None, file=sys.stderr)


def manifest_dict(cfg: RunConfig, version: CodeVersion, codecs: Sequence[Codec], skipped: Sequence[tuple[str, str]],
                  asr: AsrStage | None, checksums: dict[str, str | None], seeds: dict[str, int],
                  utts: Sequence[Any]) -> dict[str, Any]:
    """Everything needed to reproduce the run (written to manifest.json)."""
    codec_info = []
    for c in codecs:
        info = {"codec": c.name, "sample_rate": c.sample_rate, "nominal_bitrate": c.nominal_bitrate(),
                "weights_hash": _codec_weights_hash(c), "class": f"{type(c).__module__}.{type(c).__qualname__}"}
        if isinstance(c, torch.nn.Module):
            info["n_params"] = count_parameters(c)
        codec_info.append(info)
    return {
        "command": "python -m benchmarks.run " + " ".join(cfg.argv),
        "args": {"codecs": cfg.codecs, "data": cfg.data, "limit": cfg.limit, "out": str(cfg.out),
                 "device": cfg.device, "resume": cfg.resume, "force": cfg.force, "asr": cfg.asr,
                 "cache_dir": str(cfg.cache_dir),
                 "weights_dir": None if cfg.weights_dir is None else str(cfg.weights_dir)},
        "git_revision": git_revision(), "code_version": version.label,
        "code_digests": {"codec": version.codec, "metrics": version.metrics},
        "packages": package_versions(), "python": sys.version.split()[0],
        "device": speed.device_description(cfg.device), "seeds": seeds, "resampler": jaudio.RESAMPLER,
        "metric_sample_rate": METRIC_SR, "length_rule": "trim reference and reconstruction to the shorter",
        "asr": None if asr is None else ({**asr.info, "unavailable": asr.reason} if asr.reason else asr.info),
        "codecs": codec_info, "skipped": [{"codec": s, "reason": r} for s, r in skipped],
        "data": [{"utt_id": u.id, "path": str(u.path), "sha256": checksums.get(u.id)} for u in utts],
    }


def _this_version(rows: Iterable[Any], version: CodeVersion) -> list[Any]:
    """The rows written by this ``code_version``: on resume every other row (ok or error) is
    redone, so a run never mixes results of two code versions. The cache key holds the same
    source digests, so changed code really recomputes and unchanged code hits the cache."""
    return [row for row in rows if row.get("code_version") == version.label]


def _row_complete(asr: AsrStage | None) -> Callable[[Any], bool]:
    """Resume rule for ok rows: complete unless it lacks columns this version writes.

    Redone (the reconstruction comes from the cache, so this is cheap):

    * rows without ASR columns when ASR is available now;
    * token-codec rows written before rows carried ``vocab_sizes`` (needed by the report's
      codebook statistics), i.e. rows with a ``tokens_file`` but no ``vocab_sizes``.
    """
    def complete(row: Any) -> bool:
        if row.get("tokens_file") and row.get("vocab_sizes") is None:
            return False
        return asr is None or not asr.available or row.get("asr") == asr.spec
    return complete


def run_benchmark(cfg: RunConfig) -> RunStats:
    """Run every requested codec over every utterance; write results, manifest and summary."""
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    seeds = seed_everything(SEED)
    utts = load_utterances(cfg.data, cfg.limit)
    codecs, skipped = build_codecs(cfg.codecs, cfg.device, cfg.weights_dir)
    stats = RunStats(skipped=list(skipped))
    for line in skipped_lines(skipped):
        _print(line)
    if not codecs:
        raise UserError(f"none of the requested codecs ({cfg.codecs}) is available (see the reasons above)")
    cfg.out.mkdir(parents=True, exist_ok=True)
    store.atomic_write_json(cfg.out / store.SKIPPED_FILE, [{"codec": s, "reason": r} for s, r in skipped])
    asr = AsrStage(cfg.asr, cfg.device, cfg.cache_dir) if cfg.asr else None
    if asr is not None and asr.reason:
        _print(f"warning: {asr.reason}; WER/CER/dWER will be NaN")
    version = code_version()
    checksums = _data_checksums(utts)
    manifest = manifest_dict(cfg, version, codecs, skipped, asr, checksums, seeds, utts)
    manifest.update(started=started, status="running")
    store.atomic_write_json(cfg.out / store.MANIFEST_FILE, manifest)

    results = _prepare_results(cfg)
    done = store.finished_keys(_this_version(store.load_rows(results), version), _row_complete(asr)) if cfg.resume else set()
    runner = Runner(cfg, version, store.ResultCache(cfg.cache_dir, read=not cfg.force), asr)
    with store.ResultsWriter(results) as writer, _progress(len(codecs) * len(utts)) as bar:
        for utt in utts:
            todo = [c for c in codecs if (c.name, utt.id) not in done]
            stats.resumed += len(codecs) - len(todo)
            bar.update(len(codecs) - len(todo))
            if not todo:
                continue
            try:
                src = load_source(utt, checksums.get(utt.id))
            except Exception as exc:  # unreadable input: one error row per codec
                rows = [runner.error_row(c, utt, exc, "load") for c in todo]
            else:
                rows = (runner.evaluate(c, src) for c in todo)
            for row in rows:
                writer.append(row)
                stats.errors += row["status"] == "error"
                bar.update(1)
    stats.computed, stats.from_cache = runner.n_computed, runner.n_from_cache
    stats.failures = failures_by_reason(store.load_rows(results))
    stats.wall_s = time.perf_counter() - t0
    if cfg.report:
        stats.summary = write_summary(cfg.out)
    manifest.update(status="finished", finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    wall_s=round(stats.wall_s, 3), rows_computed=stats.computed, rows_from_cache=stats.from_cache,
                    rows_resumed=stats.resumed, rows_error=stats.errors, failures_by_reason=stats.failures,
                    peak_memory_mb=speed.peak_memory_mb(cfg.device),
                    peak_memory_source=speed.peak_memory_source(cfg.device),
                    cache={"dir": str(cfg.cache_dir), "hits": runner.cache.hits, "misses": runner.cache.misses,
                           "size_bytes": runner.cache.size_bytes(), "entries": runner.cache.n_entries()})
    store.atomic_write_json(cfg.out / store.MANIFEST_FILE, manifest)
    return stats


# --------------------------------------------------------------------------------------------
# Summary


def write_summary(run_dir: Path) -> str:
    """Write summary.csv / summary.md for ``run_dir`` and return the Markdown table.

    Uses ``benchmarks.report.write_reports`` (bootstrap CIs, corpus WER, LaTeX, plots) when that
    module is importable; otherwise :func:`simple_summary`.
    """
    try:
        report = importlib.import_module("benchmarks.report")
    except ImportError:
        return simple_summary(run_dir)
    report.write_reports(run_dir)
    return (Path(run_dir) / "summary.md").read_text(encoding="utf-8")


def simple_summary(run_dir: Path) -> str:
    """Minimal fallback summary (means over ok rows, medians of RTF) -> summary.csv / summary.md."""
    import pandas as pd

    rows = store.load_rows(run_dir)
    df = pd.DataFrame(rows)
    cols = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "bitrate_measured", "bitrate_nominal",
            "tokens_per_s", "wer", "encode_rtf", "decode_rtf"]
    out = []
    for codec, g in df.groupby("codec", sort=False):
        ok = g[g["status"] == "ok"]
        rec: dict[str, Any] = {"codec": codec, "n_ok": len(ok), "n_failed": len(g) - len(ok)}
        for c in cols:
            vals = pd.to_numeric(ok[c], errors="coerce") if c in ok else pd.Series(dtype=float)
            rec[c] = vals.median() if c.endswith("_rtf") else vals.mean()
        out.append(rec)
    table = pd.DataFrame(out)
    table.to_csv(Path(run_dir) / "summary.csv", index=False)
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |\n"
                   for r in table.itertuples(index=False))
    md = header + body
    (Path(run_dir) / "summary.md").write_text(md, encoding="utf-8")
    return md


# --------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    try:
        cfg = parse_args(argv)
        stats = run_benchmark(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished rows are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    if stats.summary:
        print(stats.summary)
    for line in skipped_lines(stats.skipped):
        print(line)
    cache = store.ResultCache(cfg.cache_dir)
    print(f"{stats.computed} rows computed, {stats.from_cache} from cache, {stats.resumed} already done, "
          f"{stats.errors} errors; {len(stats.skipped)} codecs skipped; wall time {stats.wall_s:.1f} s")
    if stats.failures:
        print(f"failed rows by reason ({sum(stats.failures.values())} in results): "
              + ", ".join(f"{reason} {n}" for reason, n in stats.failures.items()))
    print(f"results: {cfg.out / store.RESULTS_FILE}; cache {cfg.cache_dir}: "
          f"{store.format_bytes(cache.size_bytes())} in {cache.n_entries()} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
