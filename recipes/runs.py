"""Where a run lives: runs/<recipe>/<profile>/ for the default seed (0), and
runs/<recipe>/<profile>-seed<K>/ for seed K, so seeds of one recipe and profile sit side by side
and a single-seed benchmark keeps the plain layout."""
from __future__ import annotations

import re

DEFAULT_SEED = 0
_SEEDED = re.compile(r"(?P<profile>.+)-seed(?P<seed>0|[1-9][0-9]*)")


def run_folder(profile: str, seed: int) -> str:
    return profile if int(seed) == DEFAULT_SEED else f"{profile}-seed{int(seed)}"


def parse_run_folder(name: str) -> tuple[str, int | None]:
    """(profile, seed) of a run folder's name; seed None for a plain folder (its card says)."""
    m = _SEEDED.fullmatch(name)
    return (m["profile"], int(m["seed"])) if m else (name, None)
