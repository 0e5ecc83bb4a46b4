"""Classical speech codecs behind the `Codec` interface, with real encoders and decoders.

Every codec here really produces a bitstream and decodes it back; nothing is simulated.

| spec | library | native rate | bitstream counted as payload |
|---|---|---|---|
| `pcm` | numpy | 16 kHz | 16-bit samples (2 bytes/sample) |
| `mulaw` | FFmpeg `pcm_mulaw` (G.711 mu-law) | 8 kHz | 1 byte/sample |
| `g722` | FFmpeg `g722` (64 kbit/s mode) | 16 kHz | ADPCM bytes |
| `opus@6k/8k/12k/16k` | FFmpeg `libopus` (VBR, libopus defaults) | 48 kHz | Opus packets (TOC byte included) |
| `mp3@16k/32k` | FFmpeg `libmp3lame` (CBR) | 16 kHz | MP3 frames (4-byte frame headers included) |
| `amr-nb@4.75k..12.2k` | FFmpeg `libopencore_amrnb` | 8 kHz | AMR storage frames (1-byte frame header included) |
| `codec2@3200/1200/700C` | pycodec2 (libcodec2) | 8 kHz | packed codec2 frames, as libcodec2 stores them |

Container overhead (Ogg pages, RTP headers, file magic) is never counted. Each codec's decoded
output is shifted by the codec's algorithmic delay (`DELAY_SAMPLES`, measured with
`measure_delay`; see docs/codecs-classical.md) and trimmed or zero-padded to exactly the input
length. All encoders run on the CPU, whatever `device` is passed to `build`.
"""
from __future__ import annotations

import ctypes
import fractions
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiocore.codec import CodecUnavailable, Encoded

INT16_SCALE = 32768.0
"""float sample x in [-1, 1) <-> int16 round(x * 32768), clipped to [-32768, 32767]."""

OPUS_RATES = {"6k": 6000, "8k": 8000, "12k": 12000, "16k": 16000}
MP3_RATES = {"16k": 16000, "32k": 32000}
AMR_NB_RATES = {
    "4.75k": 4750, "5.15k": 5150, "5.9k": 5900, "6.7k": 6700,
    "7.4k": 7400, "7.95k": 7950, "10.2k": 10200, "12.2k": 12200,
}
CODEC2_MODES = {"3200": 3200, "1200": 1200, "700C": 700}
"""Setting name -> pycodec2 mode key (pycodec2 calls CODEC2_MODE_700C `700`)."""
CODEC2_NOMINAL = {"3200": 3200.0, "1200": 1200.0, "700C": 700.0}

DELAY_SAMPLES: dict[str, int] = {
    # Waveform codecs: FFT cross-correlation of decoded vs input speech (`measure_delay`), identical
    # on every eval utterance tried (+-1 sample). Opus: FFmpeg's decoder already removes the
    # pre-skip signalled in the OpusHead; what is left is the SILK resampler at narrow band.
    "pcm": 0,
    "mulaw": 0,
    "g722": 22,
    "opus@6k": 6,
    "opus@8k": 6,
    "opus@12k": 0,
    "opus@16k": 0,
    "mp3@16k": 1105,  # LAME encoder delay 576 + decoder delay 529
    "mp3@32k": 1105,
    **{f"amr-nb@{s}": 39 for s in AMR_NB_RATES},
    # Codec2 does not keep phase: delay from the peak of the log-energy envelope
    # cross-correlation pooled over 34 eval utterances (`measure_delay(..., envelope=True)`).
    "codec2@3200": 152,
    "codec2@1200": 152,
    "codec2@700C": 228,
}
"""Samples (at the codec's native rate) by which decoded audio lags the input."""


def to_int16(wav: np.ndarray) -> np.ndarray:
    """float32 [T] in [-1, 1] -> int16 [T] (round to nearest, clip)."""
    return np.clip(np.rint(wav * INT16_SCALE), -32768, 32767).astype(np.int16)


def _check_wav(wav: torch.Tensor, name: str) -> np.ndarray:
    """Validate an encoder input and return it as a float32 numpy copy of shape [T]."""
    if not isinstance(wav, torch.Tensor):
        raise ValueError(f"{name}.encode expects a torch.Tensor of shape [T], got {type(wav).__name__}")
    if wav.dim() != 1:
        raise ValueError(f"{name}.encode expects a mono waveform of shape [T], got shape {tuple(wav.shape)}")
    x = wav.detach().to("cpu", torch.float32).numpy().copy()
    if not np.isfinite(x).all():
        raise ValueError(f"{name}.encode: input waveform contains NaN or Inf")
    return x


def _align(decoded: np.ndarray, delay: int, num_samples: int) -> torch.Tensor:
    """Drop the first `delay` samples, then trim or zero-pad to `num_samples`: [num_samples] float32."""
    out = np.zeros(num_samples, dtype=np.float32)
    body = decoded[delay : delay + num_samples]
    out[: body.shape[0]] = body
    return torch.from_numpy(out)


class PcmCodec:
    """16-bit linear PCM at 16 kHz: the identity up to int16 quantisation (2 bytes/sample)."""

    def __init__(self) -> None:
        self.name = "pcm"
        self.sample_rate = 16000

    def encode(self, wav: torch.Tensor) -> Encoded:
        """Quantise `wav` [T] (float32 at 16 kHz) to int16; payload is the raw little-endian bytes."""
        pcm = to_int16(_check_wav(wav, self.name))
        data = pcm.astype("<i2").tobytes()
        return Encoded(codes=None, vocab_sizes=(), frame_rate=float(self.sample_rate),
                       payload_bytes=len(data), num_samples=pcm.shape[0], payload=data)

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Bytes -> float32 [enc.num_samples]."""
        pcm = np.frombuffer(enc.payload, dtype="<i2")
        return _align(pcm.astype(np.float32) / INT16_SCALE, 0, enc.num_samples)

    def nominal_bitrate(self) -> float:
        """256000 bit/s (16 bits x 16000 samples/s)."""
        return 16.0 * self.sample_rate


@dataclass(frozen=True)
class AVSetting:
    """One FFmpeg encoder/decoder pairing at one fixed setting.

    Attributes:
        encoder: FFmpeg encoder name (must be in `av.codec.codecs_available`).
        decoder: FFmpeg decoder name.
        sample_rate: native rate in Hz for encoder input and decoder output.
        bit_rate: target bitrate in bit/s passed to the encoder (None for fixed-rate codecs).
        sample_format: PyAV sample format fed to the encoder ("s16" interleaved or "s16p" planar).
        nominal: the bitrate the codec claims at this setting, bit/s.
    """

    encoder: str
    decoder: str
    sample_rate: int
    bit_rate: int | None
    sample_format: str
    nominal: float


class PyAVCodec:
    """A codec run through the FFmpeg libraries bundled in the PyAV wheel.

    Args:
        name: canonical spec, e.g. "opus@12k" (selects the delay in `DELAY_SAMPLES`).
        setting: encoder/decoder pairing and parameters.
        delay: decoder output lag in samples at `setting.sample_rate`; None uses `DELAY_SAMPLES`.
    """

    def __init__(self, name: str, setting: AVSetting, delay: int | None = None) -> None:
        try:
            import av
        except ImportError as e:  # pragma: no cover - av is a core dependency
            raise CodecUnavailable(f"{name} needs PyAV: pip install av ({e})") from e
        available = av.codec.codecs_available
        for role, codec in (("encoder", setting.encoder), ("decoder", setting.decoder)):
            if codec not in available:
                raise CodecUnavailable(
                    f"{name}: the FFmpeg inside this PyAV {av.__version__} wheel has no {role} "
                    f"'{codec}'; install a PyAV build whose FFmpeg includes it"
                )
        try:
            av.codec.Codec(setting.encoder, "w")
        except Exception as e:
            raise CodecUnavailable(
                f"{name}: FFmpeg in PyAV {av.__version__} knows '{setting.encoder}' but cannot encode with it ({e})"
            ) from e
        self._av = av
        self.name = name
        self.sample_rate = setting.sample_rate
        self.setting = setting
        self.delay = DELAY_SAMPLES[name] if delay is None else delay

    def _encoder(self) -> Any:
        ctx = self._av.codec.CodecContext.create(self.setting.encoder, "w")
        ctx.sample_rate = self.sample_rate
        ctx.layout = "mono"
        ctx.format = self.setting.sample_format
        if self.setting.bit_rate is not None:
            ctx.bit_rate = self.setting.bit_rate
        ctx.open()
        return ctx

    def encode(self, wav: torch.Tensor) -> Encoded:
        """Encode `wav` [T] (float32 at `sample_rate`) into FFmpeg packets, encoder flushed.

        Returns an `Encoded` whose `payload` is the list of packet bytes, `payload_bytes` their
        total size and `frame_rate` the packet rate (sample_rate / frame size; the sample rate for
        sample-wise codecs such as G.711).
        """
        pcm = to_int16(_check_wav(wav, self.name))
        ctx = self._encoder()
        frame = self._av.AudioFrame.from_ndarray(pcm[None, :], format=self.setting.sample_format, layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = 0
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        packets = [bytes(p) for p in ctx.encode(frame)] if pcm.shape[0] else []
        packets += [bytes(p) for p in ctx.encode(None)]
        frame_size = ctx.frame_size or 1
        return Encoded(
            codes=None, vocab_sizes=(), frame_rate=self.sample_rate / frame_size,
            payload_bytes=sum(len(p) for p in packets), num_samples=pcm.shape[0],
            payload={"packets": packets, "extradata": ctx.extradata},
        )

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Decode all packets, concatenate the frames once, compensate the delay: [num_samples]."""
        ctx = self._av.codec.CodecContext.create(self.setting.decoder, "r")
        ctx.sample_rate = self.sample_rate
        ctx.layout = "mono"
        if enc.payload["extradata"]:
            ctx.extradata = enc.payload["extradata"]
        ctx.open()
        frames = []
        for data in enc.payload["packets"]:
            frames.extend(ctx.decode(self._av.Packet(data)))
        frames.extend(ctx.decode(None))
        if not frames:
            return _align(np.zeros(0, np.float32), 0, enc.num_samples)
        rates = {f.sample_rate for f in frames}
        if rates != {self.sample_rate}:
            raise RuntimeError(f"{self.name}: decoder '{self.setting.decoder}' returned {sorted(rates)} Hz, "
                               f"expected {self.sample_rate} Hz")
        arrays = [f.to_ndarray().reshape(-1) for f in frames]
        decoded = np.concatenate(arrays)
        if decoded.dtype == np.int16:
            decoded = decoded.astype(np.float32) / INT16_SCALE
        return _align(decoded.astype(np.float32, copy=False), self.delay, enc.num_samples)

    def nominal_bitrate(self) -> float:
        """The bitrate named by the setting (bit/s)."""
        return self.setting.nominal


# --------------------------------------------------------------------------------------------
# libcodec2's process-global random number generator
#
# libcodec2's decoder draws random phases for unvoiced harmonics from `codec2_rand()`, an LCG whose
# state is one static `unsigned long next = 1` shared by every Codec2 instance in the process
# (no seeding function is exported). Decoding the same frames twice therefore gives different
# audio, and an utterance's reconstruction depended on everything decoded before it in the
# process (the runner's warm-up, cache hits that skip a decode, the codec list). Resetting the
# state to its initial value before each encode/decode makes every call behave as in a fresh
# process. The state's address is read from the x86-64 code of `codec2_rand`
# (`imul rax, [rip + disp32], imm32`), then verified by the ANSI C rand() sequence for seed 1.

#: First outputs of `codec2_rand` from state 1 (the ANSI C `rand()` LCG; checks the address).
_CODEC2_RAND_SEED1 = (16838, 5758, 10113)


def _loaded_libcodec2() -> Path | None:
    """Path of the libcodec2 shared library loaded by pycodec2 (Linux: from /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    for line in maps:
        path = line.split()[-1] if line.split() else ""
        if "libcodec2" in Path(path).name:
            return Path(path)
    return None


@functools.lru_cache(maxsize=1)
def _codec2_rng_state() -> ctypes.c_uint64 | None:
    """libcodec2's `next` (the `codec2_rand` state) as a ctypes view, or None if not found.

    Requires pycodec2 imported (so libcodec2 is loaded). Returns None with a RuntimeWarning when
    the library, the instruction pattern or the verification does not match (e.g. another CPU
    architecture); decoding then still works but depends on the process history as before.
    """
    path = _loaded_libcodec2()
    reason = "libcodec2 is not among the loaded libraries"
    if path is not None:
        try:
            lib = ctypes.CDLL(str(path))  # the already-loaded copy: same statics as pycodec2's
            func = lib.codec2_rand
            func.restype, func.argtypes = ctypes.c_int, []
            addr = ctypes.cast(func, ctypes.c_void_p).value
            code = ctypes.string_at(addr, 11)
            if code[:3] != b"\x48\x69\x05":  # imul r64, [rip + disp32], imm32 (11 bytes)
                reason = f"unexpected code at codec2_rand ({code.hex()})"
            else:
                state = ctypes.c_uint64.from_address(addr + 11 + int.from_bytes(code[3:7], "little", signed=True))
                state.value = 1
                got = tuple(func() for _ in _CODEC2_RAND_SEED1)
                state.value = 1
                if got == _CODEC2_RAND_SEED1:
                    return state
                reason = f"codec2_rand gave {got} from state 1, expected {_CODEC2_RAND_SEED1}"
        except (OSError, AttributeError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
    warnings.warn(f"cannot reset libcodec2's random generator ({reason}); codec2 reconstructions will "
                  "depend on what was decoded earlier in the process", RuntimeWarning, stacklevel=3)
    return None


def reset_codec2_rng() -> bool:
    """Put libcodec2's global random state back to its initial value 1; True when it was done."""
    state = _codec2_rng_state()
    if state is None:
        return False
    state.value = 1
    return True


class Codec2Codec:
    """Codec 2 (libcodec2 via pycodec2) at 8 kHz.

    libcodec2 encodes and decodes one frame per call (pycodec2 mirrors that), so both directions
    loop over frames (not samples). The input is padded with `delay` zeros (the end-of-stream
    flush a streaming encoder would do) and then to whole frames; those extra frames are real
    payload and are counted.

    libcodec2's random generator is process-global; `encode` and `decode` reset it first
    (`reset_codec2_rng`), so the same input always gives the same output, whatever ran before.

    Args:
        setting: "3200", "1200" or "700C".
    """

    def __init__(self, setting: str) -> None:
        try:
            import pycodec2
        except ImportError as e:
            raise CodecUnavailable(f"codec2@{setting} needs pycodec2: pip install pycodec2 ({e})") from e
        self._pycodec2 = pycodec2
        self.setting = setting
        self.name = f"codec2@{setting}"
        self.sample_rate = 8000
        self.delay = DELAY_SAMPLES[self.name]
        probe = pycodec2.Codec2(CODEC2_MODES[setting])
        self.samples_per_frame = int(probe.samples_per_frame())
        self.bytes_per_frame = int(probe.bytes_per_frame())
        self.bits_per_frame = int(probe.bits_per_frame())

    def encode(self, wav: torch.Tensor) -> Encoded:
        """Encode `wav` [T] (float32 at 8 kHz) into packed Codec 2 frames (bytes_per_frame each)."""
        pcm = to_int16(_check_wav(wav, self.name))
        n = pcm.shape[0]
        spf = self.samples_per_frame
        n_frames = -(-(n + self.delay) // spf) if n else 0
        padded = np.zeros(n_frames * spf, dtype=np.int16)
        padded[:n] = pcm
        state = self._pycodec2.Codec2(CODEC2_MODES[self.setting])
        reset_codec2_rng()
        bits = b"".join(state.encode(f) for f in padded.reshape(n_frames, spf))
        return Encoded(codes=None, vocab_sizes=(), frame_rate=self.sample_rate / spf,
                       payload_bytes=len(bits), num_samples=n, payload=bits)

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Decode the packed frames and compensate the delay: float32 [enc.num_samples]."""
        bpf = self.bytes_per_frame
        data: bytes = enc.payload
        if len(data) % bpf:
            raise ValueError(f"{self.name}: payload of {len(data)} bytes is not a whole number of "
                             f"{bpf}-byte frames")
        state = self._pycodec2.Codec2(CODEC2_MODES[self.setting])
        reset_codec2_rng()
        chunks = [state.decode(data[i : i + bpf]) for i in range(0, len(data), bpf)]
        decoded = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return _align(decoded.astype(np.float32) / INT16_SCALE, self.delay, enc.num_samples)

    def nominal_bitrate(self) -> float:
        """The mode's name (bit/s); 700C actually stores 28 bits per 40 ms frame in 4 bytes."""
        return CODEC2_NOMINAL[self.setting]


def _av_settings() -> dict[str, AVSetting]:
    """Every PyAV-backed spec and its setting."""
    out = {
        "mulaw": AVSetting("pcm_mulaw", "pcm_mulaw", 8000, None, "s16", 64000.0),
        "g722": AVSetting("g722", "g722", 16000, 64000, "s16", 64000.0),
    }
    for s, br in OPUS_RATES.items():
        out[f"opus@{s}"] = AVSetting("libopus", "opus", 48000, br, "s16", float(br))
    for s, br in MP3_RATES.items():
        out[f"mp3@{s}"] = AVSetting("libmp3lame", "mp3float", 16000, br, "s16p", float(br))
    for s, br in AMR_NB_RATES.items():
        out[f"amr-nb@{s}"] = AVSetting("libopencore_amrnb", "amrnb", 8000, br, "s16", float(br))
    return out


AV_SETTINGS = _av_settings()
FAMILIES = ("pcm", "mulaw", "g722", "opus", "mp3", "amr-nb", "codec2")


def specs() -> list[str]:
    """Every canonical spec this module offers (available or not), for `--codecs all`."""
    return ["pcm", *AV_SETTINGS, *(f"codec2@{s}" for s in CODEC2_MODES)]


def build(spec: str, device: str = "cpu") -> PcmCodec | PyAVCodec | Codec2Codec:
    """Build the classical codec named by `spec` (e.g. "opus@12k", "codec2@700C", "pcm").

    Args:
        spec: canonical spec string; see `specs()`.
        device: ignored (all classical codecs run on the CPU); accepted for the common interface.

    Raises:
        ValueError: unknown family or setting; the message lists the valid specs of the family.
        CodecUnavailable: the encoder/decoder or package is missing (e.g. no AMR-NB encoder in
            the FFmpeg bundled with PyAV).
    """
    del device
    spec = spec.strip()
    if spec == "pcm":
        return PcmCodec()
    if spec in AV_SETTINGS:
        return PyAVCodec(spec, AV_SETTINGS[spec])
    if spec.startswith("codec2@") and spec.split("@", 1)[1] in CODEC2_MODES:
        return Codec2Codec(spec.split("@", 1)[1])
    family = spec.split("@", 1)[0]
    if family in FAMILIES:
        valid = [s for s in specs() if s.split("@", 1)[0] == family]
        raise ValueError(f"unknown setting in codec spec '{spec}'; valid {family} specs: {', '.join(valid)}")
    raise ValueError(f"'{spec}' is not a classical codec; classical families: {', '.join(FAMILIES)}")


def measure_delay(codec: Any, wav: torch.Tensor, max_delay_s: float = 0.15, envelope: bool = False) -> int:
    """Measure how many samples `codec`'s raw decoded output lags `wav`.

    Runs encode/decode with the codec's delay compensation switched off, then takes the peak of
    the FFT cross-correlation within +-max_delay_s: of the waveforms (default), or of the
    log-energy envelopes (4 ms moving average, 0.5 ms steps at 8 kHz) for codecs that do not keep
    phase (Codec 2).

    Args:
        codec: a `PyAVCodec` or `Codec2Codec` (anything with a settable `delay` attribute).
        wav: real speech, shape [T], float32 at `codec.sample_rate`.
        max_delay_s: search range in seconds.
        envelope: align envelopes instead of waveforms.

    Returns:
        delay in samples at the codec's native rate (positive: output lags input).
    """
    from metrics.signal import estimate_delay

    saved = codec.delay
    codec.delay = 0
    try:
        raw = codec.decode(codec.encode(wav)).numpy()
    finally:
        codec.delay = saved
    ref = wav.detach().cpu().numpy().astype(np.float64)
    est = raw.astype(np.float64)
    max_lag = int(round(max_delay_s * codec.sample_rate))
    if not envelope:
        return estimate_delay(ref, est, max_lag)
    win = max(1, int(round(0.004 * codec.sample_rate)))
    step = max(1, win // 8)
    kernel = np.ones(win) / win

    def env(x: np.ndarray) -> np.ndarray:
        e = np.log(np.convolve(x * x, kernel, mode="same")[::step] + 1e-6)
        return e - e.mean()

    return estimate_delay(env(ref), env(est), max_lag // step) * step
