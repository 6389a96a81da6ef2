"""RUNS/.slurm/jobs.json: the jobs a slurm run_all submitted, so that a re-run knows which
trainings and which evaluation jobs are still queued or running and submits only what is missing.
Written whole (temporary file + rename): a run_all killed while writing it leaves the old one."""
from __future__ import annotations

import json
from pathlib import Path

from recipes.errors import SepbenchError
from recipes.files import atomic_write_text

NAME = "jobs.json"


def load(folder: Path) -> dict:
    """{"trainings": {run folder: job id}, "evaluation": None or {"key": what it evaluates,
    "after": the training jobs it waited for, "shards": the shard array's job id or None, "n": the
    shard count, "merge": the merge job's id}}."""
    path = folder / NAME
    if not path.is_file():
        return {"trainings": {}, "evaluation": None}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ev = data.get("evaluation") if isinstance(data, dict) else None
        ok = isinstance(data, dict) and isinstance(data.get("trainings"), dict) and (
            ev is None or isinstance(ev, dict) and {"key", "after", "shards", "n", "merge"} <= set(ev))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise SepbenchError(f"{path}: not a record of submitted jobs (damaged?); move it aside to start a new one "
                            "(jobs it named that are still queued would then be submitted again)")
    return {"trainings": data["trainings"], "evaluation": data.get("evaluation")}


def save(folder: Path, record: dict) -> None:
    atomic_write_text(folder / NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
