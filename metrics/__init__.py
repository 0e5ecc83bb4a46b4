"""Metrics: functions of (reference, estimate, sample rate) arrays or of tokens, each returning
numbers (NaN with a reason when a value cannot be computed), plus the statistics over utterances.

    from metrics import signal_metrics, measured_bitrate, utterance_asr_metrics, corpus_rates
    row = signal_metrics(ref16, est16, 16000)            # PESQ-WB/NB, STOI, ESTOI, SI-SDR, mel distance

Modules: ``signal`` (PESQ, STOI, SI-SDR, mel distance), ``tokens`` (exact bitrate, token and frame
rates), ``codebook`` (usage, entropy, perplexity), ``speed`` (RTF, peak memory), ``asr`` (ASR
backends, normaliser, WER / CER / dWER), ``stats`` (percentile bootstrap, corpus pooling).
"""
from __future__ import annotations

from metrics.asr import corpus_rates, edit_counts, load_asr, normalize_text, utterance_asr_metrics
from metrics.codebook import CodebookStats
from metrics.signal import estoi, mel_distance, pesq_nb, pesq_wb, si_sdr, si_sdr_aligned, signal_metrics, stoi
from metrics.speed import Stopwatch, median_rtf, rtf
from metrics.stats import bootstrap_ci, corpus_rate
from metrics.tokens import bitrate_columns, bits_per_frame, measured_bitrate, stream_bitrate, token_rates

__all__ = [
    "CodebookStats",
    "Stopwatch",
    "bitrate_columns",
    "bits_per_frame",
    "bootstrap_ci",
    "corpus_rate",
    "corpus_rates",
    "edit_counts",
    "estoi",
    "load_asr",
    "measured_bitrate",
    "median_rtf",
    "mel_distance",
    "normalize_text",
    "pesq_nb",
    "pesq_wb",
    "rtf",
    "si_sdr",
    "si_sdr_aligned",
    "signal_metrics",
    "stoi",
    "stream_bitrate",
    "token_rates",
    "utterance_asr_metrics",
]
