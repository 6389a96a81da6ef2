"""What a SLURM job runs: submitit pickles one of these callables, and the job's process (on the
compute node, started by srun) unpickles and calls it. A requeued job calls it again from the
start; that is the resume, because `sepbench train` continues an unfinished run from its folder
(the newest of last.ckpt and Lightning's mid-epoch hpc_ckpt_N.ckpt)."""
from __future__ import annotations

import os
import shlex

from recipes.errors import SepbenchError


def _cores() -> int | None:
    """The job's cores: the evaluation's scoring processes (the default, every core of the node,
    would oversubscribe a node shared with other jobs)."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or None


class TrainJob:
    """`sepbench train ...` in the job's own process, so that Lightning's SLURM plugin sees the
    job (its SIGUSR1 handler saves and requeues) and a multi-GPU job's srun tasks are its DDP ranks."""

    def __init__(self, sepbench, argv: list[str], force: bool):
        self.sepbench, self.argv, self.force = sepbench, list(argv), force

    def __call__(self) -> int:
        # --force is for the first start only: a requeued job must resume what it started, not
        # wipe it again. SLURM counts the restarts of a job in SLURM_RESTART_COUNT.
        restarted = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
        argv = self.argv + (["--force"] if self.force and not restarted else [])
        code = self.sepbench(argv)
        if code:
            raise SepbenchError(f"`sepbench {shlex.join(argv)}` exited with {code} (its error is above)")
        return 0


class ShardJob:
    """One task of the evaluation's job array: shard K of N (K from 1), into OUT/cache/shards/N/K.
    Its failures (a checkpoint that cannot be scored) are the merge's to report, once."""

    def __init__(self, finish, n: int):
        self.finish, self.n = finish, n

    def __call__(self, k: int) -> list[str]:
        return self.finish(jobs=_cores(), shard=f"{k}/{self.n}")


class MergeJob:
    """The leaderboard from the shards' rows (or, without shards, the whole evaluation) and the
    listening page. Returns what failed and the digest of the inputs it evaluated, by which a
    re-run knows that this result is still the current one."""

    def __init__(self, finish, inputs, sharded: bool):
        self.finish, self.inputs, self.sharded = finish, inputs, sharded

    def __call__(self) -> dict:
        failed = self.finish(jobs=_cores(), merge=self.sharded)
        return {"failed": failed, "inputs": self.inputs()}
