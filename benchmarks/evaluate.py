"""One (codec, utterance) pair through the pipeline: the row of results it gives.

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
   ``metrics.tokens``; WER/CER/dWER from ``metrics.asr`` when ASR is on; the protocol's
   perceptual (DNSMOS, DistillMOS, UTMOS) and speaker-similarity columns from
   ``benchmarks.quality`` on the untrimmed reconstruction (the original's scores once per utterance);
7. one JSON line appended to ``OUT/results.jsonl`` (schema: docs/results-format.md).

Any exception for one (codec, utterance) becomes a ``status == "error"`` row naming the file and
the problem, and the run continues. Reconstructions and metric values are cached by content
(:mod:`benchmarks.store`), and a rerun of the same command resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from audiocore import audio
from audiocore.codec import Codec, Encoded
from audiocore.hashing import file_sha256
from benchmarks import cache_checks, provenance, store
from benchmarks.provenance import CodeVersion, codec_weights_hash
from benchmarks.runconfig import METRIC_SR, SEED, RunConfig
from metrics import speed, tokens
from metrics.asr import AsrScorer
from metrics.signal import signal_metrics

if TYPE_CHECKING:
    from benchmarks.quality import QualityStage


def _slug(text: str) -> str:
    """A file-name-safe version of ``text``; a short hash is appended when characters changed."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


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


def input_notes(wav: np.ndarray, info: audio.AudioInfo) -> tuple[str, ...]:
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
    clipped = audio.clipped_fraction(wav)
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
                  ref16=audio.resample(wav, info.sample_rate, METRIC_SR), notes=input_notes(wav, info))


class Runner:
    """Evaluates (codec, utterance) pairs with caching; one instance per invocation.

    Args:
        cfg: the run configuration.
        version: digests of the code (cache keys, ``code_version`` column).
        cache: the content-addressed cache.
        asr: the ASR scorer, or None for ``--no-asr``.
        quality: the perceptual / speaker stage, or None (``--no-perceptual``).
    """

    def __init__(self, cfg: RunConfig, version: CodeVersion, cache: store.ResultCache, asr: AsrScorer | None,
                 quality: QualityStage | None = None) -> None:
        self.cfg = cfg
        self.version = version
        self.cache = cache
        self.asr = asr
        self.quality = quality if quality is not None and quality.active else None
        self._quality_info = self.quality.info() if self.quality is not None else None
        self.device_type = torch.device(cfg.device).type
        self._warm: set[str] = set()
        self.codec_packages = provenance.package_versions(provenance.CODEC_PACKAGES)
        self.metric_packages = provenance.package_versions(provenance.METRIC_PACKAGES)
        self.n_computed = 0
        self.n_from_cache = 0

    # ---- cache keys ------------------------------------------------------------------------

    def recon_key(self, codec: Codec, src: Source) -> str:
        """Address of a reconstruction: codec spec + weights + audio bytes + codec code + versions of
        the codec packages + resampler + device."""
        return store.cache_key(
            kind="reconstruction", codec=codec.name, weights=codec_weights_hash(codec), audio=src.checksum,
            code=self.version.codec, resampler=audio.RESAMPLER, device=self.device_type,
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
        n_source = round(src.wav.shape[0] * codec.sample_rate / src.sr)
        check = cache_checks.reconstruction(codec.name, codec.sample_rate, n_source, METRIC_SR)
        cached = self.cache.get("reconstruction", key, check=check)
        if cached is not None:
            return cached, True
        self._warm_up(codec)
        stage[0] = "resample"
        x = audio.resample(src.wav, src.sr, codec.sample_rate)
        with torch.inference_mode():
            stage[0] = "encode"
            with speed.Stopwatch(self.cfg.device) as sw_enc:
                enc = codec.encode(torch.from_numpy(np.ascontiguousarray(x)))
            stage[0] = "decode"
            with speed.Stopwatch(self.cfg.device) as sw_dec:
                y = codec.decode(enc)
        stage[0] = "resample"
        y = audio.check_waveform(y.detach().to("cpu", torch.float32).reshape(-1).numpy(),
                                  f"{src.utt.path}: decoded output of {codec.name}")
        wav16k = audio.resample(y, codec.sample_rate, METRIC_SR)
        values = {
            "vocab_sizes": list(enc.vocab_sizes), "frame_rate": enc.frame_rate,
            "payload_bytes": enc.payload_bytes, "num_samples": enc.num_samples,
            "padded_frames": enc.padded_frames, "stream_groups": list(enc.stream_groups),
            "decoded_samples": int(y.shape[0]),
            "encode_s": sw_enc.seconds, "decode_s": sw_dec.seconds, "device": self.cfg.device,
            "codec": codec.name,
        }
        arrays = {"wav16k": wav16k}
        if enc.codes is not None:
            arrays["codes"] = enc.codes.detach().to("cpu", torch.int64).numpy()
        self.cache.put("reconstruction", key, values, arrays)
        return store.CacheEntry(values=values, arrays=arrays), False

    def signal_columns(self, recon_key: str, ref16: np.ndarray, est16: np.ndarray) -> dict[str, Any]:
        """Signal metrics after the length rule (trim both to the shorter), cached."""
        key = store.cache_key(kind="signal", recon=recon_key, code=self.version.metrics, packages=self.metric_packages)
        cached = self.cache.get("signal", key, check=cache_checks.signal)
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
        cached = self.cache.get("asr", key, check=cache_checks.asr)
        if cached is not None:
            return cached.values
        values = self.asr.columns(src.utt.transcript, src.ref16, est16)
        self.cache.put("asr", key, values)
        return values

    def perceptual_columns(self, recon_key: str, src: Source, est16: np.ndarray) -> dict[str, Any]:
        """Perceptual and speaker columns (``benchmarks.quality``), cached: the original's scores by
        audio content, the reconstruction's by its reconstruction key; {} without the stage.
        ``perceptual_s`` is the time actually spent now (0 when everything came from the cache)."""
        if self.quality is None:
            return {}
        t0 = time.perf_counter()
        ref_key = store.cache_key(kind="perceptual-ref", audio=src.checksum, code=self.version.metrics,
                                  models=self._quality_info, metric_sr=METRIC_SR)
        cached = self.cache.get("perceptual", ref_key, check=cache_checks.perceptual)
        reference = cached.values if cached is not None else None
        if reference is None:
            reference = self.quality.reference_columns(src.ref16)
            self.cache.put("perceptual", ref_key, reference)
        key = store.cache_key(kind="perceptual", recon=recon_key, code=self.version.metrics, models=self._quality_info)
        cached = self.cache.get("perceptual", key, check=cache_checks.perceptual)
        if cached is not None:
            values = dict(cached.values)
        else:
            values = self.quality.row_columns(src.ref16, est16, reference)
            values.pop("perceptual_s", None)
            self.cache.put("perceptual", key, values)
        values.update(reference)
        values["perceptual_s"] = time.perf_counter() - t0
        return values

    def save_tokens(self, codec: Codec, utt_id: str, codes: np.ndarray) -> str:
        """Write the token ids [S, N] of one utterance to ``OUT/tokens/<codec>/<utt>.npy``."""
        rel = Path("tokens") / _slug(codec.name) / f"{_slug(utt_id)}.npy"
        store.atomic_save_npy(self.cfg.out / rel, codes)
        return rel.as_posix()

    # ---- one row ---------------------------------------------------------------------------

    def base_row(self, codec: Codec, utt: Any) -> dict[str, Any]:
        """Identity columns shared by ok and error rows."""
        return identity_columns(codec.name, utt, self.version.label, codec.sample_rate, codec_weights_hash(codec))

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
            t_signal = time.perf_counter()
            row.update(self.signal_columns(key, src.ref16, est16))
            row["signal_s"] = time.perf_counter() - t_signal
            stage[0] = "asr"
            if self.asr is not None:
                t_asr = time.perf_counter()
                row.update(self.asr_columns(key, src, est16))
                row["asr_s"] = time.perf_counter() - t_asr
            stage[0] = "perceptual"
            row.update(self.perceptual_columns(key, src, est16))
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
        A failure of the cache is stage ``cache``; ``error_transient`` marks failures that are not
        the input's fault (cache, memory, the file system: :func:`is_transient`), which a resumed
        run redoes instead of keeping.
        """
        if isinstance(exc, store.CacheError):
            stage = "cache"
        message = " ".join(str(exc).split()) or type(exc).__name__
        return {**self.base_row(codec, utt),
                **error_columns(utt, message, stage=stage, error_type=type(exc).__name__,
                                reason=failure_reason(exc, stage), transient=is_transient(exc))}


def identity_columns(codec_name: str, utt: Any, version_label: str, sample_rate: int | None = None,
                     weights_hash: str | None = None) -> dict[str, Any]:
    """The columns naming a row: codec, utterance (id, set, path, manifest duration), the codec's
    sample rate and weights hash when known, and the code version."""
    row = {"codec": codec_name, "utt_id": utt.id, "set": utt.set, "path": str(utt.path), "duration_s": utt.duration_s}
    if sample_rate is not None:
        row["codec_sample_rate"] = int(sample_rate)
    if weights_hash is not None:
        row["weights_hash"] = weights_hash
    row["code_version"] = version_label
    return row


def error_columns(utt: Any, message: str, *, stage: str, error_type: str, reason: str,
                  transient: bool) -> dict[str, Any]:
    """The columns of a ``status == "error"`` row: ``error`` is one line naming the file (prefixed
    when ``message`` does not), the stage and the exception type."""
    if str(utt.path) not in message:
        message = f"{utt.path}: {message}"
    return {"status": "error", "error": f"{message} [{stage}: {error_type}]", "error_stage": stage,
            "error_type": error_type, "error_reason": reason, "error_transient": transient}


def is_transient(exc: BaseException) -> bool:
    """True for failures that are not a property of the input: the cache (``store.CacheError``),
    the machine (``MemoryError``) or the file system (``OSError``); bad audio (``AudioError``)
    and codec or metric errors on the input are permanent."""
    return isinstance(exc, (store.CacheError, MemoryError, OSError)) and not isinstance(exc, audio.AudioError)


def failure_reason(exc: BaseException, stage: str) -> str:
    """Short category of a failure: ``AudioError.reason`` for bad input (``file_not_found``,
    ``corrupt_audio``, ... see ``audiocore.audio.AUDIO_ERROR_REASONS``), else ``<stage>:<exception type>``
    (e.g. ``encode:RuntimeError``)."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, audio.AudioError) and isinstance(reason, str) and reason:
        return reason
    return f"{stage}:{type(exc).__name__}"
