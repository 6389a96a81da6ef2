"""`sepbench demo-data`: a synthetic data set in the folder format, made from nothing.

Voices are speech-like (glottal pulses with pitch contours, moving vowel formants, syllable
envelopes, fricative bursts, pauses) and noises vary per clip (coloured, machine hum, babble,
transients, or a mixture of two); see `benchmark/data/demo_synth.py`. Everything comes from seeded
generators, so the same arguments give byte-identical files.

Level policy (shared with `sepbench prepare`): the voice is set to TARGET_LUFS with pyloudnorm
(RMS in dBFS stands in for clips shorter than pyloudnorm's 0.4 s block), and the noise is set so
that 10*log10(|voice|^2/|noise|^2) equals the label. The label is thus exactly the SNR that
`sepbench validate` and the benchmark measure from the stems; a loudness ratio would differ
from it by several dB depending on the noise's spectrum. Everything is then scaled down together
if needed so no file peaks above PEAK, and the mixture is written as the integer sum of the
16-bit stems, so mix == voice + noise exactly in the files.

Folder ids count from 0001 across both splits (test continues after train), so an id names one
clip of the whole data set.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from recipes.errors import SepbenchError
from recipes.files import atomic_write_text
from recipes.folder import new_dataset_dir, to_csv, write_clip

from . import demo_synth as synth
from .loudness import Meter

TARGET_LUFS = -28.0
PEAK = 0.9  # headroom below full scale, so quantisation and resampling never clip


def run(args) -> int:
    start = time.perf_counter()
    out = generate(args.out, args.n_train, args.n_test, args.seconds, args.sr, parse_snrs(args.snrs),
                   args.seed, quirks=args.quirks, force=args.force)
    print(f"wrote {args.n_train} train + {args.n_test} test clips ({args.seconds:g} s at {args.sr} Hz) "
          f"to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def parse_snrs(text: str) -> list[float]:
    values = []
    for part in str(text).split(","):
        try:
            value = float(part)
        except ValueError:
            raise SepbenchError(f"--snrs: {part.strip()!r} is not a number (expected e.g. -5,0,5)") from None
        if not math.isfinite(value):
            raise SepbenchError(f"--snrs: {part.strip()!r} is not a finite number")
        values.append(value)
    return values


# Shorter clips can fall in a synthetic voice's pause: at 0.1 s, 26 of 300 clips had an all-zero
# voice or noise (none from 0.2 s). generate() also refuses any all-zero stem it would write.
MIN_SECONDS = 0.2


def check_sizes(n_train: int, n_test: int, seconds: float, sample_rate: int, snrs, seed: int) -> None:
    if seed < 0:
        raise SepbenchError(f"--seed must be 0 or more, got {seed}")
    if n_train < 1 or n_test < 1:
        raise SepbenchError(f"need at least one train and one test clip (got {n_train} and {n_test})")
    if not (seconds > 0 and math.isfinite(seconds)) or round(seconds * sample_rate) < 1:
        raise SepbenchError(f"--seconds must be positive, got {seconds}")
    if seconds < MIN_SECONDS:
        raise SepbenchError(f"--seconds {seconds:g}: too short to hold a voice and a noise in every clip "
                            f"(some would be silent); use at least {MIN_SECONDS:g}")
    if sample_rate < 4000:
        raise SepbenchError(f"--sr must be at least 4000 Hz, got {sample_rate}")
    if not snrs:
        raise SepbenchError("--snrs: give at least one SNR label")


class Leveller(Meter):
    """The level policy: the voice at TARGET_LUFS, the noise at the SNR's power ratio."""

    def loudness(self, x: np.ndarray) -> float:
        return self.level(x)

    def mix(self, voice: np.ndarray, noise: np.ndarray, snr: float):
        """Int16 (voice, noise, mix) with mix == voice + noise and 10log10 power ratio == snr,
        plus the linear gains applied to the inputs (for manifests)."""
        gain_v = 10 ** ((TARGET_LUFS - self.loudness(voice)) / 20)
        power_v = np.mean(np.square(voice * gain_v, dtype=np.float64))
        power_n = max(float(np.mean(np.square(noise, dtype=np.float64))), 1e-20)
        gain_n = math.sqrt(power_v / power_n) * 10 ** (-snr / 20)
        v, n = voice * gain_v, noise * gain_n
        # The stems can peak above the mixture where they cancel, so all three set the headroom.
        peak = max(np.abs(v).max(), np.abs(n).max(), np.abs(v + n).max(), 1e-12)
        scale = min(1.0, PEAK / peak)
        qv = np.round(v * scale * 32767).astype(np.int32)
        qn = np.round(n * scale * 32767).astype(np.int32)
        qm = qv + qn  # integer sum: the mixture file is exactly the stems' sum
        return qv.astype(np.int16), qn.astype(np.int16), qm.astype(np.int16), gain_v * scale, gain_n * scale


def clip_plan(n_train: int, n_test: int, snrs, seed: int, quirks: bool):
    """(split, number, label, quirk) per clip. Labels cycle over `snrs` in each split, so every
    label gets the same count (+-1). Quirks hit a seeded few clips of each split."""
    width = max(4, len(str(n_train + n_test)))
    plan = []
    for split, count, first in (("train", n_train, 1), ("test", n_test, n_train + 1)):
        quirk = [None] * count
        if quirks:
            order = np.random.default_rng([seed, 7, count]).permutation(count)
            n_gain, n_label, n_silent = max(1, count // 5), max(1, count // 20), max(1, count // 30)
            for k, i in enumerate(order[: n_gain + n_label + n_silent]):
                quirk[i] = "gain" if k < n_gain else "label" if k < n_gain + n_label else "silent"
        for i in range(count):
            plan.append((split, f"{first + i:0{width}d}", snrs[i % len(snrs)], quirk[i]))
    return plan


def make_clip(leveller: Leveller, n: int, sr: int, label: float, quirk: str | None, rng):
    """Audio of one clip: (voice, noise, mix) int16 and a manifest row."""
    speaker = synth.random_speaker(rng)
    voice = synth.voice(n, sr, speaker, rng)
    noise, kind = synth.noise(n, sr, rng)
    snr = label
    if quirk == "label":
        snr = label + rng.choice([-1, 1]) * rng.uniform(5, 8)
    elif quirk == "silent":
        snr = label - 45.0
    qv, qn, qm, gain_v, gain_n = leveller.mix(voice, noise, snr)
    if quirk == "gain":
        # Stems stored at their own gains, as in the course data: the mixture is not their sum.
        a, b = rng.uniform(0.3, 0.9, size=2)
        qv, qn = np.round(qv * a).astype(np.int16), np.round(qn * b).astype(np.int16)
    row = {"noise": kind, "f0": round(speaker.f0, 1), "voice_gain": f"{gain_v:.6g}",
           "noise_gain": f"{gain_n:.6g}", "quirk": quirk or ""}
    return qv, qn, qm, row


def generate(out, n_train: int = 400, n_test: int = 100, seconds: float = 4.0, sample_rate: int = 8000,
             snrs=(-4, -3, -2, -1, 0, 1, 2, 3, 4), seed: int = 0, quirks: bool = False,
             force: bool = False) -> Path:
    """Write the data set to `out` (see the module doc) and return its path."""
    snrs = [float(s) for s in snrs]
    check_sizes(n_train, n_test, seconds, sample_rate, snrs, seed)
    n = int(round(seconds * sample_rate))
    leveller = Leveller(sample_rate)
    rows = []
    with new_dataset_dir(out, force) as tmp:
        for split, folder_id, label, quirk in clip_plan(n_train, n_test, snrs, seed, quirks):
            # One generator per clip: a clip depends only on (seed, id), not on the others.
            rng = np.random.default_rng([seed, int(folder_id)])
            qv, qn, qm, row = make_clip(leveller, n, sample_rate, label, quirk, rng)
            silent = [name for name, x in (("voice", qv), ("noise", qn)) if not x.any()]
            if silent:
                raise SepbenchError(f"--seconds {seconds:g}: clip {folder_id}'s {silent[0]} would be silent; "
                                    "use longer clips")
            write_clip(tmp / split / folder_id, qv, qn, qm, sample_rate, label)
            rows.append({"folder": folder_id, "split": split, "snr": f"{label:g}", **row})
        atomic_write_text(tmp / "manifest.csv", to_csv(rows))
    return Path(out)
