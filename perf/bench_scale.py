"""Evaluation at scale: wall and CPU time of each stage of `sepbench validate` and `sepbench
evaluate --references-only` on a data set of the original's size (2,000 test clips of 10 s at
8 kHz) or a given one, with 2 shards run side by side against one process.

    .venv/bin/python perf/bench_scale.py [--data DIR] [--n-test 2000] [--seconds 10] [--jobs J]
        [--quick] [--json OUT.json]

Stages: validate twice (the second must reuse the validation record), evaluate in this process
with --jobs J, the same as one `sepbench evaluate --jobs 1` process, as shards 1/2 and 2/2 run
at the same time (then the merge), and whether the merged results.csv equals the one-process
one once the timing columns are dropped. CPU time is this process's plus its waited-for
children's (pool workers, shard processes). The figures go into perf/RESULTS.md, not the docs.
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


def cpu_seconds() -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def row_times(lines) -> dict[str, float]:
    return {m["label"].strip(): float(m["s"]) for m in map(ROW_LINE.match, lines) if m}


def cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", "evaluate", "--data", str(data), "--out", str(out),
            "--references-only", "--device", "cpu", *extra]


def run_cli(cmd) -> list[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.ROOT)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
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
    p.add_argument("--n-train", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers of the in-process evaluation")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.seconds = 2, 12, 1.0
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

    speedup = base / wall
    speedup_merged = base / (wall + merge_wall)
    rows = [[name, s["wall_s"], s["cpu_s"]] for name, s in stages.items()]
    print(f"\n{n_clips} test clips, references only (mixture + oracles), device cpu\n")
    print(common.table(["stage", "wall s", "CPU s"], rows))
    print(f"\nsecond validate cached: {'yes' if stages['validate (unchanged)']['cached'] else 'no'}")
    for name, s in stages.items():
        if s.get("rows_s"):
            print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in s["rows_s"].items()))
    for k, (w, r) in enumerate(zip(stages["evaluate, 2 shards at once"]["shard_wall_s"],
                                   stages["evaluate, 2 shards at once"]["shard_rows_s"]), 1):
        print(f"shard {k}/2: {w:.1f} s wall; " + ", ".join(f"{n} {v:.1f} s" for n, v in r.items()))
    print(f"2 shards vs 1 process (jobs 1): speed-up {speedup:.2f}x, {speedup_merged:.2f}x with the merge")
    print(f"merge identical: {'yes' if identical else 'no'}")
    report.figures = {"data": str(args.data or "demo"), "n_test": n_clips, "seconds": args.seconds,
                      "jobs": args.jobs, "stages": stages, "shards": stages["evaluate, 2 shards at once"]["shards"], "speedup_2_shards": speedup,
                      "speedup_2_shards_with_merge": speedup_merged, "merge_identical": identical}
    m = report.machine
    print(f"cores {m['cores']}, load at start {m['load_start']}, date {m['date']}, git {m['git_commit']}")
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
