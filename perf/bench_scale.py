"""Evaluation at scale: wall and CPU time of each stage of `sepbench validate`, `sepbench train`'s
start and `sepbench evaluate` on a data set of the original's size (5,000 train and 2,000 test
clips of 10 s at 8 kHz) or a given one, with 2 shards run side by side against one process.

    .venv/bin/python perf/bench_scale.py [--data DIR] [--n-train 5000] [--n-test 2000] [--seconds 10]
        [--jobs J] [--recipes A,B] [--train-steps 2] [--pretrained] [--quick] [--json OUT.json]

Stages: validate twice (the second must reuse the validation record); references only (mixture
and oracles): evaluate in this process with --jobs J, the same as one `sepbench evaluate --jobs 1`
process, as shards 1/2 and 2/2 run at the same time (then the merge), and whether the merged
results.csv equals the one-process one once the timing columns are dropped. Then each recipe of
run_all's default set (or --recipes) is trained by `sepbench train` at the cpu profile for
--train-steps steps and one validation batch: "train start" is the wall time from its launch to
its first training step (imports, the train set's scan and content hash, the model, the
loaders). Last, run_all's evaluation of those checkpoints and the references, as run_all calls
it (--jobs left to the cores, per-clip scoring), into a fresh folder; its wall time is checked
against its CPU time spread over the cores (wall <= 1.15 x CPU / cores: nothing waits or spins
much). Its cost does not depend on how well the models were trained. CPU time is this process's
plus its waited-for children's (pool workers, shard and training processes). The figures go
into perf/RESULTS.md, not the docs.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common

TIMING_COLUMNS = ["sep_seconds", "rtf", "evaluated_at", "git_commit"]  # differ from run to run by design
ROW_LINE = re.compile(r"^(?P<label>.+?)\s+(?P<n>\d+) clips in (?P<s>[\d.]+) s")
FIRST_STEP = re.compile(r"^first training step at (?P<t>[\d.]+)$")
WALL_PER_CPU_LIMIT = 1.15  # the evaluation's wall time against its CPU time / cores
# `sepbench train` with one Lightning callback more, which prints the wall clock at the first
# training step: train() takes extra callbacks, the command line does not.
TRAIN_DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import pytorch_lightning as pl
import recipes.train

class FirstStep(pl.Callback):
    said = False

    def on_train_batch_start(self, *args):
        if not self.said:
            self.said = True
            print(f"first training step at {time.time():.6f}", flush=True)

plain = recipes.train.train
recipes.train.train = lambda *a, **k: plain(*a, extra_callbacks=[FirstStep()], **k)
from benchmark.cli import main
sys.exit(main(sys.argv[2:]))
"""


def cpu_seconds() -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def row_times(lines) -> dict[str, float]:
    return {m["label"].strip(): float(m["s"]) for m in map(ROW_LINE.match, lines) if m}


def cli(data: Path, out: Path, *extra: str, runs: Path | None = None) -> list[str]:
    which = ["--references-only"] if runs is None else ["--runs", str(runs)]
    return [sys.executable, "-m", "benchmark.cli", "evaluate", "--data", str(data), "--out", str(out),
            *which, "--device", "cpu", *extra]


def train_briefly(data: Path, runs: Path, recipe: str, steps: int) -> dict:
    """`sepbench train RECIPE` at the cpu profile for `steps` steps; wall and CPU time, and the
    seconds from its launch to its first training step."""
    cmd = [sys.executable, "-c", TRAIN_DRIVER, str(common.ROOT), "train", recipe, "--data", str(data),
           "--out", str(runs), "--profile", "cpu", "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}",
           "trainer.limit_val_batches=1"]
    launched = time.time()
    lines, wall, cpu = timed(lambda: run_cli(cmd, "sepbench " + " ".join(cmd[4:])))
    first = [float(m["t"]) for m in map(FIRST_STEP.match, lines) if m]
    if not first:
        raise SystemExit(f"{recipe}: the training printed no first step:\n" + "\n".join(lines[-20:]))
    return {"wall_s": wall, "cpu_s": cpu, "first_step_s": first[0] - launched}


def run_cli(cmd, what: str | None = None) -> list[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.ROOT)
    if proc.returncode:
        raise SystemExit(f"{what or ' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.splitlines()


def shards_side_by_side(data: Path, out: Path, n: int) -> tuple[list[list[str]], list[float]]:
    # Threads only wait, so each shard's own wall time is known although they overlap.
    start, procs = time.perf_counter(), []
    for k in range(1, n + 1):
        procs.append(subprocess.Popen(cli(data, out, "--jobs", "1", "--shard", f"{k}/{n}"), cwd=common.ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    walls, outputs = [0.0] * n, [("", "")] * n

    def wait(i):
        outputs[i] = procs[i].communicate()
        walls[i] = time.perf_counter() - start
    threads = [threading.Thread(target=wait, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p, (_, err) in zip(procs, outputs):
        if p.returncode:
            raise SystemExit(f"{' '.join(p.args)} failed ({p.returncode}):\n{err[-3000:]}")
    return [o.splitlines() for o, _ in outputs], walls


def same_results(a: Path, b: Path) -> bool:
    import pandas as pd

    x, y = (pd.read_csv(p, keep_default_na=False).drop(columns=TIMING_COLUMNS, errors="ignore") for p in (a, b))
    return list(x.columns) == list(y.columns) and x.shape == y.shape and x.equals(y)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--json", dest="out", type=Path, help="same as --out")
    p.add_argument("--data", type=Path, help="data set root with train/ and test/ (default: a new demo set)")
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers of the in-process evaluation")
    p.add_argument("--recipes", help="comma-separated recipes to train and evaluate (default: run_all's default set)")
    p.add_argument("--train-steps", type=int, default=2, help="training steps per recipe (the evaluation's cost "
                   "does not depend on them)")
    p.add_argument("--pretrained", action="store_true", help="the model evaluation also scores the installed "
                   "pretrained enhancers, as run_all does by default")
    args = p.parse_args(argv)
    import recipes

    names = args.recipes.split(",") if args.recipes else recipes.default_names()
    if args.quick:
        args.n_train, args.n_test, args.seconds = 10, 12, 2.0  # 2 s: the cpu profile's training crop
        names = names[:1]
    for name in names:
        recipes.get(name)  # a typo fails before the data set is made
    report = common.Report("bench_scale", args)
    from benchmark.data.demo import generate
    from benchmark.data.validate import checked
    from benchmark.evaluate import evaluate

    stages: dict[str, dict] = {}

    def stage(name, wall, cpu, **extra):
        stages[name] = {"wall_s": wall, "cpu_s": cpu, **extra}

    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        tmp = Path(tmp)
        data = args.data and args.data.resolve()  # the CLI children run in the repository root
        if data is None:
            data, wall, cpu = timed(lambda: generate(tmp / "data", n_train=args.n_train, n_test=args.n_test,
                                                     seconds=args.seconds, quirks=True, snrs=range(-4, 5)))
            stage("generate", wall, cpu)
        n_clips = sum(1 for d in (data / "test").iterdir() if d.is_dir())
        print(f"\ndata: {data} ({n_clips} test clips)", flush=True)

        # force: a record left by an earlier run must not make the first pass a cached one.
        for name, force in (("validate (first)", True), ("validate (unchanged)", False)):
            res, wall, cpu = timed(lambda f=force: checked(data, force=f))
            if not res.ok:
                raise SystemExit(f"{data} did not validate:\n{res.text}")
            stage(name, wall, cpu, cached=res.cached)

        lines: list[str] = []
        _, wall, cpu = timed(lambda: evaluate(data / "test", runs=None, out=tmp / "one", jobs=args.jobs,
                                              device="cpu", log=lines.append))
        stage(f"evaluate in this process, jobs {args.jobs}", wall, cpu, rows_s=row_times(lines))

        # The shards are processes that pay their imports, so the baseline is one too.
        lines, wall, cpu = timed(lambda: run_cli(cli(data, tmp / "one_j1", "--jobs", "1")))
        stage("evaluate, 1 CLI process, jobs 1", wall, cpu, rows_s=row_times(lines))
        base = wall

        (lines, walls), wall, cpu = timed(lambda: shards_side_by_side(data, tmp / "sharded", 2))
        stage("evaluate, 2 shards at once", wall, cpu, shards=len(walls), shard_wall_s=walls,
              shard_rows_s=[row_times(o) for o in lines])
        lines, merge_wall, cpu = timed(lambda: run_cli(cli(data, tmp / "sharded", "--jobs", "1")))
        merged_from = sorted({int(m[1]) for m in map(re.compile(r".*merged from (\d+) shards").match, lines) if m})
        stage("merge", merge_wall, cpu, merged_from=merged_from)

        identical = all(same_results(tmp / "sharded" / "results.csv", tmp / o / "results.csv")
                        for o in ("one", "one_j1"))

        for name in names:
            t = train_briefly(data, tmp / "runs", name, args.train_steps)
            stage(f"train {name} ({args.train_steps} steps)", t.pop("wall_s"), t.pop("cpu_s"), recipe=name, **t)
        # As run_all's finish() calls it: --jobs and --batch left to their defaults.
        extra = ["--pretrained"] if args.pretrained else []
        lines, wall, cpu = timed(lambda: run_cli(cli(data, tmp / "models", *extra, runs=tmp / "runs")))
        stage("evaluate, models + references (run_all)", wall, cpu, rows_s=row_times(lines))

    sharded = stages["evaluate, 2 shards at once"]
    speedup = base / sharded["wall_s"]
    speedup_merged = base / (sharded["wall_s"] + merge_wall)
    in_process = stages[f"evaluate in this process, jobs {args.jobs}"]
    speedup_jobs = base / in_process["wall_s"]
    models = stages["evaluate, models + references (run_all)"]
    cores = os.cpu_count() or 1
    wall_per_cpu = models["wall_s"] / (models["cpu_s"] / cores)
    trains = {s["recipe"]: s["first_step_s"] for s in stages.values() if "first_step_s" in s}
    rows = [[name, s["wall_s"], s["cpu_s"]] for name, s in stages.items()]
    print(f"\n{n_clips} test clips, {args.n_train if args.data is None else 'given'} train clips, device cpu; "
          f"the evaluations before the trainings: references only (mixture + oracles)\n")
    print(common.table(["stage", "wall s", "CPU s"], rows))
    print(f"\nsecond validate cached: {'yes' if stages['validate (unchanged)']['cached'] else 'no'}")
    for name, s in stages.items():
        if s.get("rows_s"):
            print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in s["rows_s"].items()))
    for k, (w, r) in enumerate(zip(sharded["shard_wall_s"], sharded["shard_rows_s"]), 1):
        print(f"shard {k}/2: {w:.1f} s wall; " + ", ".join(f"{n} {v:.1f} s" for n, v in r.items()))
    print(f"2 shards vs 1 process (jobs 1): speed-up {speedup:.2f}x, {speedup_merged:.2f}x with the merge")
    print(f"jobs {args.jobs} in this process (no imports to pay) vs 1 process (jobs 1): speed-up {speedup_jobs:.2f}x")
    print(f"merge identical: {'yes' if identical else 'no'}")
    print("train start (launch to first step): " + ", ".join(f"{k} {v:.1f} s" for k, v in trains.items()))
    ok = wall_per_cpu <= WALL_PER_CPU_LIMIT
    print(f"models + references evaluation: wall {models['wall_s']:.1f} s, CPU {models['cpu_s']:.1f} s on {cores} "
          f"cores: wall / (CPU / cores) = {wall_per_cpu:.2f} (<= {WALL_PER_CPU_LIMIT}: {'yes' if ok else 'no'})")
    report.figures = {"data": str(args.data or "demo"), "n_test": n_clips, "n_train": args.n_train,
                      "seconds": args.seconds, "jobs": args.jobs, "stages": stages, "shards": sharded["shards"],
                      "speedup_2_shards": speedup, "speedup_2_shards_with_merge": speedup_merged,
                      "speedup_jobs_in_process": speedup_jobs, "merge_identical": identical,
                      "train_start_s": trains, "models_wall_per_cpu": wall_per_cpu, "models_wall_per_cpu_ok": ok,
                      "recipes": names, "pretrained": args.pretrained}
    m = report.machine
    print(f"cores {m['cores']}, load at start {m['load_start']}, date {m['date']}, git {m['git_commit']}")
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
