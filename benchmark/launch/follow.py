"""The waiting half of --launcher slurm: every job's state as it changes, one line each, until
all have ended; then what failed. A job that depends on one that failed would wait forever
(afterok is never satisfied), so it is cancelled at once, and a re-run submits what is missing."""
from __future__ import annotations

import subprocess
import time

from recipes.errors import SepbenchError

from . import say
from .queue import LIVE, Job

TRAIN, SHARD, MERGE = "training", "shard", "merge"
# What runs only after every job of a kind succeeded.
AFTER = {TRAIN: (SHARD, MERGE), SHARD: (MERGE,)}


def scancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], check=False, capture_output=True, timeout=60)


def wait(jobs: dict[str, tuple[str, Job]], poll_seconds: float) -> list[str]:
    """`jobs`: {what: (kind, job)}, the merge job under "evaluation". Returns what failed."""
    try:
        ended = _follow(jobs, poll_seconds)
    except KeyboardInterrupt:
        raise SepbenchError("stopped waiting (Ctrl-C); the jobs go on: the same command again waits for them") from None
    failed = []
    for what, state in ended.items():
        job = jobs[what][1]
        if state != "COMPLETED":
            failed.append(what)
            log = f"its log: {job.paths.stderr}" if job.paths.stderr.is_file() else "it never started"
            say(f"{what} (job {job.job_id}) ended {state}; {log}")
    if ended.get("evaluation") == "COMPLETED":
        merge = jobs["evaluation"][1]
        try:
            failed += merge.result()["failed"]  # already "evaluation: ..."
        except Exception:  # it ended COMPLETED without a result: name the log instead
            failed.append("evaluation")
            say(f"evaluation (job {merge.job_id}) left no result; its log: {merge.paths.stderr}")
    return failed


def _follow(jobs: dict[str, tuple[str, Job]], poll_seconds: float) -> dict[str, str]:
    seen: dict[str, str] = {}
    ended: dict[str, str] = {}
    while len(ended) < len(jobs):
        for what, (_, job) in jobs.items():
            if what in ended:
                continue
            state = job.state.split()[0]  # "CANCELLED by 0" -> CANCELLED
            if state != seen.get(what):
                say(f"job {job.job_id} ({what}): " + (f"{seen[what]} -> {state}" if what in seen else state))
                seen[what] = state
            if state != "UNKNOWN" and state not in LIVE:
                ended[what] = state
        for bad in {jobs[w][0] for w, state in ended.items() if state != "COMPLETED"}:
            for what, (kind, job) in jobs.items():
                if kind in AFTER.get(bad, ()) and what not in ended:
                    scancel(job.job_id)
                    say(f"job {job.job_id} ({what}) cancelled: it runs only after every {bad} job succeeded")
                    ended[what] = "CANCELLED"
        if len(ended) < len(jobs):
            time.sleep(poll_seconds)
    return ended
