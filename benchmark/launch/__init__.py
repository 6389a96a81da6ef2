"""Where run_all's work runs: `local` (one process after another on this machine, the default)
or `slurm` (one SLURM job per recipe x seed, then the evaluation as an array of shard jobs and one
job that merges them into the leaderboard and listening page). run_all decides what the
work is (a Plan); a launcher only decides where and when it runs, so both run the very same
`sepbench train` arguments and the same evaluation call."""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from recipes.errors import SepbenchError

# launcher name -> module with check(options) and run(plan, options) -> failures. Imported only
# when chosen: the slurm one imports submitit, which a local run never needs.
LAUNCHERS = {"local": "benchmark.launch.local", "slurm": "benchmark.launch.slurm"}


def say(text: str) -> None:
    print(f"[run_all] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Training:
    """One recipe x seed."""
    what: str                # "lstm_mask", or "lstm_mask seed 1" when there are several seeds
    run_dir: Path            # its run folder: recipes.checkpoint.finished_run says whether it is done
    profile: str
    argv: tuple[str, ...]    # the `sepbench` arguments that train it ("train", recipe, ...), without --force
    cfg: dict | None         # its resolved config (budget, devices, workers); None if it does not resolve,
    problem: str | None = None  # and then why (its training reports the same error)


@dataclass(frozen=True)
class Plan:
    trainings: tuple[Training, ...]
    force: bool                          # retrain and re-evaluate everything
    runs: Path                           # the runs folder (the slurm launcher keeps its records there)
    sepbench: Callable[[list[str]], int]  # `sepbench ARGS` in this process, the exit code
    # finish(jobs=None, shard=None, merge=False): the evaluation and listening page, what failed;
    # shard="K/N" scores shard K only, merge=True takes the rows the shards have scored.
    finish: Callable[..., list[str]]
    test_clips: Callable[[], int]        # caps the shard count: no shard may be empty
    # A digest of what the evaluation reads (checkpoints, test files) by path, size and mtime: an
    # evaluation job that finished on the same inputs leaves nothing to redo.
    inputs: Callable[[], str]
    finish_key: str = field(default="")  # what the evaluation depends on besides the trainings


def get(name: str):
    if name not in LAUNCHERS:
        raise SepbenchError(f"unknown launcher {name!r}; choose from {', '.join(LAUNCHERS)}")
    return importlib.import_module(LAUNCHERS[name])
