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

One module per job: `settings` (the table above, the spec parser), `weights` (finding and
hashing local weights), `codec` (the shared encode/decode plumbing, `NeuralCodec`), `adapters`
(one class per family) and `loading` (optional packages, model loaders, `build`). Every import
of a model library is lazy.

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

from baselines.neural.adapters import (
    DacCodec,
    EncodecCodec,
    MimiCodec,
    SnacCodec,
    SpeechTokenizerCodec,
    WavTokenizerCodec,
    make_codec,
)
from baselines.neural.codec import NeuralCodec
from baselines.neural.loading import LOADERS, build, clear_model_cache, speechtokenizer_model_module
from baselines.neural.settings import (
    DAC_SOURCES,
    ENCODEC_24K,
    FAMILIES,
    MIMI,
    SETTINGS,
    SNAC_SOURCES,
    SPEECHTOKENIZER,
    WAVTOKENIZER_SOURCES,
    NeuralSetting,
    parse_spec,
    specs,
)
from baselines.neural.weights import WEIGHTS_ENV, WeightsSource, find_weights, hash_files, weights_roots

__all__ = [
    "DAC_SOURCES",
    "ENCODEC_24K",
    "FAMILIES",
    "LOADERS",
    "MIMI",
    "SETTINGS",
    "SNAC_SOURCES",
    "SPEECHTOKENIZER",
    "WAVTOKENIZER_SOURCES",
    "WEIGHTS_ENV",
    "DacCodec",
    "EncodecCodec",
    "MimiCodec",
    "NeuralCodec",
    "NeuralSetting",
    "SnacCodec",
    "SpeechTokenizerCodec",
    "WavTokenizerCodec",
    "WeightsSource",
    "build",
    "clear_model_cache",
    "find_weights",
    "hash_files",
    "make_codec",
    "parse_spec",
    "specs",
    "speechtokenizer_model_module",
    "weights_roots",
]
