"""The whole pipeline behind ./run_all.sh: data -> validate -> train every recipe -> evaluate ->
leaderboard + listening page. Holds no hyperparameters: recipes and profiles own them.

Idempotent: finished trainings and cached evaluations are skipped; an interrupted training is
resumed from its last checkpoint. A recipe that fails to train is reported and the others go on;
the exit code is non-zero at the end if any failed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import recipes
from recipes import config
from recipes.checkpoint import finished_run
from recipes.config import PROFILES
from recipes.errors import SepbenchError
from recipes.files import Stamp
from recipes.runs import run_folder

from . import __version__
from .data.demo import generate
from .data.validate import format_report, validate
from .evaluate import evaluate
from .report.listen import build_listening_page
from .scoring.choices import BUCKET_MODES

DEMO_DIR = Path("data/demo")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data set root with train/ and test/ (default: generated demo data in data/demo)")
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--recipes", help="comma-separated recipe names, or 'all' (default: the default set, "
                   "`sepbench recipes` marks it)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per recipe (0..N-1; default 1): the "
                   "leaderboard pools a recipe's seeds into one row")
    p.add_argument("--bucket", choices=BUCKET_MODES, default="label",
                   help="SNR buckets of the leaderboard (passed to sepbench evaluate)")
    p.add_argument("--force", action="store_true", help="retrain and re-evaluate everything")
    p.add_argument("--runs", default="runs", help="runs folder (default runs/)")
    p.add_argument("--out", default="leaderboard", help="leaderboard folder (default leaderboard/)")
    p.add_argument("--jobs", type=int, help="evaluation processes (default: all cores)")
    p.add_argument("--devices", help="training devices per node (passed to sepbench train)")
    p.add_argument("--num-nodes", type=int, help="training nodes (passed to sepbench train)")
    p.add_argument("--strategy", help="training strategy, e.g. ddp (passed to sepbench train)")
    p.add_argument("--precision", help="training precision, e.g. bf16-mixed (passed to sepbench train)")
    p.add_argument("--batch", type=int, help="evaluation: clips per forward pass (passed to sepbench evaluate)")
    return p.parse_args(argv)


def say(text: str) -> None:
    print(f"[run_all] {text}", file=sys.stderr, flush=True)


def prepare_data(args) -> Path:
    if args.data:
        return Path(args.data)
    if not (DEMO_DIR / "train").is_dir():
        say(f"generating demo data in {DEMO_DIR} (defaults of `sepbench demo-data`)")
        generate(DEMO_DIR)
    return DEMO_DIR


def check_data(data: Path, out: Path, force: bool = False) -> bool:
    """`sepbench validate` on the data set, unless these very files passed it before: reading
    every clip again was most of a re-run with nothing to do (7 s of 11 on the real-speech set).
    Files are compared by path, size and modification time (a stat each, no read), with the
    benchmark version, whose checks may change."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    stamp = Stamp(out / "cache" / "validated.json", key={"data": str(data), "version": __version__}, stat=files)
    if stamp.fresh() and not force:
        say(f"{data}: valid (unchanged since it was validated: {stamp.path.name})")
        return True
    report = validate(data)
    if not report.ok:
        print(format_report(report), file=sys.stderr)
        say(f"{data}: the data set is not usable (errors above); nothing was trained")
        return False
    warnings = sum(1 for p in report.problems if p.level == "warning")
    say(f"{data}: valid ({warnings} warnings)")
    stamp.write()
    return True


def _budget_minutes(name: str, profile: str) -> float | None:
    """The profile's wall-clock budget of a recipe (an upper bound: a resumed run has used some);
    None when it has none or its config is broken (its training then reports why)."""
    try:
        return config.resolve(name, profile)["trainer"]["max_minutes"]
    except SepbenchError:
        return None


def train_all(args, data: Path, names: list[str]) -> list[str]:
    """Each recipe trains in its own process, so one crash (even a segfault or OOM kill) cannot
    take the others down. Seed by seed: every recipe gets seed 0 before any gets seed 1, so a
    run stopped early still compares every recipe."""
    failed = []
    extra = []
    for flag in ("devices", "num_nodes", "strategy", "precision"):
        if getattr(args, flag) is not None:
            extra += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    # Decided here, not in a `sepbench train` process: starting one costs seconds of imports
    # (torch, Lightning) only to say "already trained".
    jobs = [(name, seed) for seed in range(args.seeds) for name in names]
    todo = [(n, k) for n, k in jobs
            if args.force or not finished_run(Path(args.runs) / n / run_folder(args.profile, k))]
    budgets = {n: _budget_minutes(n, args.profile) for n in {n for n, _ in todo}}
    for i, (name, seed) in enumerate(jobs, 1):
        what = name if args.seeds == 1 else f"{name} seed {seed}"
        if (name, seed) not in todo:
            say(f"{what}: already trained ({i}/{len(jobs)}); --force to retrain")
            continue
        left = [budgets[n] for n, _ in todo[todo.index((name, seed)):]]
        eta = f"; at most {sum(left):.0f} min of training left" if None not in left else ""
        say(f"training {what} ({i}/{len(jobs)}, profile {args.profile}{eta})")
        cmd = [sys.executable, "-m", "benchmark.cli", "train", name, "--data", str(data), "--profile",
               args.profile, "--out", args.runs, *extra] + (["--seed", str(seed)] if seed else []) + (
               ["--force"] if args.force else [])
        started = time.monotonic()
        code = subprocess.call(cmd)
        if code != 0:
            failed.append(what)
            say(f"training {what} FAILED (exit {code}); continuing with the others")
        else:
            say(f"{what} done in {time.monotonic() - started:.0f} s")
    return failed


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.seeds < 1:
        say(f"error: --seeds {args.seeds}: must be at least 1")
        return 2
    try:
        names = (recipes.names() if args.recipes == "all" else args.recipes.split(",") if args.recipes
                 else recipes.default_names())
        for name in names:
            recipes.get(name)  # unknown names fail before anything runs
        data = prepare_data(args)
        if not check_data(data, Path(args.out), args.force):
            return 1
        failed = train_all(args, data, names)

        say("evaluating every checkpoint on the test set")
        result = evaluate(data / "test", runs=args.runs, out=args.out, jobs=args.jobs, force=args.force,
                          batch=args.batch, bucket=args.bucket)
        failed += [f"evaluation: {m}" for m in result.get("failed", [])]
        page = build_listening_page(Path(args.out) / "results.csv", data / "test", args.out)
    except SepbenchError as exc:
        say(f"error: {exc}")
        return 2
    md = Path(args.out) / "LEADERBOARD.md"  # evaluate() has printed its main table above
    say(f"leaderboard: {md}  listening page: {page}  per-clip scores: {Path(args.out) / 'results.csv'}")
    if failed:
        say(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
