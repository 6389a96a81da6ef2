"""Dynamic mixing: every training example remixed from the voice of one clip and the noise of
another, at an SNR drawn from the training labels' range.

Stored stems need not sit at their level in their own mixture (the original data set stores them
at other gains), so each stem is first brought to that level with the least-squares gains of its
own clip; the remixed mixture is then exactly the sum of the two scaled stems, which are the
targets. The gains are those the evaluation's oracle rows fit.
"""
from __future__ import annotations

import numpy as np

from .audio import resample

# Below this mean power (about -100 dBFS) a stem is silence: an SNR cannot be set against it.
SILENT_POWER = 1e-10
# Speed factors are drawn in steps of 1/SPEED_STEPS, so that a polyphase resampler does them exactly.
SPEED_STEPS = 50


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


def random_eq(x: np.ndarray, rng: np.random.Generator, spread: float = 0.375) -> np.ndarray:
    """`x` through a random second-order pole-zero filter (1 + b1/z + b2/z²) / (1 + a1/z + a2/z²),
    every coefficient uniform in ±spread: the recording-chain colouring RNNoise (Valin 2018) trains
    with, so a model does not learn the few microphones and rooms of its training recordings.
    With |a| <= 0.375 both poles lie inside the unit circle: the filter is stable."""
    # Late: scipy.signal costs ~0.7 s to import, which `sepbench validate` (via recipes.data) must not pay.
    import scipy.signal

    b1, b2, a1, a2 = rng.uniform(-spread, spread, 4)
    return scipy.signal.lfilter([1.0, b1, b2], [1.0, a1, a2], x).astype(x.dtype)


def speed_crop_length(segment: int, rng: np.random.Generator, spread: float) -> tuple[int, int, int]:
    """(samples to read, up, down) for a crop played `down / up` times as fast, the factor drawn
    within 1 ± spread in steps of 1/SPEED_STEPS: read, then `resample_to(x, up, down, segment)`."""
    up = SPEED_STEPS
    down = int(rng.integers(round(SPEED_STEPS * (1 - spread)), round(SPEED_STEPS * (1 + spread)) + 1))
    return -(-segment * down // up), up, down


def resample_to(x: np.ndarray, up: int, down: int, segment: int) -> np.ndarray:
    """`x` resampled by up/down (pitch and tempo together, as Kaldi's speed perturbation), cut to
    `segment` samples."""
    # As rates: `down` samples become `up`. copy=False keeps the unchanged case a view.
    return resample(x, down, up)[:segment].astype(x.dtype, copy=False)
