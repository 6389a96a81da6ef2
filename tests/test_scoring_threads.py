"""Thread settings of the scoring processes. Each worker must start with the environment that
workers._thread_env sets (a spawn pool starts its processes at its first task, not when it is
made, and they once all started after that block had ended, with torch's 2 OpenMP threads
each); and a per-clip task runs torch on one thread also in a process whose torch has more, as
two shards side by side each had."""
from __future__ import annotations

import math
import os

import pytest
import torch

from benchmark.scoring import workers
from benchmark.scoring.workers import Runner
from recipes.folder import load_split

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _threads(names) -> tuple[dict, int]:
    return {n: os.environ.get(n) for n in names}, torch.get_num_threads()


@pytest.mark.parametrize("jobs", [1, 2])
def test_workers_start_with_their_thread_environment(monkeypatch, jobs):
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    runner = Runner(jobs, lambda _: None)
    try:
        seen = list(runner.map(_threads, [THREAD_VARS] * (2 * jobs)))
    finally:
        runner.close()
    share = max(1, (os.cpu_count() or 1) // jobs)
    assert len(seen) == 2 * jobs
    for env, torch_threads in seen:
        assert env == {"OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share), "OPENBLAS_NUM_THREADS": "1"}
        assert torch_threads == share
    assert all(os.environ.get(n) is None for n in THREAD_VARS)  # this process's own environment is given back


def test_a_per_clip_task_runs_torch_on_one_thread(tiny_data, monkeypatch):
    seen, estimate = [], workers.references.estimate

    def spy(*args):
        seen.append(torch.get_num_threads())
        return estimate(*args)

    monkeypatch.setattr(workers.references, "estimate", spy)
    clips = load_split(tiny_data / "test")[:2]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inputs = {r["clip_id"]: r for r in workers._run_task((("inputs", ""), clips, None, "cpu"))[0]}
        rows, _ = workers._run_task((("reference", "oracle_irm"), clips, inputs, "cpu"))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1]
    assert after == 2  # the task gives the process its threads back
    assert len(rows) == 2 and all(math.isfinite(r["voice_sisdr"]) for r in rows)
