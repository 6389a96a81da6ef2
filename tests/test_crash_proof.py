"""Scoring that survives its native code: PESQ defined for any length (pieces of at most 60 s),
and a worker process that dies becomes one failed result, not a hang or a lost run."""
from __future__ import annotations

import os
import signal

import numpy as np
import pesq as pesq_lib
import pytest
from test_metrics import SR, clip

from benchmark.scoring import metrics
from benchmark.scoring.workers import CRASH_REASON, Runner


def test_pesq_up_to_the_limit_is_the_reference_implementation():
    sources, mix = clip(n=8 * SR)
    assert metrics.pesq(mix, sources[0], SR) == float(pesq_lib.pesq(SR, sources[0], mix, "nb"))


def test_pesq_of_a_ten_minute_clip_is_the_length_weighted_mean_of_its_pieces():
    # A 10-minute pair makes pesq 0.0.4 segfault when given whole (130 s already does).
    n = 600 * SR
    sources, mix = clip(n=n)
    pieces = metrics.pesq_segments(n, SR)
    assert len(pieces) == 10 and pieces[0] == (0, 60 * SR) and pieces[-1][1] == n
    expected = np.average([pesq_lib.pesq(SR, sources[0][a:b], mix[a:b], "nb") for a, b in pieces],
                          weights=[b - a for a, b in pieces])
    assert metrics.pesq(mix, sources[0], SR) == pytest.approx(expected, abs=1e-12)
    assert 1.0 < expected < 4.6


def test_uneven_lengths_split_into_equal_pieces_that_cover_the_clip():
    pieces = metrics.pesq_segments(int(61.5 * SR), SR)
    assert len(pieces) == 2 and pieces[0][0] == 0 and pieces[1][1] == int(61.5 * SR)
    assert abs((pieces[0][1] - pieces[0][0]) - (pieces[1][1] - pieces[1][0])) <= 1


def _square_or_die(items):
    """A task of the kind run_per_clip gives the pool: a list of items, one result per task."""
    if "die" in items:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a crash in a C library does to the worker
    return [x * 2 for x in items]


def _split(items):
    return [[x] for x in items]


def _crashed(items, reason):
    return [f"failed: {reason}" for _ in items]


@pytest.fixture
def alarm():
    # A broken pool used to hang forever: fail instead of blocking the suite.
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the runner hung after a worker died"))
    signal.alarm(240)
    yield
    signal.alarm(0)


def test_a_dying_worker_costs_only_its_own_item(alarm):
    runner, logs = Runner(2, []), []
    runner.log = logs.append
    try:
        tasks = [["a", "b"], ["c", "die", "d"], ["e"], ["f", "g"]]
        out = sorted(sum(runner.map(_square_or_die, tasks, split=_split, crashed=_crashed), []))
        assert out == sorted(["aa", "bb", "cc", "dd", "ee", "ff", "gg", f"failed: {CRASH_REASON}"])
        assert any("worker process died" in line for line in logs)
        # the runner goes on with a fresh pool for the next model
        assert sorted(sum(runner.map(_square_or_die, [["x"], ["y"]]), [])) == ["xx", "yy"]
    finally:
        runner.close()


def test_a_submitted_task_whose_worker_dies_gets_its_failure(alarm):
    runner = Runner(2, lambda _: None)
    try:
        handles = [runner.submit(_square_or_die, t, crashed=_crashed) for t in (["a"], ["die"], ["b"])]
        assert [h.get() for h in handles] == [["aa"], [f"failed: {CRASH_REASON}"], ["bb"]]
    finally:
        runner.close()
