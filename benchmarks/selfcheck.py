"""Self-checks: cheap tests that a codec really codes its input, run before its rows are trusted.

Four checks on two real utterances (A and B, cut to the same length, at most
:data:`CLIP_SECONDS`) and on digital silence, at the codec's own sample rate:

| check (name when it fails) | passes when |
|---|---|
| ``output ignores input`` | the reconstructions of A and B differ (relative RMS difference >= :data:`MIN_OUTPUT_DIFFERENCE`), **and** A's own reconstruction is closer to A than B's reconstruction is (decoding another utterance's tokens must not score like the own ones): log-mel distance own <= :data:`MAX_OWN_TO_SWAPPED` x swapped, for A and for B |
| ``silence in, sound out`` | encoding digital silence decodes to near-silence: RMS <= :data:`SILENCE_MAX_DBFS` dBFS, or at least :data:`SILENCE_BELOW_SPEECH_DB` dB below the codec's output for speech |
| ``encoding not deterministic`` | encoding A twice gives identical tokens (token codecs) and the same payload size and decoded waveform |
| ``output length differs`` | every decoded waveform has exactly as many samples as its input |

A codec whose ``encode``/``decode`` raises during a check fails that check, with the error as
detail. :func:`self_check` returns a :class:`SelfCheckReport`; ``report.status`` is ``"ok"`` or the
failed check names joined by ``"; "`` -- the ``self_check`` column of the summary tables.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from audiocore.audio import resample
from audiocore.codec import Codec, Encoded
from metrics.signal import mel_distance

__all__ = ["CHECK_NAMES", "CheckResult", "SelfCheckReport", "self_check", "clips_from"]

CLIP_SECONDS = 3.0
"""Longest clip used per utterance (seconds); both clips are cut to the shorter of the two."""
MIN_OUTPUT_DIFFERENCE = 0.05
"""Reconstructions of two different utterances must differ by at least this relative RMS."""
MAX_OWN_TO_SWAPPED = 0.9
"""Own log-mel distance must be at most this fraction of the swapped one."""
SILENCE_MAX_DBFS = -45.0
"""Output RMS for digital silence that always passes."""
SILENCE_BELOW_SPEECH_DB = 30.0
"""Or: the output for silence lies this many dB below the output for speech."""

IGNORES_INPUT = "output ignores input"
NOISY_SILENCE = "silence in, sound out"
NONDETERMINISTIC = "encoding not deterministic"
LENGTH = "output length differs"
CHECK_NAMES = (IGNORES_INPUT, NOISY_SILENCE, NONDETERMINISTIC, LENGTH)
"""Every check's name, in report order."""


@dataclass
class CheckResult:
    """One check: ``passed`` and a one-line ``detail`` with the numbers it looked at."""

    name: str
    passed: bool
    detail: str


@dataclass
class SelfCheckReport:
    """All checks of one codec.

    Attributes:
        codec: the codec spec.
        checks: one :class:`CheckResult` per check, in :data:`CHECK_NAMES` order.
        clips: ids of the two utterances used.
        seconds: wall time of the checks.
    """

    codec: str
    checks: list[CheckResult] = field(default_factory=list)
    clips: tuple[str, str] = ("", "")
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [c.name for c in self.checks if not c.passed]

    @property
    def status(self) -> str:
        """``"ok"`` or the failed check names joined by ``"; "``."""
        return "; ".join(self.failed) or "ok"

    def line(self) -> str:
        """One line for stdout: ``self-check CODEC: ok`` or the failures with their details."""
        if not self.failed:
            return f"self-check {self.codec}: ok"
        return f"self-check {self.codec}: FAILED " + "; ".join(f"{c.name} ({c.detail})" for c in self.checks if not c.passed)

    def to_json(self) -> dict[str, Any]:
        return {"codec": self.codec, "status": self.status, "clips": list(self.clips),
                "seconds": round(self.seconds, 3), "checks": [asdict(c) for c in self.checks]}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _dbfs(x: np.ndarray) -> float:
    r = _rms(x)
    return 20 * math.log10(r) if r > 0 else -math.inf


def _round_trip(codec: Codec, x: np.ndarray) -> tuple[Encoded, np.ndarray]:
    with torch.inference_mode():
        enc = codec.encode(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        y = codec.decode(enc)
    return enc, y.detach().to("cpu", torch.float32).reshape(-1).numpy()


def _guard(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    try:
        return fn()
    except Exception as exc:  # a codec that crashes on a check input fails that check
        return CheckResult(name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")


def clips_from(waves: Sequence[tuple[str, np.ndarray, int]], sample_rate: int,
               seconds: float = CLIP_SECONDS) -> tuple[tuple[str, str], np.ndarray, np.ndarray]:
    """Two equal-length clips at ``sample_rate`` from (id, waveform [T], rate) utterances.

    With one utterance, its two halves are used. Raises ValueError without any audio.
    """
    if not waves:
        raise ValueError("self-check needs at least one utterance")
    xs = [(uid, resample(np.asarray(w, np.float32), sr, sample_rate)) for uid, w, sr in waves[:2]]
    if len(xs) == 1:
        uid, x = xs[0]
        half = x.shape[0] // 2
        xs = [(f"{uid}[first half]", x[:half]), (f"{uid}[second half]", x[half:2 * half])]
    n = min(int(seconds * sample_rate), xs[0][1].shape[0], xs[1][1].shape[0])
    return (xs[0][0], xs[1][0]), xs[0][1][:n].copy(), xs[1][1][:n].copy()


def self_check(codec: Codec, waves: Sequence[tuple[str, np.ndarray, int]]) -> SelfCheckReport:
    """Run every check on ``codec`` with two real utterances.

    Args:
        codec: the codec under test.
        waves: (utterance id, mono float32 waveform [T], sample rate) of at least one real
            utterance (the first two are used; their content must differ).

    Returns:
        the report (never raises for codec failures; they fail the check concerned).
    """
    import time

    t0 = time.perf_counter()
    sr = int(codec.sample_rate)
    ids, a, b = clips_from(waves, sr)
    report = SelfCheckReport(codec=codec.name, clips=ids)
    outputs: dict[str, Any] = {}

    def trip(key: str, x: np.ndarray) -> tuple[Encoded, np.ndarray]:
        if key not in outputs:
            outputs[key] = _round_trip(codec, x)
        return outputs[key]

    def ignores_input() -> CheckResult:
        (_, ya), (_, yb) = trip("a", a), trip("b", b)
        n = min(ya.shape[0], yb.shape[0])
        scale = max(_rms(ya[:n]), _rms(yb[:n]), 1e-12)
        diff = _rms(ya[:n] - yb[:n]) / scale
        own_a, swap_a = mel_distance(a, ya, sr).value, mel_distance(a, yb, sr).value
        own_b, swap_b = mel_distance(b, yb, sr).value, mel_distance(b, ya, sr).value
        ratios = [o / s if s > 0 else math.inf for o, s in ((own_a, swap_a), (own_b, swap_b))]
        ok = diff >= MIN_OUTPUT_DIFFERENCE and all(r <= MAX_OWN_TO_SWAPPED for r in ratios)
        return CheckResult(IGNORES_INPUT, ok, f"outputs for two utterances differ by {100 * diff:.3g} % RMS; "
                           f"log-mel distance own/swapped {own_a:.3g}/{swap_a:.3g} and {own_b:.3g}/{swap_b:.3g}")

    def silence() -> CheckResult:
        _, yz = trip("zero", np.zeros_like(a))
        _, ya = trip("a", a)
        level, speech = _dbfs(yz), _dbfs(ya)
        ok = level <= SILENCE_MAX_DBFS or level <= speech - SILENCE_BELOW_SPEECH_DB
        return CheckResult(NOISY_SILENCE, ok, f"silence decodes to {level:.1f} dBFS, speech to {speech:.1f} dBFS")

    def deterministic() -> CheckResult:
        enc1, y1 = trip("a", a)
        enc2, y2 = _round_trip(codec, a)
        problems = []
        if (enc1.codes is None) != (enc2.codes is None) or (
                enc1.codes is not None and not torch.equal(enc1.codes.cpu(), enc2.codes.cpu())):
            problems.append("tokens differ")
        if enc1.payload_bytes != enc2.payload_bytes:
            problems.append(f"payload {enc1.payload_bytes} vs {enc2.payload_bytes} bytes")
        if y1.shape != y2.shape or not np.allclose(y1, y2, atol=1e-6, rtol=0):
            problems.append("decoded waveforms differ")
        return CheckResult(NONDETERMINISTIC, not problems, "; ".join(problems) or "identical tokens and output")

    def length() -> CheckResult:
        bad = [f"{key}: {y.shape[0]} samples for {x.shape[0]}" for key, x in (("a", a), ("b", b), ("zero", a))
               for y in [trip(key, x if key != "zero" else np.zeros_like(a))[1]] if y.shape[0] != x.shape[0]]
        return CheckResult(LENGTH, not bad, "; ".join(bad) or f"{a.shape[0]} samples in and out")

    for name, fn in ((IGNORES_INPUT, ignores_input), (NOISY_SILENCE, silence),
                     (NONDETERMINISTIC, deterministic), (LENGTH, length)):
        report.checks.append(_guard(name, fn))
    report.seconds = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------------------------
# A run's self-checks: run once per codec, stored beside the results, read by the report

SELFCHECK_FILE = "selfcheck.json"
"""Per-run file: ``{codec spec: SelfCheckReport.to_json()}``."""
NOT_RUN = "not run"
"""``self_check`` value of a codec that has no self-check record (older runs)."""


def _from_record(rec: dict[str, Any]) -> SelfCheckReport:
    checks = [CheckResult(str(c["name"]), bool(c["passed"]), str(c["detail"])) for c in rec.get("checks", [])]
    return SelfCheckReport(codec=str(rec["codec"]), checks=checks, clips=tuple(rec.get("clips", ("", ""))),
                           seconds=float(rec.get("seconds", 0.0)))


def run_self_checks(codecs: Sequence[Codec], waves: Sequence[tuple[str, np.ndarray, int]],
                    run_dir: Any = None, log: Callable[[str], None] | None = None,
                    key: Callable[[Codec], str] | None = None, cache: Any = None) -> dict[str, SelfCheckReport]:
    """Self-check every codec, print one line each (``log``) and write :data:`SELFCHECK_FILE`
    into ``run_dir`` (merged with the records of codecs checked by earlier invocations).

    With a ``cache`` (``get(kind, key)`` / ``put(kind, key, values)``, e.g.
    ``benchmarks.store.ResultCache``) and ``key(codec)`` (codec, weights, code version, clips), a
    codec checked before is not encoded again: resumed and repeated runs reuse the record."""
    import json
    from pathlib import Path

    reports: dict[str, SelfCheckReport] = {}
    for codec in codecs:
        k = key(codec) if key is not None and cache is not None else None
        hit = cache.get("selfcheck", k) if k is not None else None
        if hit is not None:
            reports[codec.name] = _from_record(hit.values)
            continue
        reports[codec.name] = self_check(codec, waves)
        if k is not None:
            try:
                cache.put("selfcheck", k, reports[codec.name].to_json())
            except OSError:  # an unwritable cache only costs a repeated check next time
                pass
    for rep in reports.values():
        if log is not None:
            log(rep.line())
    if run_dir is not None:
        path = Path(run_dir) / SELFCHECK_FILE
        merged = load_self_checks(run_dir)
        merged.update({name: rep.to_json() for name, rep in reports.items()})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)
    return reports


def load_self_checks(run_dir: Any) -> dict[str, dict[str, Any]]:
    """The self-check records of a run folder (``{}`` when it has none)."""
    import json
    from pathlib import Path

    path = Path(run_dir) / SELFCHECK_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def status_of(records: dict[str, dict[str, Any]], codec: str) -> str:
    """The ``self_check`` value of ``codec``: ``ok``, the failed check names, or :data:`NOT_RUN`."""
    rec = records.get(codec)
    return str(rec.get("status", NOT_RUN)) if isinstance(rec, dict) else NOT_RUN


def is_flagged(status: object) -> bool:
    """True for a codec whose self-check failed (``ok`` and :data:`NOT_RUN` are not flagged)."""
    return isinstance(status, str) and status not in ("ok", NOT_RUN, "")
