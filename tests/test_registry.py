"""Tests for baselines.registry: spec parsing, lazy backends, skipped-with-reason, user errors."""
from __future__ import annotations

import sys
import types

import pytest

from baselines import classical, registry
from audiocore.codec import CodecUnavailable


def _fake_backend(name: str, specs: list[str], fail: dict[str, Exception] | None = None) -> types.ModuleType:
    """A stand-in backend module that records the specs it was asked to build."""
    module = types.ModuleType(name)
    module.built = []

    def build(spec: str, device: str = "cpu"):
        if fail and spec in fail:
            raise fail[spec]
        module.built.append((spec, device))
        return classical.build("pcm")

    module.specs = lambda: list(specs)
    module.build = build
    return module


def test_family_of():
    assert registry.family_of("amr-nb@4.75k") == "amr-nb"
    assert registry.family_of(" codec2@700C ") == "codec2"
    assert registry.family_of("jepa-daam:/tmp/x@y.safetensors") == "jepa-daam"
    assert registry.family_of("pcm") == "pcm"


def test_unknown_family_lists_families():
    with pytest.raises(ValueError, match=r"unknown codec family 'speex'.*opus.*codec2.*jepa-daam"):
        registry.resolve_specs("opus@6k,speex@8k")
    with pytest.raises(ValueError, match="known families"):
        registry.build_codec("nope")
    with pytest.raises(ValueError, match="no codec spec"):
        registry.resolve_specs(" , ")


def test_unknown_setting_lists_valid_settings():
    with pytest.raises(ValueError, match=r"opus@6k, opus@8k, opus@12k, opus@16k"):
        registry.build_codecs("opus@7k")


def test_resolve_explicit_list_dedupes_in_order():
    assert registry.resolve_specs(" opus@6k, pcm ,opus@6k") == ["opus@6k", "pcm"]


def test_build_codecs_explicit():
    codecs, skipped = registry.build_codecs("pcm,codec2@700C,g722")
    assert [c.name for c in codecs] == ["pcm", "codec2@700C", "g722"] and skipped == []


def test_all_survives_missing_and_broken_backends(monkeypatch):
    monkeypatch.setitem(sys.modules, "baselines.neural", None)  # import raises ImportError
    broken = _fake_backend("baselines.jepa_daam", ["jepa-daam@small", "jepa-daam@paper"],
                           fail={"jepa-daam@paper": RuntimeError("weights corrupt")})
    monkeypatch.setitem(sys.modules, "baselines.jepa_daam", broken)

    specs = registry.resolve_specs("all")
    assert set(classical.specs()) <= set(specs) and "jepa-daam@small" in specs

    codecs, skipped = registry.build_codecs("all")
    names = [c.name for c in codecs]
    assert set(classical.specs()) <= set(names)
    reasons = dict(skipped)
    for family in ("encodec", "dac", "mimi", "snac", "speechtokenizer", "wavtokenizer"):
        assert "baselines.neural could not be imported" in reasons[family]
    assert "weights corrupt" in reasons["jepa-daam@paper"]
    assert broken.built == [("jepa-daam@small", "cpu")]


def test_explicit_spec_of_missing_backend_is_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "baselines.neural", None)
    codecs, skipped = registry.build_codecs("encodec@1.5k,pcm")
    assert [c.name for c in codecs] == ["pcm"]
    assert skipped[0][0] == "encodec@1.5k" and "could not be imported" in skipped[0][1]
    with pytest.raises(CodecUnavailable, match="baselines.neural"):
        registry.build_codec("encodec@1.5k")


def test_path_spec_is_passed_to_backend(monkeypatch):
    fake = _fake_backend("baselines.jepa_daam", [])
    monkeypatch.setitem(sys.modules, "baselines.jepa_daam", fake)
    codecs, skipped = registry.build_codecs("jepa-daam:/ckpt/model.safetensors", device="cuda")
    assert len(codecs) == 1 and skipped == []
    assert fake.built == [("jepa-daam:/ckpt/model.safetensors", "cuda")]


def test_codec_unavailable_is_skipped_with_reason(monkeypatch):
    fake = _fake_backend("baselines.jepa_daam", [],
                         fail={"jepa-daam@small": CodecUnavailable("put weights in ~/x")})
    monkeypatch.setitem(sys.modules, "baselines.jepa_daam", fake)
    codecs, skipped = registry.build_codecs("jepa-daam@small")
    assert codecs == [] and skipped == [("jepa-daam@small", "put weights in ~/x")]


def test_weights_dir_reaches_backends_that_take_it(monkeypatch):
    taking = _fake_backend("baselines.neural", ["encodec@6k"])

    def build_with_weights(spec: str, device: str = "cpu", weights_dir=None):
        taking.built.append((spec, device, weights_dir))
        return classical.build("pcm")

    taking.build = build_with_weights
    not_taking = _fake_backend("baselines.jepa_daam", [])
    monkeypatch.setitem(sys.modules, "baselines.neural", taking)
    monkeypatch.setitem(sys.modules, "baselines.jepa_daam", not_taking)
    codecs, skipped = registry.build_codecs("encodec@6k,jepa-daam:/ckpt.safetensors,pcm", weights_dir="/w")
    assert len(codecs) == 3 and skipped == []
    assert taking.built == [("encodec@6k", "cpu", "/w")]
    assert not_taking.built == [("jepa-daam:/ckpt.safetensors", "cpu")]
    registry.build_codecs("encodec@6k")
    assert taking.built[-1] == ("encodec@6k", "cpu", None)
