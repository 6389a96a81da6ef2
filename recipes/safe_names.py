"""Names that become parts of file paths (recipe, profile) must come from a safe character set.

A name read from a file (card.json, summary.csv) could be "../../x" or an absolute path and make
a path join land outside the folder it was meant for; names are therefore taken from folder
names and checked here before any path is built from them.
"""
from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
# Not starting with '.': hidden folders are not runs (train --force keeps an old run aside as
# .<profile>.replaced until the new one has a checkpoint).
RULE = "only letters, digits, '_', '.' and '-', not starting with '.'"


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and bool(_SAFE.fullmatch(name)) and not name.startswith(".")
