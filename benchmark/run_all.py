"""The whole pipeline behind ./run_all.sh: data -> validate -> train every recipe -> evaluate (the
pretrained enhancers too, when their extra is installed: they need no training) -> leaderboard +
listening page. Holds no hyperparameters: recipes and profiles own them.

Idempotent: finished trainings and cached evaluations are skipped; an interrupted training is
resumed from its last checkpoint. A recipe that fails to train is reported and the others go on;
the exit code is non-zero at the end if any failed. Where the trainings and the evaluation run is
the launcher's business (benchmark/launch: this machine, or SLURM jobs); what they are is decided
here, once, for both.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from pathlib import Path

import recipes
from recipes import config
from recipes.config import PROFILES
from recipes.errors import SepbenchError
from recipes.folder import load_split, test_split_dir
from recipes.runs import run_folder

from . import launch
from .cli import build_parser
from .cli import main as sepbench_main
from .data.demo import generate
from .data.validate import checked
from .evaluate import evaluate, metric_key
from .launch import Plan, Training, say
from .report.listen import build_listening_page
from .scoring.choices import BUCKET_MODES, parse_metrics
from .train_cmd import overrides_from_args

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
    p.add_argument("--no-pretrained", action="store_true", help="leave out the pretrained enhancers (scored by "
                   "default when their extra is installed; `sepbench evaluate --pretrained`)")
    p.add_argument("--metrics", metavar="+NAME", help="evaluation: optional metrics, e.g. +dnsmos (passed to "
                   "sepbench evaluate)")
    p.add_argument("--launcher", default="local", choices=tuple(launch.LAUNCHERS),
                   help="where trainings and evaluation run: this machine (default), or SLURM jobs (docs/clusters.md)")
    p.add_argument("--launcher-config", help="slurm: a YAML file of cluster settings (keys of "
                   "benchmark/launch/slurm.yaml; the ones it omits keep their defaults)")
    p.add_argument("--partition", help="slurm: partition of every job (overrides the launcher config)")
    p.add_argument("--account", help="slurm: account charged for every job (overrides the launcher config)")
    p.add_argument("--slurm-time", type=int, metavar="MIN", help="slurm: time limit of each training job in "
                   "minutes (default: the profile's budget plus a margin)")
    p.add_argument("--no-wait", action="store_true", help="slurm: return once the jobs are submitted")
    return p.parse_args(argv)


def launcher_options(args) -> dict:
    return {"launcher_config": args.launcher_config, "partition": args.partition, "account": args.account,
            "slurm_time": args.slurm_time, "wait": not args.no_wait}


def prepare_data(args) -> Path:
    if args.data:
        return Path(args.data)
    if not (DEMO_DIR / "train").is_dir():
        say(f"generating demo data in {DEMO_DIR} (defaults of `sepbench demo-data`)")
        generate(DEMO_DIR)
    return DEMO_DIR


def check_data(data: Path, force: bool = False) -> bool:
    """`sepbench validate` on the data set, unless these very files passed it before (the record
    `sepbench validate` keeps too: benchmark/data/validate.py, checked())."""
    result = checked(data, force=force)
    if result.cached:
        say(f"{data}: valid (unchanged since it was validated: {result.stamp})")
        return True
    if not result.ok:
        print(result.text, file=sys.stderr)
        say(f"{data}: the data set is not usable (errors above); nothing was trained")
        return False
    say(f"{data}: valid ({result.warnings} warnings)")
    return True


def plan(args, data: Path, names: list[str]) -> Plan:
    """Every recipe x seed as the `sepbench train` arguments that train it, seed by seed (every
    recipe's seed 0 before any seed 1, so a run stopped early still compares every recipe), with
    its resolved config, read with the overrides that very command line makes."""
    extra = []
    for flag in ("devices", "num_nodes", "strategy", "precision"):
        if getattr(args, flag) is not None:
            extra += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    trainings = []
    for seed in range(args.seeds):
        for name in names:
            argv = ["train", name, "--data", str(data), "--profile", args.profile, "--out", args.runs, *extra] + (
                ["--seed", str(seed)] if seed else [])
            try:
                cfg, problem = config.resolve(name, args.profile, overrides_from_args(build_parser().parse_args(argv))), None
            except SepbenchError as exc:  # its training reports the same error; the others go on
                cfg, problem = None, str(exc)
            trainings.append(Training(what=name if args.seeds == 1 else f"{name} seed {seed}",
                                      run_dir=Path(args.runs) / name / run_folder(args.profile, seed),
                                      profile=args.profile, argv=tuple(argv), cfg=cfg, problem=problem))
    key = json.dumps({k: getattr(args, k) for k in ("out", "jobs", "batch", "bucket")} | {"data": str(data)}
                     | _evaluation_options(args))
    return Plan(trainings=tuple(trainings), force=args.force, runs=Path(args.runs), sepbench=sepbench_main,
                finish=functools.partial(finish, args, data), finish_key=key,
                test_clips=functools.partial(_count_clips, data / "test"),
                inputs=functools.partial(evaluation_inputs, Path(args.runs), data / "test", Path(args.out)))


def _evaluation_options(args) -> dict:
    """evaluate's options beyond the plain ones; {} when they are the defaults, so a plan's key
    (and a finished SLURM evaluation's record) stays what it was."""
    return {k: v for k, v in (("no_pretrained", args.no_pretrained), ("metrics", args.metrics)) if v}


def _count_clips(test: Path) -> int:
    return len(load_split(test_split_dir(test)))


def evaluation_inputs(runs: Path, test: Path, out: Path) -> str:
    """What the evaluation reads and writes, by path, size and modification time (a stat each):
    every run's checkpoint and card, every test file, and the leaderboard's files."""
    files = sorted(runs.glob("*/*/best.pt")) + sorted(runs.glob("*/*/card.json")) + sorted(
        p for p in test.rglob("*") if p.is_file()) + sorted(p for p in out.glob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        st = path.stat()
        digest.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def finish(args, data: Path, jobs: int | None = None, shard: str | None = None, merge: bool = False) -> list[str]:
    """Evaluation and listening page, after the trainings; what failed. `jobs`: the scoring
    processes when --jobs is not given (a SLURM job passes its cores). `shard` "K/N": score that
    shard's clips only (no leaderboard); `merge`: the shards have scored every clip, with --force
    if given, so their rows are taken as they are instead of being scored again."""
    options = {"pretrained": not args.no_pretrained, "metrics": parse_metrics(args.metrics)}
    if shard is not None:
        say(f"evaluating shard {shard} of the test set")
        result = evaluate(data / "test", runs=args.runs, out=args.out, jobs=args.jobs or jobs, force=args.force,
                          batch=args.batch, bucket=args.bucket, shard=shard, **options)
        return [f"evaluation: {m}" for m in result.get("failed", [])]
    say("evaluating every checkpoint on the test set")
    result = evaluate(data / "test", runs=args.runs, out=args.out, jobs=args.jobs or jobs,
                      force=args.force and not merge, batch=args.batch, bucket=args.bucket, **options)
    page = build_listening_page(Path(args.out) / "results.csv", data / "test", args.out)
    md = Path(args.out) / "LEADERBOARD.md"  # evaluate() has printed its main table above
    say(f"leaderboard: {md}  listening page: {page}  per-clip scores: {Path(args.out) / 'results.csv'}")
    return [f"evaluation: {m}" for m in result.get("failed", [])]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.seeds < 1:
        say(f"error: --seeds {args.seeds}: must be at least 1")
        return 2
    try:
        metric_key(parse_metrics(args.metrics))  # a typo or a missing extra fails before the trainings, not after
    except (ValueError, SepbenchError) as exc:
        say(f"error: {exc}")
        return 2
    try:
        names = (recipes.names() if args.recipes == "all" else args.recipes.split(",") if args.recipes
                 else recipes.default_names())
        for name in names:
            recipes.get(name)  # unknown names fail before anything runs
        launcher = launch.get(args.launcher)
        launcher.check(launcher_options(args))  # e.g. no sbatch here: said before any data is made
        data = prepare_data(args)
        if not check_data(data, args.force):
            return 1
        failed = launcher.run(plan(args, data, names), launcher_options(args))
    except SepbenchError as exc:
        say(f"error: {exc}")
        return 2
    if failed:
        say(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
