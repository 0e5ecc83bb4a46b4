"""The neural codecs' settings: one :class:`NeuralSetting` per spec string, and the spec parser.

Every number here is the published configuration of the model (sample rate, hop, codebooks,
bitrate); ``baselines.neural.loading`` checks the loaded weights against it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from baselines.neural.weights import WeightsSource

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
