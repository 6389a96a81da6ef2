"""Pieces joined into files: in sequence with pauses (speech, effects) or on top of each other (babble)."""
from __future__ import annotations

import numpy as np

from recipes.audio import resample

from .catalogue import BABBLE_SECONDS, MIN_SECONDS, MIXED_RATE
from .sound import Piece, rng_for


def join(pieces: list[Piece], rng, gap_s: tuple[float, float] | None) -> tuple[np.ndarray, int]:
    rates = {p.rate for p in pieces}
    rate = rates.pop() if len(rates) == 1 else MIXED_RATE
    parts = []
    for i, p in enumerate(pieces):
        if i and gap_s:
            parts.append(np.zeros(int(rng.uniform(*gap_s) * rate)))
        parts.append(resample(p.x, p.rate, rate))
    return np.concatenate(parts), rate


def chunk(units: list, seconds, rng, span: tuple[float, float]) -> list[list]:
    """Consecutive units into runs of span seconds (drawn per run); a short tail joins the last run."""
    runs, run, total, target = [], [], 0.0, rng.uniform(*span)
    for unit in units:
        run.append(unit)
        total += seconds(unit)
        if total >= target:
            runs.append(run)
            run, total, target = [], 0.0, rng.uniform(*span)
    if run:
        if runs and (total < span[0] or total < MIN_SECONDS):
            runs[-1].extend(run)
        else:
            runs.append(run)
    return runs


def babble(voices: dict[str, list[Piece]], seed: int) -> list[tuple[np.ndarray, list[str], int]]:
    """Files of 3-6 voices talking at once, each word used once. A voice that runs out of words
    is taken over by another language not yet in the file, so all k stay busy to the end; files
    stop when the words left could not fill one."""
    rng = rng_for(seed, "babble")
    left = {lang: [words[i] for i in rng.permutation(len(words))] for lang, words in sorted(voices.items())}
    files = []
    while True:
        k = int(rng.integers(3, 7))
        n = int(rng.uniform(*BABBLE_SECONDS) * MIXED_RATE)
        amount = {lang: sum(len(w.x) for w in words) for lang, words in left.items() if words}
        if len(amount) <= k or sum(amount.values()) < 0.8 * k * n:
            return files
        mix, labels, used = np.zeros(n), [], set()

        def take_language():
            options = sorted(lang for lang in amount if lang not in used and left[lang])
            if not options:
                return None
            weight = np.array([amount[lang] for lang in options], dtype=float)
            lang = str(rng.choice(options, p=weight / weight.sum()))
            used.add(lang)
            return lang

        for _ in range(k):
            lang, pos = take_language(), int(rng.uniform(0, 0.3) * MIXED_RATE)
            while lang is not None:
                if not left[lang]:
                    lang = take_language()
                    continue
                word = left[lang][0]
                if pos + len(word.x) > n:
                    break
                left[lang].pop(0)
                mix[pos: pos + len(word.x)] += word.x
                labels.append(word.label)
                pos += len(word.x) + int(rng.uniform(0.05, 0.25) * MIXED_RATE)
        files.append((mix, labels, k))
