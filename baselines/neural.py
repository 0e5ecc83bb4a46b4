"""Neural speech codecs behind the `Codec` interface, loaded from local weights only.

| spec | model (weights) | rate | streams x vocab | frame rate | published bitrate |
|---|---|---|---|---|---|
| `encodec@1.5k/3k/6k/12k/24k` | EnCodec 24 kHz (`facebook/encodec_24khz`) | 24 kHz | 2/4/8/16/32 x 1024 | 75 Hz | 1.5/3/6/12/24 kbit/s |
| `dac@16k` | DAC 16 kHz (`descript/dac_16khz`) | 16 kHz | 12 x 1024 | 50 Hz | 6 kbit/s |
| `dac@24k` | DAC 24 kHz (`descript/dac_24khz`) | 24 kHz | 32 x 1024 | 75 Hz | 24 kbit/s |
| `dac@44k` | DAC 44.1 kHz (`descript/dac_44khz`) | 44.1 kHz | 9 x 1024 | 86.13 Hz | 8 kbit/s (exact: 7.75) |
| `mimi@8/16/32` | Mimi (`kyutai/mimi`) | 24 kHz | 8/16/32 x 2048 | 12.5 Hz | 1.1/2.2/4.4 kbit/s |
| `snac@24k` | SNAC 24 kHz (`hubertsiuzdak/snac_24khz`) | 24 kHz | 1+2+4 x 4096 (folded) | 11.72 Hz | 0.98 kbit/s |
| `speechtokenizer@1/8` | SpeechTokenizer (`fnlp/SpeechTokenizer`) | 16 kHz | 1/8 x 1024 | 50 Hz | 0.5/4 kbit/s |
| `wavtokenizer@40/75` | WavTokenizer large (`swiss-ai/wavtokenizer-large-unify-40token`; 75: converted) | 24 kHz | 1 x 4096 | 40/75 Hz | 0.48/0.9 kbit/s |

`build` also accepts non-canonical settings (not listed by `specs()`): `dac@16k-4q` (any
codebook count up to the model's), `mimi@N` (1..32), `speechtokenizer@N` (1..8), `snac@32k` and
`snac@44k` (general-audio SNAC models). Their nominal bitrate is the stream rate computed from the
model (no published number exists).

Implementations: the `transformers` library (EncodecModel, DacModel, MimiModel,
WavTokenizerModel), the `snac` package, and the `speechtokenizer` package's model modules loaded
without its training package (which needs torchaudio). Every import is lazy.

Weights are never downloaded. They are looked up, in order, in the `weights_dir` passed to
`build`, in `$JEPA_DAAM_WEIGHTS`, and in the Hugging Face cache (read with local-only calls).
Inside a weights folder a model lives at `<dir>/<repo id>[/<subfolder>]` (e.g.
`<dir>/facebook/encodec_24khz/`) or `<dir>/<repo name>[/<subfolder>]`. When nothing is found the
codec raises `CodecUnavailable` naming the folder, the files and the download command.

Token layout: `Encoded.codes` is [n_streams, n_frames] int64 at the codec's frame rate (SNAC's
finer levels are folded into rows at the coarsest rate, `metrics.tokens.fold_multirate`, with
`Encoded.stream_groups`). Frames that encode only padding added by the codec (SNAC) are counted
in `Encoded.padded_frames`; a partly filled last frame is payload. `decode` trims or zero-pads to
exactly `num_samples` (DAC 16/24 kHz decoders return 8 samples less than 320 x n_frames).
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from audiocore.codec import CodecUnavailable, Encoded
from audiocore.device import resolve_device
from audiocore.hashing import file_sha256, state_dict_sha256

WEIGHTS_ENV = "JEPA_DAAM_WEIGHTS"
"""Environment variable naming the folder that holds neural-codec weights (`<dir>/<repo id>/`)."""

TRANSFORMERS_HINT = "pip install 'transformers>=5.24' (or pip install -e '.[neural]')"
SNAC_HINT = "pip install snac (or pip install -e '.[neural]')"
SPEECHTOKENIZER_HINT = (
    "pip install --no-deps speechtokenizer einops (--no-deps: its declared torchaudio/accelerate "
    "dependencies are only needed for training and would replace the installed torch)"
)

HF_MODEL_FILES: tuple[tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
"""Files of a transformers model folder: config.json and one weights file (alternatives)."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsSource:
    """Where one model's weights come from.

    Attributes:
        repo_id: Hugging Face repository that publishes the weights ("facebook/encodec_24khz").
        subfolder: folder inside the repository holding the files ("" for the root).
        required: files that must be present; each entry lists alternatives (any one suffices).
        how_to_get: instructions shown when the files are missing; empty = `hf download`.
    """

    repo_id: str
    subfolder: str = ""
    required: tuple[tuple[str, ...], ...] = HF_MODEL_FILES
    how_to_get: str = ""

    def candidates(self, root: Path) -> list[Path]:
        """Folders under a weights root that may hold this model: `<root>/<repo id>[/<sub>]`,
        then `<root>/<repo name>[/<sub>]`."""
        name = self.repo_id.split("/")[-1]
        out = [root / self.repo_id, root / name]
        return [p / self.subfolder if self.subfolder else p for p in out]

    def missing(self, folder: Path) -> list[str]:
        """Required files absent from `folder` ("a|b" for a group of alternatives)."""
        return ["|".join(group) for group in self.required if not any((folder / f).is_file() for f in group)]

    def files_in(self, folder: Path) -> list[Path]:
        """The file used from each required group: its first alternative present in `folder`."""
        return [next(folder / f for f in group if (folder / f).is_file()) for group in self.required]


@dataclass(frozen=True)
class NeuralSetting:
    """One spec of one neural codec.

    Attributes:
        spec: canonical spec string ("encodec@6k").
        family: codec family ("encodec").
        source: where the weights come from.
        sample_rate: native rate in Hz the model must have (checked against its config).
        hop_length: input samples per token frame the model must have (checked; SNAC: per
            frame of its finest level).
        n_q: codebooks used (EnCodec: derived from the bandwidth; must match).
        nominal: the published bitrate in bit/s, or None to use the computed stream rate.
        canonical: listed by `specs()` (False for extra settings accepted by `build`).
        option: family-specific option (EnCodec bandwidth in kbit/s).
    """

    spec: str
    family: str
    source: WeightsSource
    sample_rate: int
    hop_length: int
    n_q: int
    nominal: float | None
    canonical: bool = True
    option: float | None = None


ENCODEC_24K = WeightsSource("facebook/encodec_24khz")
DAC_SOURCES = {
    "16k": WeightsSource("descript/dac_16khz"),
    "24k": WeightsSource("descript/dac_24khz"),
    "44k": WeightsSource("descript/dac_44khz"),
}
MIMI = WeightsSource("kyutai/mimi")
SNAC_SOURCES = {
    "24k": WeightsSource("hubertsiuzdak/snac_24khz", required=(("config.json",), ("pytorch_model.bin",))),
    "32k": WeightsSource("hubertsiuzdak/snac_32khz", required=(("config.json",), ("pytorch_model.bin",))),
    "44k": WeightsSource("hubertsiuzdak/snac_44khz", required=(("config.json",), ("pytorch_model.bin",))),
}
SPEECHTOKENIZER = WeightsSource(
    "fnlp/SpeechTokenizer", subfolder="speechtokenizer_hubert_avg",
    required=(("config.json",), ("SpeechTokenizer.pt",)),
)
WAVTOKENIZER_SOURCES = {
    "40": WeightsSource("swiss-ai/wavtokenizer-large-unify-40token"),
    "75": WeightsSource(
        "novateur/WavTokenizer-large-speech-75token",
        how_to_get=(
            "no Transformers-format copy is published: on a connected machine download "
            "wavtokenizer_large_speech_320_v2.ckpt from novateur/WavTokenizer-large-speech-75token and convert "
            "it with transformers' src/transformers/models/wavtokenizer/convert_wavtokenizer_checkpoint.py "
            "--checkpoint_path <ckpt> --output_dir <this folder>"
        ),
    ),
}

ENCODEC_BANDWIDTHS = {"1.5k": 1.5, "3k": 3.0, "6k": 6.0, "12k": 12.0, "24k": 24.0}
"""EnCodec 24 kHz setting -> target bandwidth in kbit/s (2, 4, 8, 16, 32 codebooks at 75 Hz)."""
DAC_MODELS = {
    # setting: (sample rate, hop, codebooks, published bit/s)
    "16k": (16000, 320, 12, 6000.0),
    "24k": (24000, 320, 32, 24000.0),
    "44k": (44100, 512, 9, 8000.0),  # published as "8 kbps"; 9 x 10 bits x 86.13 Hz = 7752 bit/s
}
MIMI_PUBLISHED = {8: 1100.0, 16: 2200.0, 32: 4400.0}
MIMI_MAX_Q = 32
SNAC_MODELS = {
    # setting: (sample rate, finest hop, published bit/s or None, canonical)
    "24k": (24000, 512, 980.0, True),  # published "0.98 kbps"; exact 7 x 12 bits x 11.72 Hz = 984.4
    "32k": (32000, 384, 1900.0, False),  # published "1.9 kbps"; exact 1875
    "44k": (44100, 384, 2600.0, False),  # published "2.6 kbps"; exact 2584
}
SPEECHTOKENIZER_PUBLISHED = {1: 500.0, 8: 4000.0}
SPEECHTOKENIZER_MAX_Q = 8
WAVTOKENIZER_MODELS = {"40": (600, 480.0), "75": (320, 900.0)}
"""WavTokenizer setting (tokens/s) -> (hop at 24 kHz, published bit/s)."""


def _settings() -> dict[str, NeuralSetting]:
    """Every canonical spec and its setting."""
    out: dict[str, NeuralSetting] = {}
    for s, bw in ENCODEC_BANDWIDTHS.items():
        n_q = int(round(bw * 1000 / (75 * 10)))
        out[f"encodec@{s}"] = NeuralSetting(f"encodec@{s}", "encodec", ENCODEC_24K, 24000, 320, n_q,
                                            bw * 1000, option=bw)
    for s, (sr, hop, n_q, published) in DAC_MODELS.items():
        out[f"dac@{s}"] = NeuralSetting(f"dac@{s}", "dac", DAC_SOURCES[s], sr, hop, n_q, published)
    for n_q, published in MIMI_PUBLISHED.items():
        out[f"mimi@{n_q}"] = NeuralSetting(f"mimi@{n_q}", "mimi", MIMI, 24000, 1920, n_q, published)
    for s, (sr, hop, published, canonical) in SNAC_MODELS.items():
        out[f"snac@{s}"] = NeuralSetting(f"snac@{s}", "snac", SNAC_SOURCES[s], sr, hop, 0, published, canonical)
    for n_q, published in SPEECHTOKENIZER_PUBLISHED.items():
        out[f"speechtokenizer@{n_q}"] = NeuralSetting(f"speechtokenizer@{n_q}", "speechtokenizer",
                                                      SPEECHTOKENIZER, 16000, 320, n_q, published)
    for s, (hop, published) in WAVTOKENIZER_MODELS.items():
        out[f"wavtokenizer@{s}"] = NeuralSetting(f"wavtokenizer@{s}", "wavtokenizer", WAVTOKENIZER_SOURCES[s],
                                                 24000, hop, 1, published)
    return out


SETTINGS = _settings()
FAMILIES = ("encodec", "dac", "mimi", "snac", "speechtokenizer", "wavtokenizer")


def specs() -> list[str]:
    """Every canonical spec this module offers (available or not), for `--codecs all`."""
    return [s for s, st in SETTINGS.items() if st.canonical]


def parse_spec(spec: str) -> NeuralSetting:
    """The setting named by `spec`, including the non-canonical forms `dac@44k-4q`, `mimi@N`
    and `speechtokenizer@N`.

    Raises:
        ValueError: unknown family or setting; the message lists the valid forms.
    """
    spec = spec.strip()
    if spec in SETTINGS:
        return SETTINGS[spec]
    family, _, setting = spec.partition("@")
    if family == "dac" and (m := re.fullmatch(r"(16k|24k|44k)-(\d+)q", setting)):
        sr, hop, max_q, _ = DAC_MODELS[m.group(1)]
        n_q = int(m.group(2))
        if 1 <= n_q <= max_q:
            return NeuralSetting(spec, "dac", DAC_SOURCES[m.group(1)], sr, hop, n_q, None, canonical=False)
    if family == "mimi" and setting.isdigit() and 1 <= int(setting) <= MIMI_MAX_Q:
        return NeuralSetting(spec, "mimi", MIMI, 24000, 1920, int(setting), None, canonical=False)
    if family == "speechtokenizer" and setting.isdigit() and 1 <= int(setting) <= SPEECHTOKENIZER_MAX_Q:
        return NeuralSetting(spec, "speechtokenizer", SPEECHTOKENIZER, 16000, 320, int(setting), None,
                             canonical=False)
    if family in FAMILIES:
        valid = [s for s in SETTINGS if s.startswith(family + "@")]
        extra = {
            "dac": "dac@<16k|24k|44k>-<N>q (N up to 12/32/9 codebooks)",
            "mimi": f"mimi@<N> (1..{MIMI_MAX_Q} codebooks)",
            "speechtokenizer": f"speechtokenizer@<N> (1..{SPEECHTOKENIZER_MAX_Q} codebooks)",
        }.get(family)
        raise ValueError(f"unknown setting in codec spec '{spec}'; valid {family} specs: {', '.join(valid)}"
                         + (f", or {extra}" if extra else ""))
    raise ValueError(f"unknown neural codec family in spec '{spec}'; families: {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------------------------
# Weights: location, hashing, optional packages
# --------------------------------------------------------------------------------------------


def weights_roots(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for weights: `weights_dir`, then `$JEPA_DAAM_WEIGHTS` (deduplicated)."""
    roots = [Path(p).expanduser() for p in (weights_dir, os.environ.get(WEIGHTS_ENV)) if p]
    return list(dict.fromkeys(roots))


def _hf_cache_folder(source: WeightsSource) -> Path | None:
    """The snapshot folder of `source` in the local Hugging Face cache, or None (never networks)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    first = f"{source.subfolder}/{source.required[0][0]}" if source.subfolder else source.required[0][0]
    found = try_to_load_from_cache(source.repo_id, first)
    return Path(found).parent if isinstance(found, str) else None


def find_weights(spec: str, source: WeightsSource, weights_dir: str | os.PathLike[str] | None = None,
                 use_hf_cache: bool = True) -> Path:
    """The first folder holding every required file of `source`.

    Searched in order: each `weights_roots(weights_dir)` candidate (`WeightsSource.candidates`),
    then the local Hugging Face cache (when `use_hf_cache`).

    Raises:
        CodecUnavailable: nothing complete found; the message names the folder and files to
            create, what was searched (and what an incomplete folder lacks), and how to download.
    """
    searched: list[str] = []
    roots = weights_roots(weights_dir)
    folders = [c for r in roots for c in source.candidates(r)]
    cached = _hf_cache_folder(source) if use_hf_cache else None
    for folder in [*folders, *([cached] if cached else [])]:
        if folder.is_dir():
            lacking = source.missing(folder)
            if not lacking:
                return folder
            searched.append(f"{folder} (lacks {', '.join(lacking)})")
        else:
            searched.append(str(folder))
    if use_hf_cache and cached is None:
        searched.append(f"Hugging Face cache (no {source.repo_id})")
    files = " and ".join(" or ".join(group) for group in source.required)
    target = source.candidates(roots[0])[0] if roots else Path(f"${WEIGHTS_ENV}") / source.repo_id / source.subfolder
    get = source.how_to_get or (
        f"on a machine with internet access run `hf download {source.repo_id} --local-dir "
        f"<dir>/{source.repo_id}` and copy that folder here"
    )
    where = "" if roots else f" (set {WEIGHTS_ENV} or pass a weights folder)"
    raise CodecUnavailable(
        f"{spec}: weights not found. Put {files} into {target}{where}; {get}. Searched: {'; '.join(searched)}"
    )


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of one file (cached per path, size and modification time)."""
    return file_sha256(path)


def hash_files(files: Sequence[Path]) -> str:
    """sha256 over (file name, file sha256) of `files`, in the given order: 16 hex digits."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(p.name.encode() + b"\0" + _file_digest(str(p), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def hash_state_dict(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict: 16 hex digits."""
    return state_dict_sha256(model.state_dict())[:16]


def _require(module: str, spec: str, hint: str) -> types.ModuleType:
    """Import an optional package or raise CodecUnavailable with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise CodecUnavailable(f"{spec} needs the '{module.split('.')[0]}' package: {hint} ({e})") from e


def _transformers_class(name: str, spec: str) -> Any:
    """A model class from `transformers` (CodecUnavailable when absent or too old)."""
    transformers = _require("transformers", spec, TRANSFORMERS_HINT)
    cls = getattr(transformers, name, None)
    if cls is None:
        raise CodecUnavailable(f"{spec} needs transformers.{name}, which transformers "
                               f"{transformers.__version__} lacks: {TRANSFORMERS_HINT}")
    return cls


def speechtokenizer_model_module(spec: str = "speechtokenizer") -> types.ModuleType:
    """`speechtokenizer.model` imported without running the package's `__init__`.

    The package's `__init__` imports its trainer (torchaudio, accelerate, beartype, lion-pytorch,
    tensorboard); the model itself needs only torch, numpy and einops. The package folder is
    mounted under a private name so the real `speechtokenizer` module is never half-imported.
    """
    alias = "_jepa_daam_speechtokenizer"
    if f"{alias}.model" in sys.modules:
        return sys.modules[f"{alias}.model"]
    found = importlib.util.find_spec("speechtokenizer")
    if found is None or not found.submodule_search_locations:
        raise CodecUnavailable(f"{spec} needs the 'speechtokenizer' package: {SPEECHTOKENIZER_HINT}")
    _require("einops", spec, SPEECHTOKENIZER_HINT)
    package = types.ModuleType(alias)
    package.__path__ = list(found.submodule_search_locations)
    sys.modules[alias] = package
    try:
        return importlib.import_module(f"{alias}.model")
    except ImportError as e:
        del sys.modules[alias]
        raise CodecUnavailable(f"{spec}: speechtokenizer's model modules failed to import ({e}); "
                               f"{SPEECHTOKENIZER_HINT}") from e


# --------------------------------------------------------------------------------------------
# The common codec plumbing
# --------------------------------------------------------------------------------------------


def _check_wav(wav: torch.Tensor, name: str) -> torch.Tensor:
    """Validate an encoder input and return it as float32 [T] on the CPU (not modified later)."""
    if not isinstance(wav, torch.Tensor):
        raise ValueError(f"{name}.encode expects a torch.Tensor of shape [T], got {type(wav).__name__}")
    if wav.dim() != 1:
        raise ValueError(f"{name}.encode expects a mono waveform of shape [T], got shape {tuple(wav.shape)}")
    x = wav.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}.encode: input waveform contains NaN or Inf")
    return x


class NeuralCodec:
    """Shared encode/decode plumbing for one neural codec at one setting.

    A subclass supplies `_encode_tokens` (waveforms [B, 1, L] -> codes [B, S, T]) and
    `_decode_tokens` (codes [B, S, T] -> waveforms [B, L']); this class validates inputs, batches
    utterances of different lengths (right zero-padding), slices each utterance's frames, counts
    codec padding frames, moves tensors between devices and trims decoded audio to length.

    Args:
        name: canonical spec ("encodec@6k").
        model: the torch module (moved to `device`, put in eval mode).
        sample_rate: native rate in Hz.
        frame_hop: input samples per token frame (for folded multi-rate codecs: per coarsest frame).
        vocab_sizes: one vocabulary size per row of the codes.
        nominal: published bitrate in bit/s; None = the exact stream rate of the tokens.
        device: torch device for the model and the computation.
        weights_files: files the weights came from (hashed for `weights_hash`); None = hash
            the in-memory state dict.
        stream_groups: level of each row for folded multi-rate codecs (empty otherwise).
        pad_multiple: the model pads its input to a multiple of this many samples (1 = no
            padding beyond the last partial frame); frames beyond ceil(L / frame_hop) are
            reported as `Encoded.padded_frames`.
    """

    def __init__(self, name: str, model: torch.nn.Module, *, sample_rate: int, frame_hop: int,
                 vocab_sizes: Sequence[int], nominal: float | None, device: str | torch.device = "cpu",
                 weights_files: Sequence[Path] | None = None, stream_groups: Sequence[int] = (),
                 pad_multiple: int = 1) -> None:
        self.name = name
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        self.sample_rate = int(sample_rate)
        self.frame_hop = int(frame_hop)
        self.frame_rate = self.sample_rate / self.frame_hop
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.stream_groups = tuple(int(g) for g in stream_groups)
        self.pad_multiple = int(pad_multiple)
        self._nominal = nominal
        self._weights_files = None if weights_files is None else tuple(weights_files)
        self._weights_hash: str | None = None

    # ---- hooks -------------------------------------------------------------------------------

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, 1, L] on `self.device` -> int64 codes [B, S, T]."""
        raise NotImplementedError

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 codes [B, S, T] on `self.device` -> waveforms [B, L'] (L' >= roughly T * frame_hop)."""
        raise NotImplementedError

    def _input_length(self, num_samples: int) -> int:
        """Samples the model is fed for an input of `num_samples` (default: as is, the library
        handles a partial last frame itself)."""
        return num_samples

    # ---- frame arithmetic ----------------------------------------------------------------------

    def payload_frames(self, num_samples: int) -> int:
        """Frames that carry input audio: ceil(num_samples / frame_hop)."""
        return -(-num_samples // self.frame_hop)

    def total_frames(self, num_samples: int) -> int:
        """Frames the model emits for `num_samples`, including frames of codec padding."""
        padded = -(-num_samples // self.pad_multiple) * self.pad_multiple
        return -(-padded // self.frame_hop)

    @property
    def hop_length(self) -> int:
        """Input samples per frame of the model's finest token stream (= `frame_hop` here)."""
        return self.frame_hop

    # ---- public API --------------------------------------------------------------------------

    @property
    def weights_hash(self) -> str:
        """16 hex digits identifying the weights (sha256 of the weight files, or of the state dict)."""
        if self._weights_hash is None:
            self._weights_hash = (hash_state_dict(self.model) if self._weights_files is None
                                  else hash_files(self._weights_files))
        return self._weights_hash

    def nominal_bitrate(self) -> float:
        """The published bitrate (bit/s); for non-canonical settings the exact stream rate."""
        if self._nominal is not None:
            return float(self._nominal)
        return self.frame_rate * sum(math.log2(v) for v in self.vocab_sizes)

    def encode(self, wav: torch.Tensor) -> Encoded:
        """Encode a mono waveform [T] (float32 at `sample_rate`) into codes [S, n_frames] int64."""
        return self.encode_batch([wav])[0]

    def encode_batch(self, wavs: Sequence[torch.Tensor]) -> list[Encoded]:
        """Encode several mono waveforms [T_i] in one forward pass (right zero-padded to the longest).

        A single waveform is fed exactly as the library expects it. In a batch, a shorter
        utterance is zero-padded: with non-causal encoders (DAC, SNAC, SpeechTokenizer,
        WavTokenizer) its last frames can then differ slightly from encoding it alone; the causal
        ones (EnCodec 24 kHz, Mimi) give identical codes.
        """
        xs = [_check_wav(w, self.name) for w in wavs]
        lengths = [int(x.shape[0]) for x in xs]
        out: list[Encoded | None] = [None] * len(xs)
        active = [i for i, n in enumerate(lengths) if n > 0]
        if active:
            width = max(self._input_length(lengths[i]) for i in active)
            batch = torch.zeros(len(active), 1, width)
            for row, i in enumerate(active):
                batch[row, 0, : lengths[i]] = xs[i]
            with torch.inference_mode():
                codes = self._encode_tokens(batch.to(self.device)).to("cpu", torch.int64)
            expected = max(self.total_frames(lengths[i]) for i in active)
            if codes.shape[-1] != expected:
                raise RuntimeError(f"{self.name}: model returned {codes.shape[-1]} frames for {width} samples, "
                                   f"expected {expected}; the frame arithmetic of this adapter is wrong")
            for row, i in enumerate(active):
                out[i] = self._wrap(codes[row], lengths[i])
        for i, n in enumerate(lengths):
            if n == 0:
                out[i] = Encoded(torch.zeros(len(self.vocab_sizes), 0, dtype=torch.int64), self.vocab_sizes,
                                 self.frame_rate, None, 0, stream_groups=self.stream_groups)
        return [e for e in out if e is not None]

    def _wrap(self, codes: torch.Tensor, num_samples: int) -> Encoded:
        """codes [S, T_batch] of one utterance -> its `Encoded` (own frames only)."""
        total = self.total_frames(num_samples)
        if codes.shape[1] < total or codes.shape[0] != len(self.vocab_sizes):
            raise RuntimeError(f"{self.name}: model returned codes of shape {tuple(codes.shape)} for "
                               f"{num_samples} samples; expected [{len(self.vocab_sizes)}, >= {total}]")
        codes = codes[:, :total].contiguous()
        return Encoded(codes=codes, vocab_sizes=self.vocab_sizes, frame_rate=self.frame_rate,
                       payload_bytes=None, num_samples=num_samples,
                       padded_frames=total - self.payload_frames(num_samples), stream_groups=self.stream_groups)

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Decode to a float32 waveform [enc.num_samples] at `sample_rate` (CPU)."""
        return self.decode_batch([enc])[0]

    def decode_batch(self, encs: Sequence[Encoded]) -> list[torch.Tensor]:
        """Decode several `Encoded` in one pass (codes right-padded with token 0 to the longest)."""
        for e in encs:
            self._check_encoded(e)
        out = [torch.zeros(e.num_samples) for e in encs]
        active = [i for i, e in enumerate(encs) if e.codes.shape[1] > 0]
        if active:
            width = max(encs[i].codes.shape[1] for i in active)
            codes = torch.zeros(len(active), len(self.vocab_sizes), width, dtype=torch.int64)
            for row, i in enumerate(active):
                codes[row, :, : encs[i].codes.shape[1]] = encs[i].codes
            with torch.inference_mode():
                wav = self._decode_tokens(codes.to(self.device)).to("cpu", torch.float32)
            for row, i in enumerate(active):
                n = min(encs[i].num_samples, wav.shape[-1])
                out[i][:n] = wav[row, :n]
        return out

    def _check_encoded(self, enc: Encoded) -> None:
        if enc.codes is None or tuple(enc.vocab_sizes) != self.vocab_sizes:
            raise ValueError(f"{self.name}.decode: Encoded has vocab_sizes {enc.vocab_sizes}, expected "
                             f"{self.vocab_sizes} (was it made by another codec?)")
        if enc.codes.numel() == 0:
            return
        lo, hi = int(enc.codes.min()), int(enc.codes.max())
        if lo < 0 or hi >= min(self.vocab_sizes):
            raise ValueError(f"{self.name}.decode: token ids span [{lo}, {hi}], outside [0, {min(self.vocab_sizes)})")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, sample_rate={self.sample_rate}, "
                f"frame_rate={self.frame_rate:g}, streams={len(self.vocab_sizes)}, device={self.device})")


# --------------------------------------------------------------------------------------------
# One adapter per family
# --------------------------------------------------------------------------------------------


def _check_n_q(name: str, n_q: int, available: int) -> int:
    """`n_q` if the model has that many codebooks, else ValueError naming the valid range."""
    if not 1 <= n_q <= available:
        raise ValueError(f"{name}: {n_q} codebooks requested, the model has 1..{available}")
    return n_q


class EncodecCodec(NeuralCodec):
    """EnCodec (transformers `EncodecModel`, 24 kHz, no chunking) at one target bandwidth.

    Args:
        bandwidth: target bandwidth in kbit/s; must be in `config.target_bandwidths`.
        (others: see `NeuralCodec`.)
    """

    def __init__(self, name: str, model: torch.nn.Module, bandwidth: float, **kw: Any) -> None:
        cfg = model.config
        if bandwidth not in cfg.target_bandwidths:
            raise ValueError(f"{name}: bandwidth {bandwidth} kbit/s not in the model's {cfg.target_bandwidths}")
        if cfg.chunk_length_s is not None:
            raise ValueError(f"{name}: chunked EnCodec models (chunk_length_s={cfg.chunk_length_s}, e.g. 48 kHz) "
                             "are not supported; use the 24 kHz model")
        self.bandwidth = float(bandwidth)
        n_q = model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth)
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.hop_length,
                         vocab_sizes=[cfg.codebook_size] * n_q, **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, bandwidth=self.bandwidth).audio_codes[0]  # [1, B, S, T] -> [B, S, T]

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes[None], [None]).audio_values[:, 0]


class DacCodec(NeuralCodec):
    """Descript Audio Codec (transformers `DacModel`) using its first `n_q` codebooks.

    The input is zero-padded to a whole number of hops (as DAC's own `preprocess` does).
    """

    def __init__(self, name: str, model: torch.nn.Module, n_q: int, **kw: Any) -> None:
        cfg = model.config
        self.n_q = _check_n_q(name, n_q, cfg.n_codebooks)
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.hop_length,
                         vocab_sizes=[cfg.codebook_size] * n_q, **kw)

    def _input_length(self, num_samples: int) -> int:
        """Whole hops: DAC's reference `preprocess` right-pads with zeros to a multiple of the hop."""
        return -(-num_samples // self.frame_hop) * self.frame_hop

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, n_quantizers=self.n_q).audio_codes[:, : self.n_q]

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(audio_codes=codes).audio_values


class MimiCodec(NeuralCodec):
    """Kyutai Mimi (transformers `MimiModel`) with its first `n_q` codebooks (first = semantic)."""

    def __init__(self, name: str, model: torch.nn.Module, n_q: int, **kw: Any) -> None:
        cfg = model.config
        self.n_q = _check_n_q(name, n_q, cfg.num_quantizers)
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.frame_size,
                         vocab_sizes=[cfg.codebook_size] * n_q, **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, num_quantizers=self.n_q).audio_codes

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes).audio_values[:, 0]


class WavTokenizerCodec(NeuralCodec):
    """WavTokenizer (transformers `WavTokenizerModel`): one codebook, Vocos-style decoder."""

    def __init__(self, name: str, model: torch.nn.Module, **kw: Any) -> None:
        cfg = model.config
        super().__init__(name, model, sample_rate=cfg.sampling_rate, frame_hop=cfg.hop_length,
                         vocab_sizes=[cfg.codebook_size], **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x).audio_codes

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes).audio_values[:, 0]


class SnacCodec(NeuralCodec):
    """SNAC (the `snac` package): one RVQ level per temporal resolution, folded to the coarsest.

    Level i runs at sample_rate / (hop * vq_strides[i]); the codes are `fold_multirate`-ed into
    sum_i(vq_strides[0] / vq_strides[i]) rows at the coarsest rate (1 + 2 + 4 = 7 rows at
    11.72 Hz for snac_24khz). SNAC pads its input to a multiple of hop * lcm(vq_strides[0],
    attn_window_size); whole coarse frames of that padding are `Encoded.padded_frames`.
    """

    def __init__(self, name: str, model: torch.nn.Module, **kw: Any) -> None:
        strides = [int(s) for s in model.vq_strides]
        hop = int(model.hop_length)
        ratios = [strides[0] // s for s in strides]
        groups = [g for g, r in enumerate(ratios) for _ in range(r)]
        pad = hop * math.lcm(strides[0], int(model.attn_window_size or 1))
        self._level_hop = hop
        super().__init__(name, model, sample_rate=model.sampling_rate, frame_hop=hop * strides[0],
                         vocab_sizes=[model.codebook_size] * len(groups), stream_groups=groups,
                         pad_multiple=pad, **kw)

    @property
    def hop_length(self) -> int:
        """Input samples per frame of the finest level (512 for snac_24khz)."""
        return self._level_hop

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        from metrics.tokens import fold_multirate

        levels = self.model.encode(x)  # list of [B, T_i]
        return torch.stack([fold_multirate([lv[b] for lv in levels])[0] for b in range(x.shape[0])])

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        from metrics.tokens import unfold_multirate

        per_item = [unfold_multirate(c, self.stream_groups) for c in codes]  # B x levels x [T_i]
        levels = [torch.stack([item[i] for item in per_item]) for i in range(len(per_item[0]))]
        return self.model.decode(levels)[:, 0]


class SpeechTokenizerCodec(NeuralCodec):
    """SpeechTokenizer (RVQ with a HuBERT-distilled first layer) using its first `n_q` layers."""

    def __init__(self, name: str, model: torch.nn.Module, n_q: int, **kw: Any) -> None:
        self.n_q = _check_n_q(name, n_q, model.n_q)
        super().__init__(name, model, sample_rate=model.sample_rate, frame_hop=int(model.downsample_rate),
                         vocab_sizes=[int(model.quantizer.bins)] * n_q, **kw)

    def _encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, n_q=self.n_q).permute(1, 0, 2)  # [S, B, T] -> [B, S, T]

    def _decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes.permute(1, 0, 2))[:, 0]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_MODEL_CACHE: dict[tuple[str, str, str], torch.nn.Module] = {}
"""(family, weights folder, device) -> loaded model, shared by the settings of one model."""


def clear_model_cache() -> None:
    """Forget every loaded model (frees their memory once no codec holds them)."""
    _MODEL_CACHE.clear()


def _load_transformers(class_name: str) -> Callable[[Path, str], torch.nn.Module]:
    def load(folder: Path, spec: str) -> torch.nn.Module:
        cls = _transformers_class(class_name, spec)
        return cls.from_pretrained(str(folder), local_files_only=True)
    return load


def _load_snac(folder: Path, spec: str) -> torch.nn.Module:
    snac = _require("snac", spec, SNAC_HINT)
    model = snac.SNAC.from_config(str(folder / "config.json"))
    model.load_state_dict(torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True))
    return model


def _load_speechtokenizer(folder: Path, spec: str) -> torch.nn.Module:
    import json

    module = speechtokenizer_model_module(spec)
    config = json.loads((folder / "config.json").read_text())
    model = module.SpeechTokenizer(config)
    model.load_state_dict(torch.load(folder / "SpeechTokenizer.pt", map_location="cpu", weights_only=True))
    return model


LOADERS: dict[str, Callable[[Path, str], torch.nn.Module]] = {
    "encodec": _load_transformers("EncodecModel"),
    "dac": _load_transformers("DacModel"),
    "mimi": _load_transformers("MimiModel"),
    "wavtokenizer": _load_transformers("WavTokenizerModel"),
    "snac": _load_snac,
    "speechtokenizer": _load_speechtokenizer,
}


def _check_architecture(setting: NeuralSetting, codec: NeuralCodec, folder: Path) -> None:
    """The loaded model must be the one the spec names (sample rate, hop, codebooks)."""
    problems = []
    if codec.sample_rate != setting.sample_rate:
        problems.append(f"sample rate {codec.sample_rate} Hz (expected {setting.sample_rate})")
    if codec.hop_length != setting.hop_length:
        problems.append(f"hop {codec.hop_length} samples (expected {setting.hop_length})")
    if setting.family != "snac" and len(codec.vocab_sizes) != setting.n_q:
        problems.append(f"{len(codec.vocab_sizes)} codebooks in use (expected {setting.n_q})")
    if problems:
        raise CodecUnavailable(f"{setting.spec}: the model in {folder} is not {setting.source.repo_id}: "
                               + "; ".join(problems))


def make_codec(setting: NeuralSetting, model: torch.nn.Module, device: str = "cpu",
               weights_files: Sequence[Path] | None = None) -> NeuralCodec:
    """Wrap an already constructed `model` as the codec of `setting` (no architecture checks)."""
    kw: dict[str, Any] = {"nominal": setting.nominal, "device": device, "weights_files": weights_files}
    if setting.family == "encodec":
        return EncodecCodec(setting.spec, model, setting.option, **kw)
    if setting.family == "dac":
        return DacCodec(setting.spec, model, setting.n_q, **kw)
    if setting.family == "mimi":
        return MimiCodec(setting.spec, model, setting.n_q, **kw)
    if setting.family == "wavtokenizer":
        return WavTokenizerCodec(setting.spec, model, **kw)
    if setting.family == "snac":
        return SnacCodec(setting.spec, model, **kw)
    if setting.family == "speechtokenizer":
        return SpeechTokenizerCodec(setting.spec, model, setting.n_q, **kw)
    raise ValueError(f"unknown neural codec family '{setting.family}'; families: {', '.join(FAMILIES)}")


def build(spec: str, device: str = "cpu", weights_dir: str | os.PathLike[str] | None = None) -> NeuralCodec:
    """Build the neural codec named by `spec` from local weights.

    Args:
        spec: e.g. "encodec@6k", "dac@44k", "mimi@8", "snac@24k"; see `specs()` and `parse_spec`.
        device: "cpu", "cuda", "cuda:N" or "auto".
        weights_dir: folder holding `<repo id>/` weight folders; searched before
            `$JEPA_DAAM_WEIGHTS` and the Hugging Face cache.

    Raises:
        ValueError: unknown family or setting (message lists the valid ones) or bad device.
        CodecUnavailable: package or weights missing (message says what to install or put where),
            or the weights folder holds another model than the spec names.
    """
    setting = parse_spec(spec)
    dev = resolve_device(device)
    folder = find_weights(setting.spec, setting.source, weights_dir)
    key = (setting.family, str(folder.resolve()), str(dev))
    model = _MODEL_CACHE.get(key)
    if model is None:
        try:
            model = LOADERS[setting.family](folder, setting.spec)
        except CodecUnavailable:
            raise
        except Exception as e:  # corrupt or mismatched files: say which folder
            raise CodecUnavailable(f"{setting.spec}: loading the weights in {folder} failed: "
                                   f"{type(e).__name__}: {e}") from e
        model = model.to(dev).eval()
        _MODEL_CACHE[key] = model
    try:
        codec = make_codec(setting, model, str(dev), weights_files=setting.source.files_in(folder))
    except ValueError as e:
        raise CodecUnavailable(f"{setting.spec}: the model in {folder} does not support this setting: {e}") from e
    _check_architecture(setting, codec, folder)
    return codec
