"""--launcher local (the default): every training in its own `sepbench train` process on this
machine, one after another, then the evaluation in this process."""
from __future__ import annotations

import subprocess
import sys
import time

from recipes.checkpoint import finished_run
from recipes.errors import SepbenchError

from . import Plan, say


def check(options: dict) -> None:
    given = [f"--{k.replace('_', '-')}" for k, v in options.items() if k != "wait" and v is not None]
    if given or not options.get("wait", True):
        raise SepbenchError(f"{', '.join(given) or '--no-wait'}: only with --launcher slurm")


def run(plan: Plan, options: dict) -> list[str]:
    return train(plan) + plan.finish()


def train(plan: Plan) -> list[str]:
    """Each training in its own process, so one crash (even a segfault or OOM kill) cannot take
    the others down. The plan's order is seed by seed: every recipe gets seed 0 before any gets
    seed 1, so a run stopped early still compares every recipe."""
    failed = []
    jobs = plan.trainings
    # Decided here, not in a `sepbench train` process: starting one costs seconds of imports
    # (torch, Lightning) only to say "already trained".
    todo = [t for t in jobs if plan.force or not finished_run(t.run_dir)]
    for i, job in enumerate(jobs, 1):
        if job not in todo:
            say(f"{job.what}: already trained ({i}/{len(jobs)}); --force to retrain")
            continue
        left = [t.cfg["trainer"]["max_minutes"] if t.cfg else None for t in todo[todo.index(job):]]
        eta = f"; at most {sum(left):.0f} min of training left" if None not in left else ""
        say(f"training {job.what} ({i}/{len(jobs)}, profile {job.profile}{eta})")
        cmd = [sys.executable, "-m", "benchmark.cli", *job.argv] + (["--force"] if plan.force else [])
        started = time.monotonic()
        code = subprocess.call(cmd)
        if code != 0:
            failed.append(job.what)
            say(f"training {job.what} FAILED (exit {code}); continuing with the others")
        else:
            say(f"{job.what} done in {time.monotonic() - started:.0f} s")
    return failed
