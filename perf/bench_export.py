"""Exported models on the CPU: real-time factor of PyTorch vs ONNX Runtime vs TorchScript for the
same model, through the same separation code (`sepbench export`, then `sepbench separate`'s core).

    .venv/bin/python perf/bench_export.py [--recipes NAME ...] [--profile cpu] [--seconds 10]
        [--threads 2] [--repeats 5] [--quick] [--out FILE.json]

Per recipe (default: the ones ./run_all.sh trains, `sepbench recipes` marks them): the profile's
model with UNTRAINED weights (speed does not depend on them) saved as a sepbench checkpoint,
exported to ONNX and TorchScript with benchmark.separate.export (which checks each export against
PyTorch), and the three loaded the way `separate` loads them (load_separator). One --seconds
input of 8 kHz white noise, batch 1, float32, separated whole through benchmark.separate.core.separate
(as the benchmark separates a test clip). Threads are set explicitly: torch.set_num_threads and ONNX
Runtime's intra-op threads both get --threads. Each side runs 3 times off the clock (WARMUP), then
the sides alternate per repeat; RTF = median wall time / audio seconds. Speed-up = RTF torch / RTF of
the export. Max diff: largest |export - PyTorch| over the input / the peak (export.TOLERANCE).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import common

SIDES = ("torch", "onnxruntime", "torchscript")
FORMAT = {"onnxruntime": "onnx", "torchscript": "torchscript"}
WARMUP = 3


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--recipes", nargs="+", help="default: the run_all default set")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seconds", type=float, default=10.0, help="input length, separated whole")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ONNX Runtime threads "
                   "(default: the cores, here %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.profile = 0.5, 1, "smoke"
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)  # before the Report, which prints torch's thread count
    report = common.Report("bench_export", args)
    import recipes
    from benchmark.separate import export
    from benchmark.separate.core import separate
    from recipes import config
    from recipes.checkpoint import save_model
    from recipes.errors import SepbenchError

    rate = 8000
    mix = (0.1 * np.random.default_rng(0).standard_normal(round(args.seconds * rate))).astype(np.float32)
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes or recipes.default_names():
            model_args = config.model_args(name, rate, config.resolve(name, args.profile)["model"])
            torch.manual_seed(0)
            model = recipes.get(name).build(**model_args).eval()
            ckpt = Path(tmp) / f"{name}.pt"
            save_model(ckpt, model, name, model_args, rate)
            models, entry = {"torch": export.load_separator(ckpt)[0]}, {"errors": {}}
            entry["n_params"] = sum(q.numel() for q in model.parameters())
            for side, fmt in FORMAT.items():
                out = Path(tmp) / f"{name}_{fmt}{export.FORMATS[fmt]}"
                try:
                    export.export(ckpt, fmt, out)
                    models[side] = export.load_separator(out)[0]
                except SepbenchError as exc:
                    entry["errors"][side] = str(exc)
            outputs = {}

            def timed(side):
                def run():
                    start = time.perf_counter()
                    outputs[side] = separate(models[side], mix)
                    return time.perf_counter() - start
                return run

            for side in models:
                # Off the clock: first calls allocate and pick kernels, ONNX Runtime optimises its
                # graph, and TorchScript's profiling executor only optimises after two profiled runs.
                for _ in range(WARMUP):
                    timed(side)()
            walls = common.interleave({side: timed(side) for side in models}, args.repeats)
            entry["rtf"] = {side: common.median(walls[side]) / args.seconds for side in models}
            peak = max(float(np.abs(mix).max()), float(np.abs(outputs["torch"]).max()))
            entry["max_rel_diff"] = {side: float(np.abs(outputs[side] - outputs["torch"]).max()) / peak
                                     for side in models if side != "torch"}
            entry["speedup"] = {side: entry["rtf"]["torch"] / entry["rtf"][side] for side in models if side != "torch"}
            figures[name] = entry
            cells = [entry["rtf"].get(side, "not exportable") for side in SIDES]
            cells += [f"{entry['speedup'][s]:.2f}x" if s in entry["speedup"] else "-" for s in FORMAT]
            cells += [f"{entry['max_rel_diff'][s]:.1e}" if s in entry["max_rel_diff"] else "-" for s in FORMAT]
            n = entry["n_params"]
            rows.append([name, f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k", *cells])
            print(f"{name}: {cells}" + "".join(f"\n  {e}" for e in entry["errors"].values()), flush=True)
    print()
    print(f"RTF on the CPU, {args.profile} profile, untrained weights, {args.seconds:g} s of 8 kHz white noise "
          f"separated whole, batch 1, {args.threads} thread(s) for torch and ONNX Runtime, median of {args.repeats}")
    print(common.table(["recipe", "params", "RTF torch", "RTF onnxruntime", "RTF torchscript",
                        "speed-up onnxruntime", "speed-up torchscript", "max diff onnxruntime", "max diff torchscript"],
                       rows))
    report.figures = {"profile": args.profile, "seconds": args.seconds, "threads": args.threads,
                      "repeats": args.repeats, "weights": "untrained", "recipes": figures}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
