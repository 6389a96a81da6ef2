"""The source folders OUT/speech/<speaker>/, OUT/noise/<kind>/ and OUT/SOURCES.csv, written
beside OUT and renamed into place when complete."""
from __future__ import annotations

import collections
import csv
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from .catalogue import MIN_SECONDS, MIXED_RATE, NOISE_SECONDS, SPEECH_SECONDS, stamp
from .joining import babble, chunk, join
from .pieces import babble_words, lincity_pieces, music_pieces, opensfx_pieces, speech_pieces
from .report import summary
from .sound import rng_for, write


def build(out: Path, seed: int) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []

    def emit(rel: str, kind: str, group: str, x: np.ndarray, rate: int, labels: list[str]) -> None:
        write(tmp / rel, x, rate)
        rows.append({"file": rel, "kind": kind, "group": group, "seconds": f"{len(x) / rate:.2f}",
                     "sample_rate": rate, "pieces": len(labels), "sources": " ; ".join(labels)})

    for speaker, prompts in sorted(speech_pieces().items()):
        rng = rng_for(seed, speaker)
        order = [prompts[i] for i in rng.permutation(len(prompts))]
        for j, run in enumerate(chunk(order, lambda u: u[1].seconds + 0.35, rng, SPEECH_SECONDS), 1):
            x, rate = join([p for _, p in run], rng, (0.2, 0.5))
            langs = "+".join(sorted({lang for lang, _ in run}))
            emit(f"speech/{speaker}/{speaker}_{j:03d}.flac", "speech", f"{speaker} ({langs})", x, rate,
                 [p.label for _, p in run])

    effects = collections.defaultdict(list)
    for source in (opensfx_pieces(), lincity_pieces()):
        for kind, groups in source.items():
            effects[kind].extend(groups)
    for kind, groups in sorted(effects.items()):
        rng = rng_for(seed, kind)
        groups = sorted(groups, key=lambda g: g[0].label)
        order = [groups[i] for i in rng.permutation(len(groups))]
        for j, run in enumerate(chunk(order, lambda g: sum(p.seconds for p in g), rng, NOISE_SECONDS), 1):
            pieces = [p for g in run for p in g]
            x, rate = join(pieces, rng, None)
            emit(f"noise/{kind}/{kind}_{j:02d}.flac", kind, kind, x, rate, [p.label for p in pieces])

    for piece in music_pieces():
        name = re.sub(r"[^a-z0-9]+", "_", piece.label.split(":", 1)[1].rsplit(".", 1)[0].lower()).strip("_")
        emit(f"noise/music/{name}.flac", "music", "music", piece.x, piece.rate, [piece.label])

    for j, (x, labels, k) in enumerate(babble(babble_words(), seed), 1):
        voices = sorted({label.split(":", 1)[1].split("/")[0] for label in labels})
        emit(f"noise/babble/babble_{j:02d}.flac", "babble", f"{k} at once, {len(voices)} voices: {'+'.join(voices)}",
             x, MIXED_RATE, labels)

    short = [r["file"] for r in rows if float(r["seconds"]) < MIN_SECONDS]
    if short:
        sys.exit(f"error: files shorter than {MIN_SECONDS} s: {short}")
    with open(tmp / "SOURCES.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp / ".stamp").write_text(stamp(seed))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(summary(out))
