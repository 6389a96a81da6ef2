"""Dynamic mixing: every training example remixed from the voice of one clip and the noise of
another, at an SNR drawn from the training labels' range.

Stored stems need not sit at their level in their own mixture (the original data set stores them
at other gains), so each stem is first brought to that level with the least-squares gains of its
own clip; the remixed mixture is then exactly the sum of the two scaled stems, which are the
targets. The gains are those the evaluation's oracle rows fit.
"""
from __future__ import annotations

import numpy as np

# Below this mean power (about -100 dBFS) a stem is silence: an SNR cannot be set against it.
SILENT_POWER = 1e-10


def mixture_gains(sources: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Least-squares gains g with mix ≈ g[0] * voice + g[1] * noise: the stored stems may sit at
    other levels than inside the mixture, so the mixture's own SNR needs these."""
    sources, mix = np.asarray(sources, np.float64), np.asarray(mix, np.float64)
    if sources.ndim != 2 or sources.shape[0] != 2 or sources.shape[1:] != mix.shape:
        raise ValueError(f"mixture_gains: sources {sources.shape} and mixture {mix.shape} do not match")
    return np.linalg.lstsq(sources.T, mix, rcond=None)[0]


def remix(voice: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, [voice, noise]) with the noise scaled to `snr_db` below the voice; a silent
    voice or noise keeps its level (the example is then simply their sum)."""
    voice, noise = np.asarray(voice, np.float64), np.asarray(noise, np.float64)
    pv, pn = float(np.mean(voice**2)), float(np.mean(noise**2))
    if pv > SILENT_POWER and pn > SILENT_POWER:
        noise = noise * np.sqrt(pv / pn) * 10.0 ** (-snr_db / 20.0)
    sources = np.stack([voice, noise]).astype(np.float32)
    return sources[0] + sources[1], sources
