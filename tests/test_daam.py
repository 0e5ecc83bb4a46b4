"""DAAM gate (spec §3.1) against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from jepa.daam import GAttnGateG, GaussianMixtureGate, make_daam_gate


def _reference_gate(a: list[float], delta: list[float], nu: list[float]) -> list[float]:
    """The spec's formula written out with the math module, one frame at a time."""
    t = len(a)
    mu = sum(a) / t
    var = max(sum((x - mu) ** 2 for x in a) / t, 1e-6)
    std = math.sqrt(var)
    out = []
    for x in a:
        logs = []
        for d, n in zip(delta, nu):
            s = math.log1p(math.exp(n)) + 1e-3
            z = (x - (mu + d)) / (std * s + 1e-8)
            logs.append(-0.5 * z * z - math.log(s) - 0.5 * math.log(2 * math.pi))
        m = max(logs)
        lse = m + math.log(sum(math.exp(v - m) for v in logs))
        out.append(math.exp(lse - math.log(len(delta))))
    return out


def test_gate_at_init_matches_spec_numbers():
    gate = GaussianMixtureGate(4)
    # At init every component is N(0, s) with s = softplus(log 0.5) + 1e-3; frame 1 sits at the mean.
    a = torch.tensor([[[-1.0, 0.0, 1.0, 0.0]]])  # mean 0, biased std sqrt(0.5)
    g = gate(a)[0, 0]
    s = math.log(1.5) + 1e-3
    assert s == pytest.approx(0.4065, abs=1e-4)
    assert g[1].item() == pytest.approx(1 / (s * math.sqrt(2 * math.pi)), rel=1e-6)
    assert g[1].item() == pytest.approx(0.981, abs=1e-3)  # spec: peak 0.981 at the clip mean
    # one std away from the mean: the spec's 0.048
    a1 = torch.tensor([[[-1.0, 1.0]]])  # mean 0, std 1: both frames are 1 std away
    assert gate(a1)[0, 0, 1].item() == pytest.approx(0.048, abs=1e-3)


def test_gate_matches_hand_computation_with_trained_parameters():
    gate = GaussianMixtureGate(4)
    delta, nu = [0.3, -0.7, 0.0, 1.2], [0.1, -1.0, 0.5, -0.2]
    with torch.no_grad():
        gate.delta.copy_(torch.tensor(delta))
        gate.nu.copy_(torch.tensor(nu))
    a = [0.5, -1.25, 2.0, 0.0, 0.75, -0.1]
    got = gate(torch.tensor([[a]], dtype=torch.float32))[0, 0].tolist()
    assert got == pytest.approx(_reference_gate(a, delta, nu), rel=1e-5)


def test_statistics_are_per_sample_and_over_time():
    gate = GaussianMixtureGate(4)
    a = torch.randn(3, 1, 50)
    batched = gate(a)
    single = torch.cat([gate(a[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single)
    # an affine change of one sample's projection leaves its gate unchanged (standardised over time)
    torch.testing.assert_close(gate(a[:1] * 3.0 + 2.0), gate(a[:1]), rtol=1e-5, atol=1e-6)


def test_constant_input_uses_variance_floor():
    g = GaussianMixtureGate(4)(torch.full((1, 1, 10), 0.3))
    assert torch.isfinite(g).all()


def test_gate_is_fp32_under_autocast():
    gate = GaussianMixtureGate(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gate(torch.randn(2, 1, 8).bfloat16())
    assert out.dtype == torch.float32


def test_gated_modulation_residual_form():
    module = GAttnGateG(channels=6, components=4, alpha_init=0.05)
    assert sum(p.numel() for p in module.parameters()) == 6 + 10
    x = torch.randn(2, 6, 11)
    with torch.no_grad():
        a = module.proj(x)
        expected = x * (1 + 0.05 * module.gate(a))
        torch.testing.assert_close(module(x), expected)
        # at init the factor lies in [1, 1 + 0.05 * 0.982]
        factor = module(x) / x
    assert factor.min() >= 1.0 - 1e-6 and factor.max() <= 1.0 + 0.05 * 0.982


def test_use_daam_false_is_identity_without_parameters():
    gate = make_daam_gate(32, use_daam=False)
    x = torch.randn(1, 32, 5)
    assert torch.equal(gate(x), x)
    assert sum(p.numel() for p in gate.parameters()) == 0
