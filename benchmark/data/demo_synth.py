"""Speech-like voices and varied noises for the demo data, from a numpy Generator only.

A voice is a source-filter model: a Rosenberg glottal pulse train following a pitch contour
(phrase declination, stressed-syllable accents, slow drift), shaped by four formant resonances
whose vowel targets move from syllable to syllable, gated by syllable envelopes, with fricative
noise bursts before some syllables and pauses between words and phrases. The formant filter is
applied in the STFT domain so that moving formants cost a few array operations, not a
per-sample filter loop. None of this aims at intelligibility: it gives a separator the cues real
speech has (harmonicity, formant structure, 4-6 Hz syllabic modulation, silence) so that the
demo benchmark ranks models the way speech would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

# F1, F2, F3 (Hz) of a few vowels of an adult male voice (Peterson & Barney averages).
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410],
                   [300, 870, 2240], [660, 1720, 2410], [490, 1350, 1690], [640, 1190, 2390]], float)
F4 = 3500.0
BANDWIDTHS = np.array([60.0, 90.0, 150.0, 250.0])


@dataclass(frozen=True)
class Speaker:
    f0: float  # mean pitch, Hz
    formant_scale: float  # vocal-tract length: higher voices have higher formants
    rate: float  # syllables per second
    breath: float  # aspiration noise in voiced parts, relative to the pulses
    fricative_hz: float  # where the fricatives' energy starts


def random_speaker(rng: np.random.Generator) -> Speaker:
    f0 = rng.uniform(90, 250)
    scale = 0.95 + 0.25 * (f0 - 90) / 160 + rng.normal(0, 0.03)
    return Speaker(f0, scale, rng.uniform(3.5, 6.0), rng.uniform(0.01, 0.05), rng.uniform(2500, 4500))


def _timeline(duration: float, speaker: Speaker, rng: np.random.Generator):
    """Syllables as (start s, fricative s, vowel s, vowel index, stressed) and phrases (start, end)."""
    syllables, phrases = [], []
    t = rng.uniform(0.0, min(0.25, duration / 4))  # at least one syllable, even in short clips
    while t < duration:
        start = t
        for _word in range(rng.integers(2, 6)):
            for _syllable in range(rng.integers(1, 4)):
                fricative = rng.uniform(0.04, 0.1) if rng.random() < 0.35 else 0.0
                vowel = rng.uniform(0.6, 1.4) / speaker.rate
                syllables.append((t, fricative, vowel, int(rng.integers(len(VOWELS))), rng.random() < 0.3))
                t += fricative + vowel
            t += rng.uniform(0.03, 0.15)
            if t >= duration:
                break
        phrases.append((start, t))
        t += rng.uniform(0.25, 0.6)
    return syllables, phrases


def _slow(n: int, sr: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random curve (unit variance points every `period` seconds, linearly joined)."""
    points = rng.standard_normal(int(n / sr / period) + 2)
    return np.interp(np.arange(n) / sr / period, np.arange(len(points)), points)


def _pulse_table(size: int = 4096) -> np.ndarray:
    """One period of Rosenberg's glottal pulse (open 45%, closing 15%), differentiated for lip
    radiation; looked up by phase because evaluating cosines per sample dominated the cost."""
    frac = np.arange(size) / size
    pulse = np.where(frac < 0.45, 0.5 * (1 - np.cos(np.pi * frac / 0.45)),
                     np.where(frac < 0.6, np.cos(0.5 * np.pi * (frac - 0.45) / 0.15), 0.0))
    return np.diff(pulse, append=0.0) * size


PULSE = _pulse_table()


def _glottal(f0: np.ndarray, sr: int) -> np.ndarray:
    phase = np.cumsum(f0 / sr) % 1.0
    return PULSE[(phase * len(PULSE)).astype(np.int64) % len(PULSE)] * (f0 / sr)


def _window(length: int) -> np.ndarray:
    """Syllable envelope: flat middle, raised-cosine attack and decay (Tukey, 60% tapered)."""
    taper = max(1, int(0.3 * length))
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(taper) + 0.5) / taper))
    w = np.ones(length)
    w[:taper], w[length - taper :] = ramp, ramp[::-1]
    return w


def _resonances(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Cascade of second-order resonators' magnitude, [frames, bins], 1 at DC."""
    gain = np.ones((formants.shape[1], len(freqs)))
    for fk, bk in zip(formants, bandwidths):
        fk = fk[:, None]
        gain *= fk**2 / np.sqrt((fk**2 - freqs**2) ** 2 + (bk * freqs) ** 2)
    return gain


def _stft(x: np.ndarray, size: int) -> np.ndarray:
    """[..., frames, bins]: sqrt-Hann frames every size/2 samples, frame k centred on sample
    k*size/2. With `_istft` it reconstructs exactly, at a fraction of scipy's stft cost."""
    hop, n = size // 2, x.shape[-1]
    frames = -(-n // hop) + 1
    padded = np.zeros(x.shape[:-1] + ((frames + 1) * hop,))
    padded[..., hop : hop + n] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, size, axis=-1)[..., ::hop, :]
    return scipy.fft.rfft(view[..., :frames, :] * _sqrt_hann(size), axis=-1)


def _istft(spec: np.ndarray, size: int, n: int) -> np.ndarray:
    hop = size // 2
    y = scipy.fft.irfft(spec, size, axis=-1) * _sqrt_hann(size)
    out = np.zeros((len(y) + 1) * hop)
    out[: len(y) * hop] += y[:, :hop].reshape(-1)  # periodic Hann halves overlap-add to 1
    out[hop:] += y[:, hop:].reshape(-1)
    return out[hop : hop + n]


def _sqrt_hann(size: int) -> np.ndarray:
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size))


def voice(n: int, sr: int, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """n samples of speech-like signal at unit RMS."""
    syllables, phrases = _timeline(n / sr, speaker, rng)
    env_voiced, env_fricative = np.zeros(n), np.zeros(n)
    centres, f0_points, formant_points = [], [], []
    for start, fricative, length, vowel, stressed in syllables:
        a, b = int(start * sr), int((start + fricative) * sr)
        if a < n and b > a + 2:
            env_fricative[a:b] = rng.uniform(0.2, 0.5) * _window(b - a)[: n - a]
        a, c = b, int((start + fricative + length) * sr)
        if a < n and c > a + 2:
            amp = 1.0 if stressed else rng.uniform(0.5, 0.8)
            env_voiced[a:c] = amp * _window(c - a)[: n - a]
        centre = start + fricative + length / 2
        phrase_start, phrase_end = next((p for p in phrases if p[0] <= start <= p[1]), phrases[-1])
        position = (centre - phrase_start) / max(phrase_end - phrase_start, 1e-3)
        centres.append(centre)
        f0_points.append(speaker.f0 * (1.1 - 0.25 * position) * (1.12 if stressed else 1.0))
        formant_points.append(np.append(VOWELS[vowel] * rng.uniform(0.95, 1.05, 3), F4) * speaker.formant_scale)

    t = np.arange(n) / sr
    f0 = np.interp(t, centres, f0_points) * (1 + 0.015 * _slow(n, sr, 0.1, rng))
    # One noise serves both breath (under vowels) and frication (before them): they never overlap.
    hiss = rng.standard_normal(n)
    voiced = (_glottal(f0, sr) + speaker.breath * 0.05 * hiss) * env_voiced

    size = int(2 ** round(np.log2(0.032 * sr)))  # 50% overlap: formants move slowly enough
    spec_v, spec_f = _stft(np.stack([voiced, hiss * env_fricative]), size)
    freqs = np.fft.rfftfreq(size, 1 / sr)
    frame_t = np.arange(len(spec_v)) * (size // 2) / sr
    formants = np.stack([np.interp(frame_t, centres, [p[k] for p in formant_points]) for k in range(4)])
    spec_v *= _resonances(freqs, formants, BANDWIDTHS * rng.uniform(0.8, 1.2))
    spec_f *= (freqs / speaker.fricative_hz) ** 2 / np.sqrt(1 + (freqs / speaker.fricative_hz) ** 4)
    # Match the two sources' power per unit of envelope, so the envelopes alone set the balance
    # (fricatives 6-14 dB under vowels, as in speech) whatever the pitch and formants.
    power_v = np.sum(np.abs(spec_v) ** 2) / max(np.sum(env_voiced**2), 1e-12)
    power_f = np.sum(np.abs(spec_f) ** 2) / max(np.sum(env_fricative**2), 1e-12)
    return _unit(_istft(spec_v + spec_f * np.sqrt(power_v / max(power_f, 1e-30)), size, n))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def coloured(n: int, sr: int, rng: np.random.Generator, colour: str | None = None):
    colour = colour or str(rng.choice(["white", "pink", "brown"]))
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    freqs = np.fft.rfftfreq(n, 1 / sr)
    shape = np.maximum(freqs, 20.0) ** (-exponent / 2)
    shape[0] = 0.0  # no DC offset
    return _unit(np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)), f"{colour} noise"


def hum(n: int, sr: int, rng: np.random.Generator):
    """Mains harmonics with slow pitch drift and amplitude modulation over a faint floor."""
    mains = int(rng.choice([50, 60]))
    t = np.arange(n) / sr
    phase = 2 * np.pi * mains * np.cumsum(1 + 0.003 * _slow(n, sr, 0.5, rng)) / sr
    k = np.arange(1, min(int(0.45 * sr / mains), int(rng.integers(8, 25))) + 1)
    amps = k ** -rng.uniform(0.3, 1.2) * rng.uniform(0.3, 1.0, len(k))
    amps[1::2] *= rng.uniform(0.2, 1.0)  # transformers hum mostly at odd harmonics
    offsets = np.exp(1j * rng.uniform(0, 2 * np.pi, len(k)))
    z, zk, tone = np.exp(1j * phase), np.ones(n, complex), np.zeros(n)
    for a, offset in zip(amps, offsets):  # harmonic k as z**k, by products: far cheaper than sines
        zk *= z
        tone += a * (zk * offset).imag
    am = 1 + rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * rng.uniform(0.5, 8.0) * t + rng.uniform(0, 2 * np.pi))
    return _unit(_unit(tone) * am + 0.03 * coloured(n, sr, rng, "pink")[0]), f"hum {mains} Hz"


def babble(n: int, sr: int, rng: np.random.Generator):
    talkers = int(rng.integers(4, 9))
    mix = sum(voice(n, sr, random_speaker(rng), rng) * 10 ** (rng.uniform(-4, 0) / 20) for _ in range(talkers))
    return _unit(mix), f"babble of {talkers}"


def transients(n: int, sr: int, rng: np.random.Generator):
    """Clicks, knocks and door-like thuds at random times over a faint pink floor."""
    out = 0.02 * coloured(n, sr, rng, "pink")[0]
    for _ in range(max(1, rng.poisson(rng.uniform(1, 4) * n / sr))):
        kind = rng.choice(["click", "knock", "door"])
        length = int({"click": 0.004, "knock": 0.15, "door": 0.8}[kind] * sr) + 1
        t = np.arange(length) / sr
        if kind == "click":
            event = rng.standard_normal(length) * np.exp(-t / 0.0008)
        elif kind == "knock":
            event = (np.sin(2 * np.pi * rng.uniform(80, 400) * t) * np.exp(-t / rng.uniform(0.015, 0.05))
                     + 0.5 * rng.standard_normal(length) * np.exp(-t / 0.004))
        else:
            rumble = np.cumsum(rng.standard_normal(length))
            event = (np.sin(2 * np.pi * rng.uniform(40, 120) * t) * np.exp(-t / rng.uniform(0.08, 0.2))
                     + 0.3 * _unit(rumble - rumble.mean()) * np.exp(-t / rng.uniform(0.15, 0.4)))
        start = int(rng.integers(0, n))
        piece = event[: n - start] / max(np.abs(event).max(), 1e-12)
        out[start : start + len(piece)] += rng.uniform(0.3, 1.0) * piece
    return _unit(out), "transients"


NOISES = (lambda n, sr, rng: coloured(n, sr, rng), hum, babble, transients)


def noise(n: int, sr: int, rng: np.random.Generator):
    """(unit-RMS noise, description): one family, or a quarter of the time two mixed."""
    first = int(rng.integers(len(NOISES)))
    x, name = NOISES[first](n, sr, rng)
    if rng.random() < 0.25:
        second = (first + int(rng.integers(1, len(NOISES)))) % len(NOISES)
        y, other = NOISES[second](n, sr, rng)
        x = x + y * 10 ** (rng.uniform(-10, 0) / 20)
        name = f"{name} + {other}"
    return _unit(x), name
