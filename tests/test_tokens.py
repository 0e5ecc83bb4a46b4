"""Token economics: bitrate arithmetic against published codec configurations, padding,
bitstream payloads, the nominal-vs-measured flag, multi-rate folding, and codebook health."""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocore.codec import Encoded
from metrics.codebook import CodebookStats, merge_all
from metrics.tokens import (
    BITRATE_TOLERANCE,
    bitrate_columns,
    bits_per_frame,
    fold_multirate,
    measured_bitrate,
    stream_bitrate,
    stream_rates,
    token_rates,
    unfold_multirate,
)

CONFIGS = Path(__file__).parent / "data" / "published_token_configs.csv"


def _configs() -> list[dict[str, str]]:
    with open(CONFIGS, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _levels(spec: str) -> list[tuple[int, int, int]]:
    """'18x16384+1x16' or '1x4096/4+1x4096/2' -> [(count, vocab, stride), ...]."""
    out = []
    for term in spec.split("+"):
        head, _, stride = term.partition("/")
        count, vocab = head.split("x")
        out.append((int(count), int(vocab), int(stride or 1)))
    return out


def _encode_like(row: dict[str, str], n_coarse: int, gen: torch.Generator) -> tuple[Encoded, float, tuple[int, ...]]:
    """A synthetic `Encoded` with the row's layout: n_coarse frames at the coarsest rate."""
    sr, hop = int(row["sample_rate_hz"]), int(row["hop_samples"])
    levels = _levels(row["codebooks"])
    max_stride = max(s for _, _, s in levels)
    coarse_rate = sr / (hop * max_stride)
    if len(levels) == 1 or all(s == 1 for _, _, s in levels):
        vocab = tuple(v for c, v, _ in levels for _ in range(c))
        codes = torch.stack([torch.randint(0, v, (n_coarse,), generator=gen) for v in vocab])
        groups = tuple(range(len(vocab)))
    else:  # multi-rate: one 1-D stream per level, folded to the coarsest rate
        assert all(c == 1 for c, _, _ in levels), "test data: one codebook per multi-rate level"
        streams = [torch.randint(0, v, (n_coarse * max_stride // s,), generator=gen) for _, v, s in levels]
        codes, groups = fold_multirate(streams)
        vocab = tuple(levels[g][1] for g in groups)
    enc = Encoded(codes=codes, vocab_sizes=vocab, frame_rate=coarse_rate, payload_bytes=None,
                  num_samples=n_coarse * hop * max_stride)
    return enc, n_coarse / coarse_rate, groups


@pytest.mark.parametrize("row", _configs(), ids=lambda r: f"{r['codec']}-{r['setting']}")
def test_bitrate_matches_published_configuration(row):
    enc, duration_s, _ = _encode_like(row, n_coarse=40, gen=torch.Generator().manual_seed(0))
    exact = float(row["exact_bitrate_bps"])
    measured = measured_bitrate(enc, duration_s)
    assert measured == pytest.approx(exact, rel=1e-12)
    assert stream_bitrate(enc.vocab_sizes, enc.frame_rate) == pytest.approx(exact, rel=1e-12)
    rates = token_rates(enc, duration_s)
    assert rates["tokens_per_s"] == pytest.approx(float(row["exact_tokens_per_s"]), rel=1e-12)
    if row["published_bitrate_bps"]:
        assert abs(measured - float(row["published_bitrate_bps"])) <= float(row["published_bitrate_precision_bps"])
    if row["published_tokens_per_s"]:
        assert abs(rates["tokens_per_s"] - float(row["published_tokens_per_s"])) <= float(
            row["published_tokens_per_s_precision"])


def test_every_published_row_has_a_source():
    rows = _configs()
    assert len(rows) >= 14
    assert all(r["source"].strip() for r in rows)


def test_jepa_daam_bitrate_is_640_not_665():
    vocab = (16384,) * 18 + (16,)
    assert bits_per_frame(vocab) == 256.0
    assert stream_bitrate(vocab, 2.5) == 640.0
    assert stream_bitrate(vocab, 2.5) != pytest.approx(47.5 * math.log2(16384))  # 665 bps


def _enc(n_streams=2, n_frames=10, vocab=1024, frame_rate=50.0, padded=0) -> Encoded:
    codes = torch.zeros(n_streams, n_frames, dtype=torch.int64)
    return Encoded(codes=codes, vocab_sizes=(vocab,) * n_streams, frame_rate=frame_rate, payload_bytes=None,
                   num_samples=0, padded_frames=padded)


def test_padding_frames_are_not_payload():
    # 2 x 10-bit streams, 13 frames of which 3 encode only padding, over 0.2 s: 10 payload frames.
    enc = _enc(n_frames=13, padded=3)
    assert measured_bitrate(enc, 0.2) == pytest.approx(10 * 20 / 0.2)
    rates = token_rates(enc, 0.2)
    assert rates["frames_per_s"] == pytest.approx(50.0)
    assert rates["tokens_per_s"] == pytest.approx(100.0)
    assert (rates["n_frames"], rates["n_payload_frames"], rates["n_streams"]) == (13, 10, 2)


def test_padding_larger_than_codes_is_rejected():
    with pytest.raises(ValueError, match="padded_frames"):
        measured_bitrate(_enc(n_frames=4, padded=5), 1.0)


def test_bitstream_bitrate_is_payload_bytes():
    enc = Encoded(codes=None, vocab_sizes=(), frame_rate=50.0, payload_bytes=1503, num_samples=32000)
    assert measured_bitrate(enc, 2.0) == pytest.approx(1503 * 8 / 2.0)
    rates = token_rates(enc, 2.0)
    assert math.isnan(rates["tokens_per_s"]) and "not a token codec" in rates["tokens_per_s_error"]


def test_no_payload_gives_nan_with_reason():
    enc = Encoded(codes=None, vocab_sizes=(), frame_rate=0.0, payload_bytes=None, num_samples=16000)
    with pytest.raises(ValueError, match="neither codes nor payload_bytes"):
        measured_bitrate(enc, 1.0)
    row = bitrate_columns(enc, 1.0, nominal=None)
    assert math.isnan(row["bitrate_measured"]) and "neither" in row["bitrate_measured_error"]
    assert row["bitrate_warning"] is False


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_duration_is_rejected(bad):
    with pytest.raises(ValueError, match="duration_s"):
        measured_bitrate(_enc(), bad)


@pytest.mark.parametrize("payload_bytes, warn", [(750, False), (787, False), (788, True), (713, False), (712, True)])
def test_deviation_flag(payload_bytes, warn):
    # 1 s at a nominal 6000 bit/s: 750 B = 0 %, 787 B = +4.93 %, 788 B = +5.07 %, 713 B = -4.93 %,
    # 712 B = -5.07 %.
    enc = Encoded(codes=None, vocab_sizes=(), frame_rate=50.0, payload_bytes=payload_bytes, num_samples=48000)
    row = bitrate_columns(enc, 1.0, nominal=6000.0)
    assert row["bitrate_deviation"] == pytest.approx((payload_bytes * 8 - 6000) / 6000)
    assert row["bitrate_warning"] is warn
    assert BITRATE_TOLERANCE == 0.05


def test_no_nominal_gives_nan_deviation_and_no_warning():
    row = bitrate_columns(_enc(), 0.2, nominal=None)
    assert math.isnan(row["bitrate_deviation"]) and row["bitrate_warning"] is False
    assert row["bitrate_deviation_error"] == "codec claims no nominal bitrate"


# ---- multi-rate ------------------------------------------------------------------------------


def test_fold_multirate_layout_and_roundtrip():
    coarse, mid, fine = torch.arange(3), torch.arange(100, 106), torch.arange(200, 212)
    codes, groups = fold_multirate([coarse, mid, fine])
    assert codes.shape == (7, 3) and groups == (0, 1, 1, 2, 2, 2, 2)
    # coarse frame t holds level_i[r*t : r*(t+1)] in rows of that level
    assert codes[:, 1].tolist() == [1, 102, 103, 204, 205, 206, 207]
    back = unfold_multirate(codes, groups)
    assert [b.tolist() for b in back] == [coarse.tolist(), mid.tolist(), fine.tolist()]


def test_fold_multirate_rejects_non_multiple_lengths():
    with pytest.raises(ValueError, match="multiples"):
        fold_multirate([torch.arange(3), torch.arange(7)])


def test_snac_per_level_rates():
    row = next(r for r in _configs() if r["codec"] == "snac")
    enc, duration_s, groups = _encode_like(row, n_coarse=24, gen=torch.Generator().manual_seed(1))
    per = stream_rates(enc, duration_s, groups)
    assert [p["tokens_per_s"] for p in per] == pytest.approx([11.71875, 23.4375, 46.875])
    assert sum(p["bitrate"] for p in per) == pytest.approx(984.375)


# ---- codebook health -------------------------------------------------------------------------


def test_uniform_distribution_has_entropy_log2_v():
    v = 64
    codes = torch.arange(v).repeat(5).reshape(1, -1)  # every id 5 times
    st = CodebookStats()
    st.update(codes, (v,))
    s = st.summary()["streams"][0]
    assert s["entropy_bits"] == pytest.approx(6.0)
    assert s["normalized_entropy"] == pytest.approx(1.0)
    assert s["perplexity"] == pytest.approx(64.0)
    assert s["usage"] == 1.0 and s["n_tokens"] == 320


def test_one_hot_distribution_has_zero_entropy():
    st = CodebookStats()
    st.update(torch.full((1, 50), 7), (1024,))
    s = st.summary()["streams"][0]
    assert s["entropy_bits"] == 0.0 and s["perplexity"] == 1.0
    assert s["usage"] == pytest.approx(1 / 1024) and s["used"] == 1


def test_two_point_distribution():
    # p = (1/4, 3/4): H = 2 - (3/4) log2 3 = 0.811278124459... bits
    st = CodebookStats()
    st.update(torch.tensor([[3, 9, 9, 9]] * 1).repeat(1, 25), (16,))
    s = st.summary()["streams"][0]
    assert s["entropy_bits"] == pytest.approx(0.8112781244591328, rel=1e-12)
    assert s["normalized_entropy"] == pytest.approx(0.8112781244591328 / 4)
    assert s["perplexity"] == pytest.approx(2 ** 0.8112781244591328)
    assert s["usage"] == pytest.approx(2 / 16)


def test_pooled_and_total_definitions():
    # Two 4-way streams, each one-hot on a different id; one 2-way stream, uniform.
    codes = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]])
    st = CodebookStats()
    st.update(codes, (4, 4, 2))
    summ = st.summary()
    pooled = {p["vocab_size"]: p for p in summ["pooled"]}
    assert pooled[4]["streams"] == [0, 1] and pooled[4]["entropy_bits"] == pytest.approx(1.0)
    assert pooled[4]["usage"] == pytest.approx(0.5)
    assert pooled[2]["streams"] == [2] and pooled[2]["entropy_bits"] == pytest.approx(1.0)
    total = summ["total"]
    assert total["entropy_bits_per_frame"] == pytest.approx(0 + 0 + 1)
    assert total["capacity_bits_per_frame"] == pytest.approx(2 + 2 + 1)
    assert total["normalized_entropy"] == pytest.approx(1 / 5)
    assert total["usage"] == pytest.approx((1 + 1 + 2) / (4 + 4 + 2))
    cols = st.table_columns()
    assert cols["codebook_normalized_entropy"] == pytest.approx(0.2) and "codebook_error" not in cols


def test_jepa_daam_layout_pools_the_18_big_groups():
    vocab = (16384,) * 18 + (16,)
    gen = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randint(0, 16384, (18, 37), generator=gen), torch.randint(0, 16, (1, 37), generator=gen)])
    st = CodebookStats(vocab)
    st.update(codes, vocab)
    pooled = st.summary()["pooled"]
    assert [(p["vocab_size"], len(p["streams"])) for p in pooled] == [(16, 1), (16384, 18)]
    assert st.summary()["total"]["capacity_bits_per_frame"] == pytest.approx(256.0)


def test_snac_groups_share_one_histogram_per_level():
    levels = [torch.tensor([1, 2]), torch.tensor([3, 3, 4, 4]), torch.tensor([5, 6, 7, 8, 5, 6, 7, 8])]
    codes, groups = fold_multirate(levels)
    st = CodebookStats(stream_groups=groups)
    st.update(codes, (4096,) * codes.shape[0])
    for i, lv in enumerate(levels):
        assert np.array_equal(st.counts(i), np.bincount(lv.numpy(), minlength=4096))
    assert st.summary()["total"]["capacity_bits_per_frame"] == pytest.approx(7 * 12)


def test_empty_stats_are_nan_with_reason():
    st = CodebookStats((8, 8))
    cols = st.table_columns()
    assert math.isnan(cols["codebook_usage"]) and cols["codebook_error"] == "no tokens counted"


def test_update_encoded_excludes_padding():
    codes = torch.tensor([[1, 2, 3, 0, 0]])
    enc = Encoded(codes=codes, vocab_sizes=(4,), frame_rate=1.0, payload_bytes=None, num_samples=0, padded_frames=2)
    st = CodebookStats()
    st.update_encoded(enc)
    assert st.counts(0).tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("codes, vocab, match", [
    (torch.tensor([[0, 4]]), (4,), r"stream 0: token ids span \[0, 4\]"),
    (torch.tensor([[-1, 0]]), (4,), "token ids span"),
    (torch.tensor([[0.0, 1.0]]), (4,), "integer"),
    (torch.tensor([0, 1]), (4,), "shape"),
])
def test_bad_codes_are_rejected(codes, vocab, match):
    with pytest.raises(ValueError, match=match):
        CodebookStats().update(codes, vocab)


def test_vocab_change_is_rejected():
    st = CodebookStats()
    st.update(torch.tensor([[0, 1]]), (4,))
    with pytest.raises(ValueError, match="differ"):
        st.update(torch.tensor([[0, 1]]), (8,))


def test_merge_equals_update_on_concatenation_and_survives_json():
    vocab = (16384,) * 18 + (16,)
    gen = torch.Generator().manual_seed(3)
    blocks = [torch.cat([torch.randint(0, 300, (18, n), generator=gen), torch.randint(0, 16, (1, n), generator=gen)])
              for n in (40, 7, 23)]
    parts = []
    for b in blocks:
        st = CodebookStats()
        st.update(b, vocab)
        parts.append(CodebookStats.from_dict(json.loads(json.dumps(st.to_dict()))))
    merged = merge_all(parts)
    whole = CodebookStats()
    whole.update(torch.cat(blocks, dim=1), vocab)
    assert np.array_equal(merged._counts, whole._counts)
    assert merged.summary() == whole.summary()
    assert merged.n_tokens == 19 * 70


def test_merge_of_different_layouts_is_rejected():
    a, b = CodebookStats((4,)), CodebookStats((8,))
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(b)


def test_from_dict_rejects_foreign_data():
    with pytest.raises(ValueError, match="format"):
        CodebookStats.from_dict({"format": "something-else"})


def test_update_cost_microbenchmark():
    """Bookkeeping cost of one utterance's JEPA-DAAM block [19, 40] (16 s of audio).

    Informational (run with -s to see it); the bound only catches a pathological regression.
    The number is quoted in docs/token-economics.md.
    """
    vocab = (16384,) * 18 + (16,)
    gen = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randint(0, 16384, (18, 40), generator=gen), torch.randint(0, 16, (1, 40), generator=gen)])
    enc = Encoded(codes=codes, vocab_sizes=vocab, frame_rate=2.5, payload_bytes=None, num_samples=384000)
    st = CodebookStats(vocab)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        st.update_encoded(enc)
    per_update_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        bitrate_columns(enc, 16.0, 640.0)
        token_rates(enc, 16.0)
    per_row_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    summary = st.summary()
    summary_ms = (time.perf_counter() - t0) * 1e3
    print(f"\nCodebookStats.update_encoded [19, 40]: {per_update_us:.1f} us; bitrate+rate columns: "
          f"{per_row_us:.1f} us; summary() over 19 x 16384: {summary_ms:.2f} ms")
    assert summary["total"]["n_tokens"] == n * 19 * 40
    assert per_update_us < 5000 and per_row_us < 5000


def test_opus_cbr_on_real_speech_lands_on_target(speech_16k):
    """A real bitstream codec end to end: libopus CBR (PyAV) on LibriSpeech speech.

    CBR packets are exactly bitrate / 8 / 50 bytes each, so the measured rate must sit on the
    target up to the few extra packets the encoder's look-ahead and flush add (< 1 %).
    """
    av = pytest.importorskip("av")
    soxr = pytest.importorskip("soxr")
    import fractions

    wav, sr, _ = speech_16k
    duration_s = len(wav) / sr
    pcm = (np.clip(soxr.resample(wav, sr, 48000), -1, 1) * 32767).astype(np.int16)
    for target in (6000, 12000):
        ctx = av.codec.CodecContext.create("libopus", "w")
        ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = 48000, "mono", "s16", target
        ctx.options = {"vbr": "off"}
        ctx.open()
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, fractions.Fraction(1, 48000)
        packets = [bytes(p) for p in ctx.encode(frame)] + [bytes(p) for p in ctx.encode(None)]
        assert {len(p) for p in packets} == {target // 8 // 50}
        enc = Encoded(codes=None, vocab_sizes=(), frame_rate=48000 / ctx.frame_size,
                      payload_bytes=sum(len(p) for p in packets), num_samples=len(pcm))
        row = bitrate_columns(enc, duration_s, float(target))
        assert abs(row["bitrate_deviation"]) < 0.01 and row["bitrate_warning"] is False
