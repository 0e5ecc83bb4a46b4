"""Spec strings -> `Codec` objects, with lazily imported backend modules.

A spec is `family` (`pcm`), `family@setting` (`opus@6k`, `codec2@700C`, `encodec@1.5k`) or
`family:PATH` (`jepa-daam:/path/ckpt.safetensors`). Each family belongs to one backend module
(`FAMILIES`), which exposes `specs() -> list[str]` and `build(spec, device) -> Codec`. Backend
modules are imported only when one of their specs is needed; a backend that is missing or fails
to import makes its specs "skipped" with the import error as reason, never a crash.

    >>> from baselines.registry import build_codecs
    >>> codecs, skipped = build_codecs("opus@6k,codec2@700C")
"""
from __future__ import annotations

import importlib
import inspect
import os
from types import ModuleType

from audiocore.codec import Codec, CodecUnavailable

FAMILIES: dict[str, str] = {
    "pcm": "baselines.classical",
    "mulaw": "baselines.classical",
    "g722": "baselines.classical",
    "opus": "baselines.classical",
    "mp3": "baselines.classical",
    "amr-nb": "baselines.classical",
    "codec2": "baselines.classical",
    "encodec": "baselines.neural",
    "dac": "baselines.neural",
    "mimi": "baselines.neural",
    "snac": "baselines.neural",
    "speechtokenizer": "baselines.neural",
    "wavtokenizer": "baselines.neural",
    "jepa-daam": "baselines.jepa_daam",
}
"""Codec family -> backend module implementing it."""

BACKENDS: tuple[str, ...] = tuple(dict.fromkeys(FAMILIES.values()))
"""Backend modules in the order `all` lists them."""


def family_of(spec: str) -> str:
    """The family part of a spec: text before the first '@' or ':' ("amr-nb@4.75k" -> "amr-nb").

    Raises:
        ValueError: empty spec or unknown family; the message lists the known families.
    """
    spec = spec.strip()
    cut = [i for i in (spec.find("@"), spec.find(":")) if i >= 0]
    family = spec[: min(cut)] if cut else spec
    if not spec:
        raise ValueError(f"empty codec spec; known families: {', '.join(FAMILIES)}")
    if family not in FAMILIES:
        raise ValueError(
            f"unknown codec family '{family}' in spec '{spec}'; known families: {', '.join(FAMILIES)} "
            "(use 'all' for every available codec)"
        )
    return family


def _import_backend(module_name: str) -> ModuleType:
    """Import a backend module, turning any import-time failure into `CodecUnavailable`."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or any error raised while the module initialises
        raise CodecUnavailable(
            f"backend module {module_name} could not be imported: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in ("specs", "build"):
        if not callable(getattr(module, attr, None)):
            raise CodecUnavailable(f"backend module {module_name} has no {attr}() function")
    return module


def _all_specs() -> tuple[list[str], list[tuple[str, str]]]:
    """(every spec of every importable backend, [(family, reason)] for backends that failed)."""
    found: list[str] = []
    skipped: list[tuple[str, str]] = []
    for module_name in BACKENDS:
        try:
            found.extend(_import_backend(module_name).specs())
        except CodecUnavailable as exc:
            skipped.extend((f, str(exc)) for f, m in FAMILIES.items() if m == module_name)
        except Exception as exc:  # a broken specs() must not take the whole run down
            reason = f"{module_name}.specs() failed: {type(exc).__name__}: {exc}"
            skipped.extend((f, reason) for f, m in FAMILIES.items() if m == module_name)
    return found, skipped


def resolve_specs(text: str) -> list[str]:
    """Expand a `--codecs` argument into a list of spec strings.

    Args:
        text: "all" (every spec offered by every backend module that imports), or a
            comma-separated list "a,b,c" (whitespace ignored, duplicates dropped, order kept).

    Raises:
        ValueError: empty list or an unknown family (the message lists the families). Settings
            are checked later by the backend's `build`.
    """
    if text.strip().lower() == "all":
        return _all_specs()[0]
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise ValueError(f"no codec spec given in '{text}'; use 'all' or e.g. 'opus@6k,codec2@700C'")
    for spec in specs:
        family_of(spec)
    return list(dict.fromkeys(specs))


def _accepts_weights_dir(build: object) -> bool:
    """True when a backend's `build` takes a `weights_dir` keyword (e.g. `baselines.neural.build`)."""
    try:
        return "weights_dir" in inspect.signature(build).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins / C callables without a signature
        return False


def build_codec(spec: str, device: str = "cpu", weights_dir: str | os.PathLike[str] | None = None) -> Codec:
    """Build one codec from its spec.

    Args:
        spec: codec spec, e.g. ``encodec@6k``.
        device: ``cpu`` / ``cuda`` / ``cuda:N``.
        weights_dir: folder of pretrained weights (``--weights-dir``), passed to backends whose
            `build` takes a `weights_dir` keyword (the neural codecs); backends that find their
            weights another way (classical codecs need none, ``jepa-daam:PATH`` names its
            checkpoint) are built without it.

    Raises:
        ValueError: unknown family or setting (message lists what is valid).
        CodecUnavailable: backend module, package, encoder or weights missing (message says what).
    """
    spec = spec.strip()
    module = _import_backend(FAMILIES[family_of(spec)])
    if weights_dir is not None and _accepts_weights_dir(module.build):
        return module.build(spec, device=device, weights_dir=weights_dir)
    return module.build(spec, device=device)


def build_codecs(text: str, device: str = "cpu",
                 weights_dir: str | os.PathLike[str] | None = None) -> tuple[list[Codec], list[tuple[str, str]]]:
    """Build every codec named by `text` ("all" or "a,b,c"), skipping the unavailable ones.

    `weights_dir` is passed on to :func:`build_codec`.

    Returns:
        (codecs, skipped): the codecs that were built, in order, and `(spec, reason)` for each
        one that was not (for `all`, a backend that fails to import is listed once per family).

    Raises:
        ValueError: for an explicit list, an unknown family or setting: a typo is the user's
            to fix, not something to skip silently. With "all" nothing raises.
    """
    use_all = text.strip().lower() == "all"
    if use_all:
        specs, skipped = _all_specs()
    else:
        specs, skipped = resolve_specs(text), []
    codecs: list[Codec] = []
    for spec in specs:
        try:
            codecs.append(build_codec(spec, device, weights_dir))
        except CodecUnavailable as exc:
            skipped.append((spec, str(exc)))
        except ValueError as exc:
            if not use_all:
                raise
            skipped.append((spec, f"ValueError: {exc}"))
        except Exception as exc:  # a backend failing to build must not crash the run
            skipped.append((spec, f"{type(exc).__name__}: {exc}"))
    return codecs, skipped
