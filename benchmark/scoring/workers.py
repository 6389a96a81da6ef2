"""How `sepbench evaluate` computes one model's rows, in one of two ways:

- per clip (`batch=1`, the CPU default): each worker process loads the model once and separates
  and scores its share of the clips, the model on one torch thread (with any --jobs, so the
  scores do not depend on it);
- batched (`batch>1`, the GPU default): this process runs the model on batches of equal-length
  clips (on the GPU when there is one) while the worker processes score the estimates that
  arrive; a bounded number wait, so memory stays flat on any test set.

Batching is exact (every model treats batch items independently) but on the CPU it helps only
some models (BiLSTMs ~2x, Conv-TasNet 0.7x: perf/RESULTS.md), hence the defaults.
References (mixture, oracles) are always scored per clip: they have no model to batch.
"""
from __future__ import annotations

import collections
import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import soundfile as sf
import torch

from recipes.checkpoint import load_model
from recipes.data import FolderDataset

from ..separate.core import LONG_CLIP_S, separate, separate_clip
from . import metrics, references

# A batch holds at most this many samples (160 s at 16 kHz), so long clips or high sample
# rates shrink the batch instead of running out of memory.
MAX_BATCH_SAMPLES = 16 * 10 * 16000

# ---- worker side: runs in each worker process ----
_LOADED: dict[tuple[str, str], torch.nn.Module] = {}


def _model(spec: tuple[str, str], device: str) -> torch.nn.Module:
    if spec not in _LOADED:
        _LOADED.clear()  # models are scored one after another: hold only the current one
        _LOADED[spec] = load_model(spec[1])[0].to(device)
    return _LOADED[spec]


def _reason(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"separation failed: {type(exc).__name__}: {first}"


def _row(meta: dict, sr: int, inputs: dict, est: np.ndarray | None, sources, mix, seconds: float,
         failure: str = "") -> dict:
    """One results row: the clip's identity, its scores (or NaNs and the reason) and timing."""
    if not failure and est.shape != sources.shape:
        failure = f"separation failed: estimate has shape {tuple(est.shape)}, expected {tuple(sources.shape)}"
    scored = (metrics.failed_row(sr, inputs, failure) if failure
              else metrics.score_clip(est, sources, mix, sr, inputs))
    seconds = math.nan if failure else seconds
    duration = len(mix) / sr
    return {"clip_id": meta["id"], "snr_label": meta["snr_label"], "snr_measured": inputs["snr_measured"],
            "sample_rate": sr, "duration_s": duration, **scored, "sep_seconds": seconds,
            "rtf": seconds / duration}


def _run_task(task) -> tuple[list[dict], float]:
    """Per-clip mode: separate (model or reference) and score a list of clips."""
    spec, clips, inputs, device = task
    with references.one_torch_thread():
        return _run_clips(spec, clips, inputs, device)


def _run_clips(spec, clips, inputs, device) -> tuple[list[dict], float]:
    start, rows = time.perf_counter(), []
    dataset = FolderDataset(clips)
    sr = dataset.sample_rate
    for i in range(len(dataset)):
        mix, sources, meta = dataset[i]
        mix, sources = mix.numpy(), sources.numpy()
        if spec[0] == "inputs":
            rows.append({"clip_id": meta["id"], **metrics.input_scores(sources, mix, sr, dnsmos=spec[1] == "+dnsmos")})
            continue
        t0, est, failure = time.perf_counter(), None, ""
        try:
            if spec[0] == "reference":
                est = references.estimate(spec[1], mix, sources, sr)
            else:
                est = separate_clip(_model(spec, device), mix, sr, device=device)
        except Exception as exc:  # one clip's failure is a row with its reason, not the end of the run
            failure = _reason(exc)
        rows.append(_row(meta, sr, inputs[meta["id"]], est, sources, mix, time.perf_counter() - t0, failure))
    return rows, time.perf_counter() - start


def _score_estimate(task) -> dict:
    """Batched mode, worker side: score one estimate made in the main process."""
    clip, sr, est, seconds, inputs, failure = task
    mix, sources, meta = FolderDataset([clip])[0]
    return _row(meta, sr, inputs, est, sources.numpy(), mix.numpy(), seconds, failure)


def _crashed_estimate(task, reason: str) -> dict:
    clip, sr, _, _, inputs, _ = task
    mix, sources, meta = FolderDataset([clip])[0]
    return _row(meta, sr, inputs, None, sources.numpy(), mix.numpy(), math.nan, reason)


@contextlib.contextmanager
def _thread_env(threads: int):
    """Spawned workers start with `threads` OpenMP/BLAS threads each (unless the user chose):
    N workers x all-core thread pools oversubscribe the CPU, and spinning OpenMP threads then made
    a tiny model 10-100x slower on a busy 2-core machine. Set through the environment the
    children inherit at start (_launch), so OpenMP and OpenBLAS make their pools at that size."""
    wanted = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
              # numpy/scipy's OpenBLAS only serves the metrics; its idle threads spin and take
              # the cores from the model (see evaluate.py), so one is enough.
              "OPENBLAS_NUM_THREADS": 1}
    saved = {n: os.environ.get(n) for n in wanted}
    os.environ.update({n: str(v) for n, v in wanted.items() if saved[n] is None})
    try:
        yield
    finally:
        for n, value in saved.items():
            if value is None:
                os.environ.pop(n, None)


def _launch(pool: ProcessPoolExecutor, n: int) -> None:
    """Start a spawn pool's `n` processes now, inside _thread_env: the pool starts a process per
    submitted task (while none is idle), not when it is made, so workers started by the first
    task after _thread_env had ended ran torch's 2 OpenMP threads each, and --jobs 2 was no
    faster than --jobs 1 on 2 cores. No worker is idle before all are up (_warm's barrier)."""
    for k in range(n):
        pool.submit(_ready, k)


def _warm(barrier) -> None:
    """Worker start: import what metrics import lazily, then wait until every worker is ready,
    so start-up is paid before the first model's clock starts."""
    # Ctrl-C reaches the whole process group: the parent stops the pool (Runner.close), and a
    # worker's own KeyboardInterrupt would only print a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Warm-up on purpose: the one import metrics.py makes late (it pulls in torch).
    import fast_bss_eval  # noqa: F401
    if barrier is not None:
        with contextlib.suppress(threading.BrokenBarrierError):  # a late worker starts anyway
            barrier.wait(timeout=300)


def _ready(_) -> int:
    return os.getpid()


CRASH_REASON = "the scoring process died (a crash in a metric's or model's native code)"


def _stop(pool: ProcessPoolExecutor) -> None:
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()  # a clean shutdown would first finish the queued tasks
    pool.shutdown(wait=False, cancel_futures=True)


class Runner:
    """Runs tasks on a lazily started pool of `jobs` spawned worker processes, with jobs=1 too:
    run in this process, a segfault in a metric's or model's native code ended the whole
    evaluation (exit 139, nothing written). Spawn, because a forked torch/OpenMP or CUDA state
    is unsafe in the child.

    A worker that dies (a segfault in a C library, the OOM killer) breaks the pool; the items of
    the tasks it took down are run again one at a time per process (_isolated), so the item that
    kills its process again is known and becomes `crashed(item, reason)` instead of a hang or a
    lost run."""

    def __init__(self, jobs: int, log):
        self.jobs, self.pool, self.log = max(1, jobs), None, log

    def start(self):
        if self.pool is None:
            start = time.perf_counter()
            self.pool = self._new_pool(self.jobs)
            # returns once every worker passed _warm
            list(self.pool.map(_ready, range(self.jobs), chunksize=1))
            self.log(f"started {self.jobs} worker process{'es' if self.jobs > 1 else ''} in "
                     f"{time.perf_counter() - start:.1f} s")
        return self.pool

    def _new_pool(self, n: int, share: int | None = None) -> ProcessPoolExecutor:
        """n workers; `share`: how many processes split the cores (n unless given)."""
        ctx = multiprocessing.get_context("spawn")
        with _thread_env(max(1, (os.cpu_count() or 1) // (share or n))):
            pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_warm,
                                       initargs=(ctx.Barrier(n) if n > 1 else None,))
            _launch(pool, n)
        return pool

    def _drop_pool(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def map(self, fn, tasks, split=None, crashed=None):
        """fn over tasks, results in completion order; the workers start (and the tasks are
        queued) before this returns. After a crash, `split(task)` gives the task's one-item tasks
        to retry alone and `crashed(item, reason)` the result of one that kills its process again."""
        pool = self.start()
        return self._results(fn, {pool.submit(fn, t): t for t in tasks}, split, crashed)

    def _results(self, fn, pending: dict, split, crashed):
        broken = []
        for future in as_completed(pending):
            try:
                yield future.result()
            except BrokenProcessPool:
                broken.append(pending[future])
        if broken:
            self._drop_pool()
            items = [item for task in broken for item in (split(task) if split else [task])]
            self.log(f"a worker process died: running the {len(items)} clip(s) it may have held again, "
                     "one at a time per process")
            yield from self._isolated(fn, items, crashed)

    def submit(self, fn, task, crashed=None):
        pool = self.start()
        return _Pending(self, pool, fn, task, pool.submit(fn, task), crashed)

    def _isolated(self, fn, items, crashed):
        """fn over items, each in a process that runs nothing else meanwhile, so that a process
        that dies was killed by its item. Up to `jobs` single-worker pools ("lanes") work side by
        side, each given its next item when the last one returned; a lane is started again only
        after a crash, so a retry costs one process start per crash, not one per item (with
        1000 clips queued behind a crash, that was 1000 starts of a few seconds each)."""
        queue, lanes = collections.deque(items), {}

        def feed(pool):
            if not queue:
                pool.shutdown(wait=False)
                return
            item = queue.popleft()
            lanes[pool.submit(fn, item)] = (pool, item)

        try:
            for _ in range(min(self.jobs, len(queue))):
                feed(self._new_pool(1, share=self.jobs))
            while lanes:
                done, _ = wait(lanes, return_when=FIRST_COMPLETED)
                for future in done:
                    pool, item = lanes.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        if crashed is None:
                            raise
                        result = crashed(item, CRASH_REASON)
                        pool = self._new_pool(1, share=self.jobs) if queue else None
                    except BaseException:
                        _stop(pool)
                        raise
                    if pool is not None:
                        feed(pool)
                    yield result
        finally:
            for pool, _ in lanes.values():
                _stop(pool)

    def _alone(self, fn, task, crashed):
        """Run one task in a fresh process of its own: if it dies, this task killed it."""
        return list(self._isolated(fn, [task], crashed))[0]

    def close(self):
        if self.pool is not None:
            _stop(self.pool)
            self.pool = None


class _Pending:
    """A task on the pool; if the pool broke under it, it is run again alone (Runner._alone)."""

    def __init__(self, runner: Runner, pool, fn, task, future, crashed):
        self.runner, self.pool, self.fn, self.task, self.future, self.crashed = runner, pool, fn, task, future, crashed

    def get(self):
        try:
            return self.future.result()
        except BrokenProcessPool:
            if self.runner.pool is self.pool:  # the first of its tasks to notice: replace the pool
                self.runner._drop_pool()
                self.runner.log("a worker process died: scoring the estimates it held again one at a time")
            return self.runner._alone(self.fn, self.task, self.crashed)


def _one_clip_tasks(task) -> list:
    spec, clips, inputs, device = task
    return [(spec, [c], {c.id: inputs[c.id]} if inputs else None, device) for c in clips]


def _crashed_task(task, reason: str) -> tuple[list[dict], float]:
    """The row of a one-clip task whose process died: NaN scores and the reason, made here from
    the audio alone (no metric's native code runs in this process)."""
    spec, (clip,), inputs, _ = task
    mix, sources, meta = FolderDataset([clip])[0]
    mix, sources, sr = mix.numpy(), sources.numpy(), int(meta["sample_rate"])
    if spec[0] == "inputs":
        row = {c: math.nan for c in metrics.score_columns(sr) if c.startswith("input_")}
        row.update(snr_measured=metrics.snr_measured(sources, mix), pesq_sample_rate=metrics.pesq_mode(sr)[1],
                   failure_reason=f"input scores failed: {reason}")
        return [{"clip_id": meta["id"], **row}], 0.0
    return [_row(meta, sr, inputs[meta["id"]], None, sources, mix, math.nan, reason)], 0.0


def run_per_clip(runner: Runner, spec, clips, inputs, device) -> tuple[list[dict], float]:
    size = max(1, math.ceil(len(clips) / (runner.jobs * 4)))  # a few tasks per worker balance the load
    tasks = [(spec, clips[i:i + size], {c.id: inputs[c.id] for c in clips[i:i + size]} if inputs else None, device)
             for i in range(0, len(clips), size)]
    # starts the workers first, so their start-up is not on this clock
    parts = runner.map(_run_task, tasks, split=_one_clip_tasks, crashed=_crashed_task)
    start, rows = time.perf_counter(), []
    for part, _ in parts:
        rows.extend(part)
    return sorted(rows, key=lambda r: r["clip_id"]), time.perf_counter() - start


def mixture_rows(clips, inputs, sample_rate: int) -> tuple[list[dict], float]:
    """The `mixture` reference's rows, read off the baseline (metrics.mixture_scores): nothing is
    separated and nothing scored again, so its separation time is 0."""
    start, rows = time.perf_counter(), []
    for clip in clips:
        base = inputs[clip.id]
        duration = sf.info(str(clip.mix)).frames / sample_rate
        rows.append({"clip_id": clip.id, "snr_label": clip.snr_label, "snr_measured": base["snr_measured"],
                     "sample_rate": sample_rate, "duration_s": duration, **metrics.mixture_scores(base, sample_rate),
                     "sep_seconds": 0.0, "rtf": 0.0})
    return sorted(rows, key=lambda r: r["clip_id"]), time.perf_counter() - start


def batches(lengths: list[int], batch: int, sample_rate: int) -> list[list[int]]:
    """Clip indices grouped by equal length, at most `batch` (and MAX_BATCH_SAMPLES) per group;
    clips long enough to be chunked go alone."""
    groups: dict[int, list[int]] = collections.defaultdict(list)
    for i, n in enumerate(lengths):
        groups[n].append(i)
    out = []
    for n, members in sorted(groups.items()):
        size = 1 if n > LONG_CLIP_S * sample_rate else max(1, min(batch, MAX_BATCH_SAMPLES // max(n, 1)))
        out += [members[k:k + size] for k in range(0, len(members), size)]
    return out


def run_batched(runner: Runner, spec, clips, inputs, device, batch: int) -> tuple[list[dict], float]:
    runner.start()  # start-up off the clock, as in run_per_clip
    start = time.perf_counter()
    model = load_model(spec[1])[0].to(device)
    dataset = FolderDataset(clips)
    sr = dataset.sample_rate
    pending, rows = collections.deque(), []
    for group in batches(dataset.lengths, batch, sr):
        mixes = np.stack([dataset[i][0].numpy() for i in group])
        t0, est, failure = time.perf_counter(), None, ""
        try:
            est = (separate_clip(model, mixes[0], sr, device=device)[None] if len(group) == 1
                   else separate(model, mixes, device=device))
        except Exception as exc:
            failure = _reason(exc) + (f" (in a batch of {len(group)}: try --batch 1)" if len(group) > 1 else "")
        seconds = (time.perf_counter() - t0) / len(group)  # the batch's time, shared equally
        for k, i in enumerate(group):
            clip = clips[i]
            task = (clip, sr, None if failure else est[k], seconds, inputs[clip.id], failure)
            pending.append(runner.submit(_score_estimate, task, crashed=_crashed_estimate))
        while len(pending) > 4 * max(runner.jobs, batch):  # bounded: estimates wait in memory
            rows.append(pending.popleft().get())
    rows += [p.get() for p in pending]
    return sorted(rows, key=lambda r: r["clip_id"]), time.perf_counter() - start
