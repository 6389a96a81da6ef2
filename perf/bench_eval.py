"""Evaluation throughput: `sepbench evaluate` (all metrics) vs Asteroid's eval.py way, same clips
and checkpoint, plus the largest difference between the values both compute.

    .venv/bin/python perf/bench_eval.py [--n-test 100] [--seconds 4] [--repeats 3]
        [--run runs/conv_tasnet/cpu] [--quick] [--out FILE.json]

Checkpoint: --run (a finished run folder), else conv_tasnet's cpu profile trained for
--train-steps steps here by the training entry (speed does not depend on the weights; a few steps
just keep the estimates from being noise). Clips: sepbench's demo data at 8 kHz.
Side "sepbench": benchmark.evaluate.evaluate() as `sepbench evaluate --force --no-references`
runs it, end to end (model load, mixture baseline, separation, voice SI-SDR/SDR/PESQ-NB/STOI/ESTOI,
noise SI-SDR, CSVs, leaderboard and plot), with --jobs left at its default and with --jobs 1.
Side "asteroid": one process, the model loaded once, then per clip model(mix) and
asteroid.metrics.get_metrics(mix, sources, est, metrics_list=[si_sdr, sdr, sir, sar, stoi, pesq],
average=False) as Asteroid's recipes' eval.py does (without its PIT reordering: the models here
have a fixed output order), metric errors ignored (PESQ on the noise fails on some clips).
Runs alternate. Also printed: sepbench's phases from its own log (worker start-up, mixture
baseline, model rows), since a leaderboard of many checkpoints pays the first two once, and both
sides without the separation (the same model on both sides). Values are compared clip by clip;
get_metrics' SDR takes the best source order, so SDR is compared only on clips whose best order
is the given one.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import common

METRICS = ["si_sdr", "sdr", "sir", "sar", "stoi", "pesq"]
# sepbench column <- (get_metrics key, source index)
PAIRS = {"voice_sisdr": ("si_sdr", 0), "noise_sisdr": ("si_sdr", 1), "voice_sdr": ("sdr", 0),
         "voice_pesq_nb": ("pesq", 0), "voice_stoi": ("stoi", 0), "input_voice_sisdr": ("input_si_sdr", 0),
         "input_noise_sisdr": ("input_si_sdr", 1), "input_voice_sdr": ("input_sdr", 0),
         "input_voice_pesq_nb": ("input_pesq", 0), "input_voice_stoi": ("input_stoi", 0)}


def sepbench_side(test: Path, runs: Path, out: Path, jobs: int | None, log: list) -> dict:
    from benchmark.evaluate import evaluate
    from benchmark.scoring.aggregate import read_results

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    evaluate(test, runs, out, jobs=jobs, force=True, with_references=False, device="cpu", log=log.append)
    wall = time.perf_counter() - t
    # The model's own time per clip is in the results; summed over workers when jobs > 1.
    return {"wall": wall, "sep": float(read_results(out / "results.csv")["sep_seconds"].sum())}


def asteroid_side(test: Path, ckpt: Path, keep: dict) -> dict:
    import torch
    from asteroid.metrics import get_metrics

    from recipes.checkpoint import load_model
    from recipes.data import FolderDataset
    from recipes.folder import load_split

    t = time.perf_counter()
    model, payload = load_model(ckpt)
    dataset = FolderDataset(load_split(test))
    rows, sep = {}, 0.0
    for i in range(len(dataset)):
        mix, sources, meta = dataset[i]
        t_sep = time.perf_counter()
        with torch.no_grad():
            est = model(mix[None])[0]
        sep += time.perf_counter() - t_sep
        # Failures print a stack trace each (asteroid's own choice); kept off the report.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            rows[meta["id"]] = get_metrics(mix.numpy(), sources.numpy(), est.numpy(), sample_rate=payload["sample_rate"],
                                           metrics_list=METRICS, average=False, ignore_metrics_errors=True)
        keep.setdefault("est", {})[meta["id"]] = (sources.numpy(), est.numpy())
    keep["rows"] = rows
    return {"wall": time.perf_counter() - t, "sep": sep}


def log_parts(lines: list[str]) -> dict[str, list[float]]:
    """Seconds of evaluate's own phases, from its log: worker start-up, the mixture baseline
    (cached per data set: paid once, not per model) and the model's rows."""
    parts: dict[str, list[float]] = {"workers": [], "baseline": [], "model": []}
    for line in lines:
        m = re.search(r"started \d+ worker processes in ([\d.]+) s", line) or re.search(r"clips in ([\d.]+) s", line)
        if m:
            key = "workers" if line.startswith("started") else "baseline" if "baseline" in line else "model"
            parts[key].append(float(m.group(1)))
    return parts


def compare(results: Path, keep: dict) -> dict:
    """Max |sepbench - get_metrics| per metric over the clips both computed."""
    import fast_bss_eval
    import numpy as np

    from benchmark.scoring.aggregate import read_results

    df = read_results(results).set_index("clip_id")
    out = {}
    # get_metrics' SDR is that of the best source order; find it the same way (mean SIR).
    ordered = {cid for cid, (ref, est) in keep["est"].items()
               if list(fast_bss_eval.bss_eval_sources(ref, est)[3]) == [0, 1]}
    for column, (key, idx) in PAIRS.items():
        diffs, failed = [], 0
        for cid, row in keep["rows"].items():
            theirs = row.get(key)
            if theirs is None:
                failed += 1
                continue
            if key == "sdr" and cid not in ordered:
                continue
            ours = float(df.loc[cid, column])
            theirs = float(np.asarray(theirs).reshape(-1)[idx])
            if math.isfinite(ours) and math.isfinite(theirs):
                diffs.append(abs(ours - theirs))
        out[column] = {"max_abs_diff": max(diffs) if diffs else math.nan, "n": len(diffs), "get_metrics_failed": failed}
    out["clips_best_order_swapped"] = len(keep["est"]) - len(ordered)
    noise_pesq = [r.get("pesq") for r in keep["rows"].values()]
    out["get_metrics_pesq_failures"] = sum(p is None for p in noise_pesq)
    return out


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--seconds", type=float, default=4.0, help="clip length")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run", type=Path, help="a finished run folder runs/<recipe>/<profile> to evaluate")
    p.add_argument("--train-steps", type=int, default=20, help="without --run: steps of conv_tasnet cpu training")
    args = p.parse_args(argv)
    profile = "cpu"
    if args.quick:
        args.n_test, args.seconds, args.repeats, args.train_steps, profile = 3, 1.0, 1, 1, "smoke"
    report = common.Report("bench_eval", args)
    import os

    # Imported once here, not inside whichever side runs first.
    import asteroid.metrics  # noqa: F401

    from benchmark.report import render  # noqa: F401
    from recipes.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = common.demo_data(tmp / "data", n_train=40, n_test=args.n_test, seconds=args.seconds)
        runs = tmp / "runs"
        if args.run:
            shutil.copytree(args.run, runs / args.run.parent.name / args.run.name)
            what = f"{args.run}"
        else:
            with contextlib.redirect_stderr(io.StringIO()):
                train("conv_tasnet", data, profile, out=runs, progress=False,
                      overrides=["trainer.max_epochs=1", f"trainer.limit_train_batches={args.train_steps}",
                                 "trainer.limit_val_batches=1"])
            what = f"conv_tasnet/{profile} trained {args.train_steps} steps here"
        ckpt = next(runs.glob("*/*/best.pt"))
        test, default_jobs = data / "test", os.cpu_count()
        logs: dict[str, list] = {"default": [], "1": []}
        keep: dict = {}
        timed = common.interleave({
            "asteroid": lambda: asteroid_side(test, ckpt, keep),
            "sepbench_jobs_default": lambda: sepbench_side(test, runs, tmp / "lb_default", None, logs["default"]),
            "sepbench_jobs_1": lambda: sepbench_side(test, runs, tmp / "lb_1", 1, logs["1"]),
        }, args.repeats)
        diffs = compare(tmp / "lb_1" / "results.csv", keep)
        default_vs_1 = compare(tmp / "lb_default" / "results.csv", keep)  # worker processes score the same
    n = args.n_test
    walls = {k: [r["wall"] for r in v] for k, v in timed.items()}
    med = {k: common.median(v) for k, v in walls.items()}
    cps = {k: n / v for k, v in med.items()}
    # The separation is the same model on both sides; without it, what is left is scoring
    # (and I/O, and sepbench's report). Single-process sides only: with workers the model
    # times overlap.
    rest = {k: common.median([r["wall"] - r["sep"] for r in timed[k]]) for k in ("asteroid", "sepbench_jobs_1")}
    sep = {k: common.median([r["sep"] for r in v]) for k, v in timed.items()}
    print(f"checkpoint: {what}; {n} test clips of {args.seconds:g} s at 8 kHz; {args.repeats} alternating runs per side")
    rows = [["asteroid get_metrics loop (1 process)", 1, med["asteroid"], cps["asteroid"], 1.0],
            [f"sepbench evaluate --jobs default ({default_jobs})", default_jobs, med["sepbench_jobs_default"],
             cps["sepbench_jobs_default"], cps["sepbench_jobs_default"] / cps["asteroid"]],
            ["sepbench evaluate --jobs 1", 1, med["sepbench_jobs_1"], cps["sepbench_jobs_1"],
             cps["sepbench_jobs_1"] / cps["asteroid"]]]
    print(common.table(["side", "processes", "wall s (median)", "clips/s", "speed-up vs asteroid"], rows))
    phases = {k: {p: common.median(v) for p, v in log_parts(logs[k]).items()} for k in logs}
    # The log rounds to 0.1 s: a tiny --quick row can read "0.0 s" (too fast to time, not free).
    per_model = {k: n / phases[k]["model"] if phases[k]["model"] > 0 else math.inf for k in logs}
    print(f"\nsepbench's phases (medians from its log): jobs default: worker start {phases['default']['workers']:.1f} s, "
          f"mixture baseline {phases['default']['baseline']:.1f} s, model rows {phases['default']['model']:.1f} s; "
          f"jobs 1: baseline {phases['1']['baseline']:.1f} s, model rows {phases['1']['model']:.1f} s.")
    print(f"every further checkpoint (baseline cached, workers running): {per_model['default']:.2f} clips/s = "
          f"{per_model['default'] / cps['asteroid']:.2f}x asteroid with jobs default, {per_model['1']:.2f} clips/s = "
          f"{per_model['1'] / cps['asteroid']:.2f}x with jobs 1")
    print(f"without the separation (same model both sides; model time asteroid {sep['asteroid']:.1f} s, "
          f"sepbench jobs 1 {sep['sepbench_jobs_1']:.1f} s): asteroid {rest['asteroid']:.1f} s, sepbench jobs 1 "
          f"{rest['sepbench_jobs_1']:.1f} s -> scoring speed-up {rest['asteroid'] / rest['sepbench_jobs_1']:.2f}x in one process")
    print("\nmax |sepbench - get_metrics| over clips (jobs 1 run; jobs default run in brackets)")
    print(common.table(["sepbench column", "get_metrics value", "clips compared", "max abs diff", "(jobs default)",
                        "get_metrics failed"],
                       [[c, f"{k}[{i}]", diffs[c]["n"], diffs[c]["max_abs_diff"], default_vs_1[c]["max_abs_diff"],
                         diffs[c]["get_metrics_failed"]]
                        for c, (k, i) in PAIRS.items()]))
    print(f"clips whose best source order is swapped (SDR not compared): {diffs['clips_best_order_swapped']}; "
          f"clips where get_metrics' PESQ failed (the noise as reference; it loses the voice's PESQ too): "
          f"{diffs['get_metrics_pesq_failures']}")
    report.figures = {"checkpoint": what, "n_clips": n, "clip_s": args.seconds, "repeats": args.repeats,
                      "default_jobs": default_jobs, "wall_s": walls, "wall_s_median": med, "clips_per_s": cps,
                      "separation_s_median": sep, "wall_minus_separation_s_median": rest,
                      "scoring_speedup_jobs_1": rest["asteroid"] / rest["sepbench_jobs_1"], "sepbench_phases_s": phases,
                      "further_model_clips_per_s": per_model,
                      "further_model_speedup": {k: v / cps["asteroid"] for k, v in per_model.items()},
                      "speedup_jobs_default": cps["sepbench_jobs_default"] / cps["asteroid"],
                      "speedup_jobs_1": cps["sepbench_jobs_1"] / cps["asteroid"], "diffs": diffs,
                      "diffs_jobs_default": default_vs_1, "sepbench_log": logs}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
