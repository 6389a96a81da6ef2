"""Loudness, the one implementation behind the data tools' voice level and the listening page's
level matching: integrated loudness (ITU-R BS.1770, pyloudnorm), with RMS in dBFS where it
cannot be measured (clips shorter than one 0.4 s gating block, or near silence gated away)."""
from __future__ import annotations

import math

import numpy as np
import pyloudnorm

BLOCK_SECONDS = 0.4  # pyloudnorm's gating block


class Meter:
    """One pyloudnorm meter per sample rate."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.meter = pyloudnorm.Meter(sample_rate, block_size=BLOCK_SECONDS)

    def lufs(self, x: np.ndarray) -> float:
        """Integrated loudness in LUFS; NaN when it cannot be measured."""
        if len(x) < BLOCK_SECONDS * self.sample_rate:
            return math.nan
        value = self.meter.integrated_loudness(np.asarray(x, np.float64))
        return value if math.isfinite(value) else math.nan

    def level(self, x: np.ndarray) -> float:
        """LUFS, or RMS in dBFS where LUFS cannot be measured: the two agree within a few dB for
        speech, and the level stays finite (-200 for silence)."""
        value = self.lufs(x)
        return value if math.isfinite(value) else 20 * math.log10(max(rms(x), 1e-10))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def match_loudness(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> np.ndarray:
    """`estimate` (float64) scaled to the reference's integrated loudness, or to its RMS when
    either cannot be measured; a silent signal is left as it is."""
    est, ref = np.asarray(estimate, np.float64), np.asarray(reference, np.float64)
    meter = Meter(sample_rate)
    le, lr = meter.lufs(est), meter.lufs(ref)
    if math.isfinite(le) and math.isfinite(lr):
        return est * 10 ** ((lr - le) / 20)
    re, rr = rms(est), rms(ref)
    return est * (rr / re) if re > 0 and rr > 0 else est
