"""Batched inference: seconds per clip when the model sees one clip at a time vs a batch of
equal-length clips, for every registered recipe's cpu profile (what `sepbench evaluate --batch`
changes), with the largest difference between the two outputs.

    .venv/bin/python perf/bench_batch.py [--recipes NAME ...] [--batch 8] [--seconds 4]
        [--repeats 3] [--quick] [--out FILE.json]

UNTRAINED weights (speed does not depend on them), 8 kHz white noise, float32, this process's
torch threads (set OMP_NUM_THREADS to compare with evaluate's one-thread workers). Both sides
run the same `batch` clips through benchmark.separate.core.separate; the sides alternate per repeat
and the figure is the median. Speed-up = per-clip time of batch 1 / per-clip time of the batch.
"""
from __future__ import annotations

import time

import common


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--recipes", nargs="+", help="default: every registered recipe")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0, help="clip length")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", default="cpu")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.repeats, args.profile = 3, 0.5, 1, "smoke"
    report = common.Report("bench_batch", args)
    import numpy as np
    import torch

    import recipes
    from benchmark.separate.core import separate
    from recipes import config

    mixes = np.random.default_rng(0).standard_normal((args.batch, int(args.seconds * 8000))).astype(np.float32) * 0.1
    rows, figures = [], {}
    for name in args.recipes or recipes.names():
        torch.manual_seed(0)
        model = recipes.get(name).build(**config.model_args(name, 8000, config.resolve(name, args.profile)["model"]))
        model.eval()
        outputs = {}

        def timed(side):
            def run():
                start = time.perf_counter()
                outputs[side] = (np.stack([separate(model, m) for m in mixes]) if side == "one"
                                 else separate(model, mixes))
                return (time.perf_counter() - start) / len(mixes)
            return run

        timed("batch")()  # first calls allocate and pick kernels: kept off the clock
        times = common.interleave({"one": timed("one"), "batch": timed("batch")}, args.repeats)
        one, batched = common.median(times["one"]), common.median(times["batch"])
        diff = float(np.abs(outputs["one"] - outputs["batch"]).max())
        figures[name] = {"one_s_per_clip": one, "batch_s_per_clip": batched, "speedup": one / batched,
                         "max_abs_diff": diff}
        rows.append([name, one, batched, one / batched, f"{diff:.1e}"])
    print(f"\n{args.batch} clips of {args.seconds:g} s at 8 kHz, {args.profile} profile, untrained\n")
    print(common.table(["recipe", "batch 1 s/clip", f"batch {args.batch} s/clip", "speed-up", "max |diff|"], rows))
    report.figures = {"batch": args.batch, "seconds": args.seconds, "recipes": figures}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
