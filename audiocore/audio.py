"""Audio I/O for the model, training and the benchmark: load, validate, downmix, resample.

Every reader in the project goes through :func:`load_audio`, so bad input fails in one place
with one kind of error. :class:`AudioError` (a ``ValueError``) carries a one-line message that
names the file and the problem:

- the file is missing, is a directory, or is empty (0 bytes);
- the file is not audio, or is corrupt or truncated (a FLAC that stops mid-stream);
- the decoded signal has no samples, or holds NaN/Inf samples.

Clipping is not an error (clipped speech is still speech a codec must handle), but it can be
measured with :func:`clipped_fraction`.

Decoding uses libsndfile (``soundfile``: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, ...). Files that
libsndfile cannot open at all (M4A/AAC, WebM, ...) are decoded with FFmpeg through PyAV.
Multichannel audio is downmixed to mono by averaging the channels, and :func:`read_audio`
reports that it happened. Resampling is always soxr at "VHQ" quality (:data:`RESAMPLER`), the
single resampler the benchmark records in its results.
"""
from __future__ import annotations

import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiocore.hashing import file_sha256

__all__ = [
    "AUDIO_EXTENSIONS",
    "RESAMPLER",
    "AUDIO_ERROR_REASONS",
    "AudioError",
    "AudioInfo",
    "DownmixWarning",
    "audio_checksum",
    "check_waveform",
    "clipped_fraction",
    "load_audio",
    "read_audio",
    "resample",
    "warn_if_downmixed",
]

#: The one resampler used everywhere; recorded in every results manifest.
RESAMPLER = f"soxr VHQ {soxr.__version__}"

#: File suffixes treated as audio when scanning folders (lower case).
AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".webm",
)

# Samples (frames x channels) decoded per read call. Reading in bounded blocks means a header
# that claims billions of frames cannot make us allocate them before the data runs out.
_BLOCK_SAMPLES = 1 << 20


class AudioError(ValueError):
    """A file or array that cannot be used as audio; the message names it and the problem.

    Attributes:
        reason: a short, stable category of the problem (one of :data:`AUDIO_ERROR_REASONS`),
            so that a run over thousands of files can count its failures by kind while the
            message keeps the per-file detail (sample counts, decoder text).
    """

    def __init__(self, message: str, reason: str = "invalid_audio") -> None:
        super().__init__(message)
        self.reason = reason


#: The categories :class:`AudioError.reason` takes, with what each means.
AUDIO_ERROR_REASONS: dict[str, str] = {
    "file_not_found": "the path does not exist",
    "not_a_file": "a directory, an invalid path, or a file that cannot be opened",
    "empty_file": "a 0-byte file",
    "not_audio": "neither libsndfile nor FFmpeg recognise the format, or no audio stream",
    "corrupt_audio": "the format is recognised but the data is corrupt or truncated",
    "no_samples": "decodes to 0 samples",
    "non_finite_samples": "holds NaN or Inf samples",
    "duration_mismatch": "decoded duration differs from the manifest's duration_s",
    "invalid_audio": "an in-memory array that is not a 1-D numeric waveform",
}


class DownmixWarning(UserWarning):
    """Emitted by :func:`load_audio` when a multichannel file is averaged to mono."""


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`read_audio` found in a file.

    Attributes:
        path: the file read.
        source_sample_rate: sample rate stored in the file (Hz).
        sample_rate: sample rate of the returned waveform (Hz); differs from
            ``source_sample_rate`` only when a ``target_sr`` was requested.
        channels: channel count stored in the file.
        num_frames: frames per channel decoded from the file (before resampling).
        downmixed: True when ``channels > 1`` and the channels were averaged to mono.
        decoder: ``"soundfile"`` or ``"pyav"``.
        peak: largest absolute sample value after decoding (1.0 = digital full scale).
    """

    path: Path
    source_sample_rate: int
    sample_rate: int
    channels: int
    num_frames: int
    downmixed: bool
    decoder: str
    peak: float

    @property
    def duration_s(self) -> float:
        """Duration of the decoded audio in seconds."""
        return self.num_frames / self.source_sample_rate


def _one_line(exc: BaseException) -> str:
    """An exception's message collapsed onto one line (its type name if the message is empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_file(path: Path) -> None:
    """Raise AudioError unless ``path`` is an existing, non-empty regular file."""
    try:
        exists = path.exists()
    except (OSError, ValueError) as exc:  # e.g. a NUL byte or an over-long name
        raise AudioError(f"{path!r}: invalid file path ({_one_line(exc)})", "not_a_file") from exc
    if not exists:
        raise AudioError(f"{path}: file not found", "file_not_found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file", "not_a_file")
    try:
        st = path.stat()
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({_one_line(exc)})", "not_a_file") from exc
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
            stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise AudioError(f"{path}: is {kind}, not a regular audio file", "not_a_file")
    size = st.st_size
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)", "empty_file")


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """Decode with libsndfile into float32 [T, C].

    Returns None when libsndfile cannot open the file at all (unknown format), so another
    decoder may try. Raises AudioError when the file opens but its data is corrupt or shorter
    than its header declares.
    """
    try:
        f = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError, OSError):
        return None
    with f:
        declared = f.frames
        channels = f.channels
        sr = f.samplerate
        if channels < 1 or sr < 1:
            raise AudioError(f"{path}: invalid header ({channels} channels at {sr} Hz)", "corrupt_audio")
        block = max(1, _BLOCK_SAMPLES // channels)
        blocks: list[np.ndarray] = []
        decoded = 0
        try:
            while True:
                chunk = f.read(block, dtype="float32", always_2d=True)
                if chunk.shape[0] == 0:
                    break
                blocks.append(chunk)
                decoded += chunk.shape[0]
        except (sf.SoundFileError, RuntimeError, ValueError, MemoryError) as exc:
            raise AudioError(
                f"{path}: corrupt or truncated audio ({_one_line(exc)}; header declares "
                f"{declared} frames)", "corrupt_audio",
            ) from exc
    header_frames = _wav_header_frames(path) if f.format == "WAV" else None
    if header_frames is not None and decoded < header_frames:
        raise AudioError(
            f"{path}: truncated WAV: its header declares {header_frames} frames "
            f"({header_frames / sr:.3f} s), the file holds {decoded} ({decoded / sr:.3f} s)", "corrupt_audio",
        )
    if 0 < decoded < declared:
        raise AudioError(
            f"{path}: truncated audio: header declares {declared} frames, only {decoded} decoded",
            "corrupt_audio",
        )
    wav = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, channels), np.float32)
    return wav, sr


def _wav_header_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE file's ``data`` chunk header declares (libsndfile trusts the file size
    instead, so a cut-off WAV would decode as a shorter, valid file); None when the header cannot
    say (not RIFF, streamed with a placeholder size, chunks not found in the first 64 KiB)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"fmt " and pos + 22 <= len(head):
            block_align = struct.unpack_from("<H", head, pos + 20)[0]
        elif cid == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _decode_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg (PyAV) into float32 [T, C]."""
    import av  # imported lazily: only needed for formats libsndfile cannot open

    try:
        container = av.open(str(path))
    except Exception as exc:  # FFmpeg reports unknown formats through several exception types
        raise AudioError(
            f"{path}: not a readable audio file (neither libsndfile nor FFmpeg recognise its format)",
            "not_audio",
        ) from exc
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path}: contains no audio stream", "not_audio")
        stream = container.streams.audio[0]
        sr = int(stream.codec_context.sample_rate or 0)
        if sr < 1:
            raise AudioError(f"{path}: invalid audio stream (sample rate {sr} Hz)", "corrupt_audio")
        # Planar float keeps every channel apart ([C, n] per frame); we downmix ourselves.
        resampler = av.AudioResampler(format="fltp")
        parts: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                parts.extend(out.to_ndarray() for out in resampler.resample(frame))
            parts.extend(out.to_ndarray() for out in resampler.resample(None))
        except Exception as exc:  # corrupt packets surface as FFmpegError, ValueError, ...
            raise AudioError(f"{path}: corrupt audio stream ({_one_line(exc)})", "corrupt_audio") from exc
    if not parts:
        return np.zeros((0, 1), np.float32), sr
    if len({part.shape[0] for part in parts}) != 1:
        raise AudioError(f"{path}: channel count changes inside the stream", "corrupt_audio")
    return np.ascontiguousarray(np.concatenate(parts, axis=1).T, dtype=np.float32), sr


def _decode(path: Path) -> tuple[np.ndarray, int, str]:
    """Decode a file into (float32 [T, C], sample rate, decoder name)."""
    decoded = _decode_soundfile(path)
    if decoded is not None:
        return decoded[0], decoded[1], "soundfile"
    wav, sr = _decode_pyav(path)
    return wav, sr, "pyav"


def check_waveform(x: object, name: str) -> np.ndarray:
    """Validate an in-memory mono waveform and return it as contiguous float32 [T].

    Args:
        x: array-like of shape [T] (samples, nominally in [-1, 1]).
        name: what the array is (a file name, "decoded output of opus@6k", ...), used in errors.

    Returns:
        float32 array of shape [T] (a copy only where a dtype/layout change needs one).

    Raises:
        AudioError: not numeric, not 1-D, empty, or holding NaN/Inf samples.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise AudioError(f"{name}: not an array ({_one_line(exc)})") from exc
    if arr.dtype.kind not in "fiub":
        raise AudioError(f"{name}: expected a numeric waveform, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D mono waveform [T], got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise AudioError(f"{name}: contains no audio samples (0 frames)", "no_samples")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum()) - n_nan
        raise AudioError(
            f"{name}: contains non-finite samples ({n_nan} NaN, {n_inf} Inf of {arr.size})",
            "non_finite_samples",
        )
    return arr


def clipped_fraction(x: np.ndarray, threshold: float = 0.999) -> float:
    """Fraction of samples at or beyond ``threshold`` of digital full scale.

    A clean 16-bit recording has essentially none (LibriSpeech: 0); a recording driven into
    clipping has runs of samples pinned at +-1. This is a detector, not a reason to reject audio.

    Args:
        x: waveform [T] or [T, C], float, full scale = 1.0.
        threshold: absolute level counted as clipped (0 < threshold <= 1).

    Returns:
        fraction in [0, 1]; 0.0 for an empty array.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    arr = np.asarray(x)
    if arr.size == 0:
        return 0.0
    return float(np.count_nonzero(np.abs(arr) >= threshold) / arr.size)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a waveform with soxr at VHQ quality (:data:`RESAMPLER`).

    Args:
        x: float waveform [T] (or [T, C]) at ``sr_in`` Hz.
        sr_in: input sample rate in Hz (positive integer).
        sr_out: output sample rate in Hz (positive integer).

    Returns:
        float32 waveform [round(T * sr_out / sr_in)] (or [.., C]); the input unchanged
        (as float32) when the rates are equal.
    """
    for label, rate in (("sr_in", sr_in), ("sr_out", sr_out)):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"{label} must be a positive integer sample rate in Hz, got {rate!r}")
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    return soxr.resample(x, int(sr_in), int(sr_out), quality="VHQ").astype(np.float32, copy=False)


def read_audio(path: str | Path, target_sr: int | None = None) -> tuple[np.ndarray, AudioInfo]:
    """Load an audio file as mono float32, optionally resampled, and report what was done.

    Args:
        path: audio file (any format libsndfile or FFmpeg decodes).
        target_sr: output sample rate in Hz; None keeps the file's rate.

    Returns:
        (wav, info): ``wav`` is float32 [T] at ``info.sample_rate`` Hz (full scale 1.0),
        the channel mean when the file has several channels (``info.downmixed``).

    Raises:
        AudioError: missing, empty, non-audio, corrupt or truncated file; no samples; NaN/Inf.
    """
    p = Path(path)
    _check_file(p)
    multi, sr, decoder = _decode(p)
    n_frames, channels = multi.shape
    if n_frames == 0:
        raise AudioError(f"{p}: contains no audio samples (0 frames)", "no_samples")
    wav = multi[:, 0] if channels == 1 else multi.mean(axis=1, dtype=np.float32)
    wav = check_waveform(wav, str(p))
    peak = float(np.max(np.abs(wav)))
    out_sr = sr
    if target_sr is not None and target_sr != sr:
        wav = resample(wav, sr, target_sr)
        out_sr = int(target_sr)
    info = AudioInfo(
        path=p, source_sample_rate=int(sr), sample_rate=int(out_sr), channels=int(channels),
        num_frames=int(n_frames), downmixed=channels > 1, decoder=decoder, peak=peak,
    )
    return wav, info


def load_audio(path: str | Path, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Load an audio file as mono float32 [T], resampled to ``target_sr`` when given.

    Thin wrapper over :func:`read_audio` returning ``(wav, sample_rate)``. A multichannel file is
    averaged to mono and a :class:`DownmixWarning` naming the file is emitted.

    Raises:
        AudioError: see :func:`read_audio`.
    """
    wav, info = read_audio(path, target_sr)
    warn_if_downmixed(info, stacklevel=3)
    return wav, info.sample_rate


def warn_if_downmixed(info: AudioInfo, stacklevel: int = 2) -> None:
    """Emit a :class:`DownmixWarning` naming the file when ``info`` says it was downmixed.

    Args:
        info: what :func:`read_audio` reported.
        stacklevel: passed to ``warnings.warn`` (2 = the caller of this function).
    """
    if info.downmixed:
        warnings.warn(
            f"{info.path}: {info.channels} channels averaged to mono", DownmixWarning,
            stacklevel=stacklevel,
        )


def audio_checksum(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks; a cache key for an utterance's audio.

    Raises:
        AudioError: missing, directory or unreadable file.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: file not found" if not p.exists() else f"{p}: not a regular file",
                         "file_not_found" if not p.exists() else "not_a_file")
    try:
        return file_sha256(p, chunk_bytes)
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({_one_line(exc)})", "not_a_file") from exc
