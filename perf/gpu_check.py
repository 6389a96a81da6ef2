"""The prepared GPU check: one command that turns a few minutes of a lent GPU machine into figures.

    scripts/gpu_check.sh --build                     here: .gpu_check/ (wheels + recordings) to carry
    scripts/gpu_check.sh --out DIR [--minutes 1.0]   there, on a machine with CUDA (and no network)
    scripts/gpu_check.sh --dry-run --out DIR         here, on the CPU: the same code path in seconds

A real run, inside a 9-minute budget planned and printed up front (perf/gpu_stages.py):
 1. installs the carried wheels the machine lacks and checks sepbench's dependencies, on the
    machine's own torch (perf/gpu_install.py); records torch, CUDA, the driver and the GPU;
 2. `sepbench prepare`s a real-speech set from the carried recordings (a subset of
    data/real_dev_sources/, drawn as scripts/make_real_dev.sh draws data/real_dev);
 3. trains conv_tasnet, lstm_mask and spec_unet with the gpu profile in bf16-mixed, and
    conv_tasnet also in fp32 (32-true), each for the same fixed minutes, timing every step
    (perf/gpu_timing.py: GPU busy against waiting for the data loader);
 4. times bf16 against fp32 on one batch;
 5. `sepbench evaluate --device cuda`s the references and then each run alone, and times
    separation against metrics per row in one process;
 6. writes DIR/report.json and DIR/report.md after every stage (a run cut short keeps what it
    did; perf/gpu_report.py renders it) and DIR/gpu_check.log.
The dry run does the same with the smoke profile on the CPU, on a set prepared from generated
recordings; its install stage plans what it would install and leaves pip out (the carried
wheels are for Python 3.12). CPU autocast runs bf16-mixed there, so the dry run trains
bf16-mixed too. Exit status: 0 when every stage passed, 1 when one failed (the report
says which and why), 2 for bad input.
"""
from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here: imports and the install are in it

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python perf/gpu_check.py`
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_carry  # noqa: E402  (light: nothing heavy at import)
from gpu_stages import FP32_RECIPE, Check, runs_planned  # noqa: E402

BUDGET_MINUTES = 9.0
DEFAULT_MINUTES = 1.0
DRY_MINUTES = 0.05  # 3 s: each run stops on its time budget, as a real one does
# Seconds the plan allows for what is not training. Real: one H100/H200 and 16 cores, scaled from
# this checkout's 2-core figures (prepare of the carried sources 8.5 s; the references' metrics
# 130 CPU-s; a training's setup and final saves under 2 s; a row's metrics and input scores
# ~70 ms each per 2 s clip, so ~4.5 s per model for ROW_COST_CLIPS of 4 s), with room for cold
# imports and 16 spawned workers per evaluate. Dry: measured on 2 cores.
ESTIMATES = {"real": {"install": 20, "imports": 15, "prepare": 15, "training_overhead": 12, "same_batch": 10,
                      "eval_references": 30, "eval_model": 15, "row_costs": 8},
             "dry": {"install": 0, "imports": 6, "prepare": 1, "training_overhead": 1, "same_batch": 1,
                     "eval_references": 3, "eval_model": 2, "row_costs": 1}}


class InputError(Exception):
    """Bad input: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise InputError(f"{message} (see --help)")


def parse_args(argv):
    p = Parser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="CPU, smoke profile, generated recordings, install planned only")
    mode.add_argument("--build", action="store_true", help="build the carried folder (wheels + recordings) here")
    p.add_argument("--out", type=Path, help="folder for report.json, report.md and gpu_check.log")
    p.add_argument("--minutes", type=float, help=f"training minutes per run (default {DEFAULT_MINUTES:g}; "
                   f"dry run {DRY_MINUTES:g})")
    p.add_argument("--carry", type=Path, default=gpu_carry.CARRY, help="carried folder with wheels/ and sources/ "
                   "(default .gpu_check)")
    p.add_argument("--work", type=Path, help="folder for the data set, runs and leaderboard (default: a new "
                   "temporary folder, removed at the end)")
    p.add_argument("--budget-minutes", type=float, default=BUDGET_MINUTES, help="the plan must fit this "
                   f"(default {BUDGET_MINUTES:g})")
    args = p.parse_args(argv)
    if not args.build and args.out is None:
        raise InputError("--out DIR is required (see --help)")
    for name in ("minutes", "budget_minutes"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')} {value}: must be a positive number")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        raise InputError(f"--work {args.work}: exists and is not empty")
    args.minutes = args.minutes or (DRY_MINUTES if args.dry_run else DEFAULT_MINUTES)
    return args


def plan(args) -> dict:
    est = ESTIMATES["dry" if args.dry_run else "real"]
    n = len(runs_planned())
    seconds = {"install": est["install"] + est["imports"], "prepare": est["prepare"],
               "train": n * (60 * args.minutes + est["training_overhead"]), "same_batch": est["same_batch"],
               "evaluate": est["eval_references"] + n * (est["eval_model"] + est["row_costs"])}
    return {"minutes_per_training": args.minutes, "runs": [f"{tag} ({precision})" for tag, _, precision in runs_planned()],
            "estimated_s": seconds, "estimated_total_s": sum(seconds.values()), "budget_s": 60 * args.budget_minutes}


def print_plan(p: dict, args) -> None:
    from gpu_stages import DRY_DATA, REAL_DATA

    data = DRY_DATA if args.dry_run else REAL_DATA
    s = p["estimated_s"]
    where = "CPU, smoke profile (dry run)" if args.dry_run else "GPU, gpu profile"
    print(f"GPU check plan ({where}; budget {p['budget_s'] / 60:.1f} min):")
    print(f"  1. install carried wheels, check dependencies  ~{s['install']:.0f} s"
          + ("  (dry run: planned, pip left out)" if args.dry_run else ""))
    print(f"  2. prepare {data['n_train']} + {data['n_test']} clips of {data['seconds']:g} s at {data['sr']} Hz  "
          f"~{s['prepare']:.0f} s")
    print(f"  3. train {len(p['runs'])} runs x {p['minutes_per_training']:g} min: {', '.join(p['runs'])}  "
          f"~{s['train']:.0f} s")
    print(f"  4. bf16 vs fp32 on one batch ({FP32_RECIPE})  ~{s['same_batch']:.0f} s")
    print(f"  5. evaluate references + {len(p['runs'])} runs, separation vs metrics per row  ~{s['evaluate']:.0f} s")
    print(f"  estimated total {p['estimated_total_s'] / 60:.1f} min", flush=True)


class Tee:
    """Everything printed also goes to DIR/gpu_check.log (what comes back from a device call)."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def preflight(args) -> None:
    """Bad input of a real run, before anything is started: one line each."""
    if args.dry_run:
        return
    wheels, sources = args.carry / "wheels", args.carry / "sources"
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        raise InputError(f"{wheels}: no carried wheels; build {args.carry.name}/ here with `scripts/gpu_check.sh --build` "
                         f"and name it in the device call's carry")
    for kind in ("speech", "noise"):
        if not (sources / kind).is_dir():
            raise InputError(f"{sources / kind}: missing; `scripts/gpu_check.sh --build` makes it")
    print(gpu_carry.carried_size(args.carry)["line"], flush=True)
    import torch

    if not torch.cuda.is_available():
        raise InputError(f"no CUDA device here (torch {torch.__version__}); use --dry-run for the CPU")


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        if args.build:
            gpu_carry.build(args.carry)
            return 0
        p = plan(args)
        if p["estimated_total_s"] > p["budget_s"]:
            raise InputError(f"the plan takes ~{p['estimated_total_s'] / 60:.1f} min, over the "
                             f"{p['budget_s'] / 60:g}-minute budget: lower --minutes")
        preflight(args)
    except (InputError, gpu_carry.CarryError) as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "gpu_check.log", "w", buffering=1)
    sys.stdout, sys.stderr = Tee(sys.stdout, log), Tee(sys.stderr, log)
    try:
        print_plan(p, args)
        return Check(args, p, STARTED).run()
    finally:
        sys.stdout, sys.stderr = sys.stdout.stream, sys.stderr.stream
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
