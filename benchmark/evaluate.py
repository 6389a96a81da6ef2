"""`sepbench evaluate`: every checkpoint (plus mixture and oracle rows) x every test clip ->
tidy per-clip rows (results.csv) -> summary.csv -> LEADERBOARD.md and a plot.

Each model's rows are cached under OUT/cache/ by (checkpoint content hash, test set content hash,
benchmark version), so a re-run evaluates nothing new. The mixture's own scores (the baseline of
every improvement) are computed once per clip and cached the same way. Work is spread over
processes clip by clip; each worker loads a model once. Every output is written to a temporary
file and renamed, so an interrupted run leaves the previous leaderboard as it was.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recipes.audio import atomic_path
from recipes.checkpoint import git_commit, load_model
from recipes.data import FOLDER_RE, FolderDataset, content_hash, load_split
from recipes.errors import SepbenchError

from . import __version__, aggregate, metrics, references
from .separate import separate_clip

HELP = "score every trained checkpoint on a test set and write the leaderboard"
SCORING_VERSION = 1  # bump when scores change meaning: it invalidates every cache entry
BENCHMARK_VERSION = f"{__version__}+s{SCORING_VERSION}"


@dataclass(frozen=True)
class Entry:
    """One leaderboard row source: a trained checkpoint or a reference."""
    model: str
    profile: str
    kind: str
    checkpoint: str = ""  # absolute path; '' for references
    checkpoint_rel: str = ""
    checkpoint_hash: str = ""
    card: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.profile}" if self.kind == "trained" else self.model

    @property
    def spec(self) -> tuple[str, str]:
        return ("trained", self.checkpoint) if self.kind == "trained" else ("reference", self.model)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def discover(runs: Path, log) -> tuple[list[Entry], list[str]]:
    """Finished runs under runs/<recipe>/<profile>/ (best.pt + card.json); others get a note."""
    entries, errors = [], []
    if not runs.is_dir():
        log(f"note: {runs}: no runs folder; only reference rows will be scored")
        return entries, errors
    for run in sorted(p for p in runs.glob("*/*") if p.is_dir()):
        ckpt, card_path = run / "best.pt", run / "card.json"
        missing = [p.name for p in (ckpt, card_path) if not p.is_file()]
        if missing:
            log(f"note: skipped {run}: no {' or '.join(missing)} (training not finished?)")
            continue
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            errors.append(f"{card_path}: unreadable run card ({exc})")
            continue
        if card.get("status", "complete") != "complete":
            log(f"note: skipped {run}: run status is {card.get('status')!r}, not 'complete'")
            continue
        entries.append(Entry(str(card.get("recipe", run.parent.name)), str(card.get("profile", run.name)), "trained",
                             str(ckpt.resolve()), f"{runs.name}/{ckpt.relative_to(runs).as_posix()}",
                             file_hash(ckpt), card))
    return entries, errors


def _test_clips(data: Path):
    if not data.is_dir():
        raise SepbenchError(f"{data}: test folder does not exist")
    if (data / "test").is_dir() and not any(FOLDER_RE.match(p.name) for p in data.iterdir() if p.is_dir()):
        data = data / "test"  # a data set root was given: use its test split
    return data, load_split(data)


# ---- worker side: runs in each process (or in-process with jobs=1) ----
_LOADED: dict[tuple[str, str], torch.nn.Module] = {}


def _model(spec: tuple[str, str], device: str) -> torch.nn.Module:
    if spec not in _LOADED:
        _LOADED.clear()  # models are scored one after another: hold only the current one
        _LOADED[spec] = load_model(spec[1])[0].to(device)
    return _LOADED[spec]


def _estimate(spec, mix: np.ndarray, sources: np.ndarray, sr: int, device: str) -> np.ndarray:
    if spec[0] == "reference":
        return references.estimate(spec[1], mix, sources, sr)
    return separate_clip(_model(spec, device), mix, sr, device=device)


def _score(spec, mix, sources, sr, inputs: dict, device: str) -> dict:
    start = time.perf_counter()
    try:
        est = _estimate(spec, mix, sources, sr, device)
        if est.shape != sources.shape:
            raise ValueError(f"estimate has shape {tuple(est.shape)}, expected {tuple(sources.shape)}")
    except Exception as exc:  # one clip's failure is a row with its reason, not the end of the run
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {**metrics.failed_row(sr, inputs, f"separation failed: {type(exc).__name__}: {first}"),
                "sep_seconds": math.nan}
    seconds = time.perf_counter() - start
    return {**metrics.score_clip(est, sources, mix, sr, inputs), "sep_seconds": seconds}


def _run_task(task) -> tuple[list[dict], float]:
    spec, clips, inputs, device = task
    start, rows = time.perf_counter(), []
    dataset = FolderDataset(clips)
    sr = dataset.sample_rate
    for i in range(len(dataset)):
        mix, sources, meta = dataset[i]
        mix, sources = mix.numpy(), sources.numpy()
        if spec[0] == "inputs":
            rows.append({"clip_id": meta["id"], **metrics.input_scores(sources, mix, sr)})
            continue
        row = _score(spec, mix, sources, sr, inputs[meta["id"]], device)
        duration = len(mix) / sr
        rows.append({"clip_id": meta["id"], "snr_label": meta["snr_label"],
                     "snr_measured": inputs[meta["id"]]["snr_measured"], "sample_rate": sr,
                     "duration_s": duration, **row, "rtf": row["sep_seconds"] / duration})
    return rows, time.perf_counter() - start


@contextlib.contextmanager
def _thread_env(threads: int):
    """Spawned workers start with `threads` OpenMP/BLAS threads each (unless the user chose):
    N workers x all-core thread pools oversubscribe the CPU, and spinning OpenMP threads then made
    a tiny model 10-100x slower on a busy 2-core machine. Set through the environment the
    children inherit at start, not torch.set_num_threads (which breaks torch-backed SDR solvers)."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names if saved[n] is None})
    try:
        yield
    finally:
        for n, value in saved.items():
            if value is None:
                os.environ.pop(n, None)


def _warm(barrier) -> None:
    """Worker start: import what metrics import lazily, then wait until every worker is ready,
    so start-up is paid before the first model's clock starts."""
    import threading

    import fast_bss_eval, pesq, pystoi, scipy.signal  # noqa: F401,E401
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:  # a replacement worker after a crash: start anyway
        pass


def _ready(_) -> int:
    return os.getpid()


class _Runner:
    """Maps tasks in-process (jobs=1) or over a lazily started spawn pool: spawn, because a
    forked torch/OpenMP or CUDA state is unsafe in the child."""

    def __init__(self, jobs: int, log):
        self.jobs, self.pool, self.log = jobs, None, log

    def map(self, tasks):
        if self.jobs <= 1 or len(tasks) <= 1:
            return map(_run_task, tasks)
        if self.pool is None:
            start = time.perf_counter()
            ctx = multiprocessing.get_context("spawn")
            with _thread_env(max(1, (os.cpu_count() or 1) // self.jobs)):
                self.pool = ctx.Pool(self.jobs, initializer=_warm, initargs=(ctx.Barrier(self.jobs),))
            self.pool.map(_ready, range(self.jobs), chunksize=1)  # returns once all passed _warm
            self.log(f"started {self.jobs} worker processes in {time.perf_counter() - start:.1f} s")
        return self.pool.imap_unordered(_run_task, tasks)

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _run_all(runner: _Runner, spec, clips, inputs, device) -> tuple[list[dict], float]:
    size = max(1, math.ceil(len(clips) / (runner.jobs * 4)))  # a few tasks per worker balance the load
    tasks = [(spec, clips[i:i + size], {c.id: inputs[c.id] for c in clips[i:i + size]} if inputs else None, device)
             for i in range(0, len(clips), size)]
    parts = runner.map(tasks)  # starts the workers first, so their start-up is not on this clock
    start, rows = time.perf_counter(), []
    for part, _ in parts:
        rows.extend(part)
    return sorted(rows, key=lambda r: r["clip_id"]), time.perf_counter() - start


def _cached(path: Path, clips, force: bool) -> pd.DataFrame | None:
    if force or not path.is_file():
        return None
    try:
        df = aggregate.read_results(path)
    except Exception:  # a damaged cache file is simply recomputed
        return None
    return df if sorted(df["clip_id"]) == sorted(c.id for c in clips) else None


def _unusable(entry: Entry, sample_rate: int) -> str | None:
    """Why a checkpoint cannot be scored (checked once here, before any worker loads it)."""
    try:
        _, payload = load_model(entry.checkpoint)
    except SepbenchError as exc:
        return str(exc)
    if payload["sample_rate"] != sample_rate:
        return f"{entry.checkpoint_rel}: trained at {payload['sample_rate']} Hz, test set is {sample_rate} Hz; not scored"
    return None


def evaluate(data, runs="runs", out="leaderboard", jobs: int | None = None, force: bool = False,
             with_references: bool = True, device: str = "auto", log=print) -> dict:
    """Score, aggregate and render. Returns the output paths plus `evaluated` and `cached`
    (model counts) and `failed` (one message per checkpoint that could not be scored)."""
    data, clips = _test_clips(Path(data))
    runs, out = Path(runs), Path(out)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SepbenchError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    sr = FolderDataset(clips).sample_rate  # also checks that every clip's files agree
    data_hash, commit = content_hash(clips), git_commit()
    entries, failed = discover(runs, log)
    for message in failed:
        log(f"error: {message}")
    if with_references:
        entries += [Entry(name, "-", references.kind(name)) for name in references.names()]
    if not entries:
        raise SepbenchError(f"nothing to evaluate: no finished runs under {runs} and references are off")
    cache, tail = out / "cache", f"{data_hash}__{BENCHMARK_VERSION}.csv"
    runner, inputs, frames = _Runner(max(1, jobs or os.cpu_count() or 1), log), None, []
    counts = {"evaluated": 0, "cached": 0}
    try:
        for entry in entries:
            path = cache / f"{entry.model}__{entry.profile}__{entry.checkpoint_hash or 'ref'}__{tail}"
            df = _cached(path, clips, force)
            if df is not None:
                df["checkpoint"] = entry.checkpoint_rel  # the run folder may have moved since
                counts["cached"] += 1
                log(f"{entry.label:<28} cached")
                frames.append(df)
                continue
            problem = _unusable(entry, sr) if entry.kind == "trained" else None
            if problem:
                failed.append(problem)
                log(f"error: {problem}")
                continue
            if inputs is None:
                inputs = _inputs(runner, clips, cache / f"inputs__{tail}", force, device, log)
            rows, wall = _run_all(runner, entry.spec, clips, inputs, device)
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            df = pd.DataFrame([{"model": entry.model, "profile": entry.profile, "kind": entry.kind, **r,
                                "checkpoint": entry.checkpoint_rel, "checkpoint_hash": entry.checkpoint_hash,
                                "evaluated_at": stamp, "git_commit": commit} for r in rows])
            aggregate.write_csv(df, path)
            counts["evaluated"] += 1
            frames.append(df)
            n_bad = int((df["failure_reason"] != "").sum())
            log(f"{entry.label:<28} {len(rows)} clips in {wall:.1f} s ({len(rows) / wall:.1f} clips/s, "
                f"separation RTF {df['rtf'].mean():.4f}){f', {n_bad} with failures' if n_bad else ''}")
    finally:
        runner.close()
    if not frames:
        raise SepbenchError("no model could be scored: " + "; ".join(failed))
    return {**_write_outputs(frames, entries, data, data_hash, len(clips), out, log), **counts, "failed": failed}


def _inputs(runner, clips, path: Path, force: bool, device: str, log) -> dict:
    df = _cached(path, clips, force)
    if df is None:
        rows, wall = _run_all(runner, ("inputs", ""), clips, None, device)
        df = pd.DataFrame(rows)
        aggregate.write_csv(df, path)
        log(f"{'(mixture baseline)':<28} {len(rows)} clips in {wall:.1f} s ({len(rows) / wall:.1f} clips/s)")
    df["failure_reason"] = df["failure_reason"].fillna("")
    return {r["clip_id"]: r for r in df.to_dict("records")}


def _write_outputs(frames, entries, data, data_hash, n_clips, out: Path, log) -> dict:
    from leaderboard import render  # imported late: matplotlib is only needed at the end

    results = aggregate.sort_results(pd.concat(frames, ignore_index=True))
    summary = aggregate.summarize(results)
    cards = {(e.model, e.profile): e.card for e in entries if e.kind == "trained"}
    info = {"data": str(data), "data_hash": data_hash, "n_clips": n_clips,
            "date": str(results["evaluated_at"].max()), "git_commit": ", ".join(sorted(set(results["git_commit"]))),
            "version": BENCHMARK_VERSION, "sample_rate": int(results["sample_rate"].iloc[0])}
    paths = {"results": out / "results.csv", "summary": out / "summary.csv",
             "leaderboard": out / "LEADERBOARD.md", "plot": out / render.PLOT_NAME}
    markdown, png = render.render(summary, cards, info), render.plot_png(summary)
    # Everything is staged in temporary files first and renamed only once all are complete:
    # an interruption leaves the previous set of outputs whole and consistent.
    with contextlib.ExitStack() as stack:
        tmp = {key: stack.enter_context(atomic_path(path)) for key, path in paths.items()}
        aggregate.write_csv(results, tmp["results"])
        aggregate.write_csv(summary, tmp["summary"])
        tmp["plot"].write_bytes(png)
        tmp["leaderboard"].write_text(markdown, encoding="utf-8")
    log("")
    log(render.main_table(summary, cards))
    log(f"\nwrote {paths['leaderboard']}")
    return paths


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="test split folder (numbered clip folders), or a data set "
                        "root holding test/")
    parser.add_argument("--runs", default="runs", help="runs folder: runs/<recipe>/<profile>/best.pt + card.json")
    parser.add_argument("--out", default="leaderboard", help="output folder (results, summary, LEADERBOARD.md, cache/)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: number of cores)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where models run")
    parser.add_argument("--force", action="store_true", help="re-evaluate even what the cache holds")
    parser.add_argument("--no-references", action="store_true", help="skip the mixture and oracle rows")


def run(args) -> int:
    result = evaluate(args.data, args.runs, args.out, jobs=args.jobs, force=args.force,
                      with_references=not args.no_references, device=args.device)
    return 1 if result["failed"] else 0
