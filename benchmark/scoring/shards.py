"""`sepbench evaluate --shard K/N`: the test set split by clip into N deterministic shards, each
scored by its own process (a SLURM array task, a second core) into a cache folder of its own;
a later `evaluate` without --shard merges the shards' per-model files into the rows one process
would have written. Rows are per clip and every score is a function of its clip alone
(metrics.py, the model on one torch thread), so the merge equals one process's output except
for the timing columns.

OUT/cache/shards/<N>/<K>/ holds shard K's files under the same names as OUT/cache/'s own.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from recipes.errors import SepbenchError

from . import aggregate

_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 1 <= K <= N."""
    match = _SHARD.match(str(text).strip())
    k, n = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (match and 1 <= k <= n):
        raise SepbenchError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. 1/4")
    return k, n


def clips_of(clips, k: int, n: int) -> list:
    """Shard K of N: every N-th clip in clip-id order from the K-th, so each shard holds about
    the same mix of SNR labels and lengths (clips are numbered, not sorted by difficulty)."""
    return sorted(clips, key=lambda c: c.id)[k - 1::n]


def folder(cache: Path, k: int, n: int) -> Path:
    return Path(cache) / "shards" / str(n) / str(k)


def merged(cache: Path, name: str, clips) -> tuple[pd.DataFrame, int] | None:
    """The rows of cache file `name` assembled from a complete set of shards (the smallest N
    that has every shard's file and covers exactly `clips`), with that N; None if there is none."""
    root = Path(cache) / "shards"
    counts = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    wanted = sorted(c.id for c in clips)
    for n in counts:
        paths = [folder(cache, k, n) / name for k in range(1, n + 1)]
        if not all(p.is_file() for p in paths):
            continue
        try:
            df = pd.concat([aggregate.read_results(p) for p in paths], ignore_index=True)
        except Exception:  # a damaged shard file: that set is not usable, as a damaged cache file
            continue
        if sorted(df["clip_id"]) == wanted:
            return df.sort_values("clip_id", kind="stable").reset_index(drop=True), n
    return None
