"""Data loading vs training: can FolderDataset + DataLoader keep up with the training step?

    .venv/bin/python perf/bench_loading.py [--recipes conv_tasnet lstm_mask] [--repeats 4]
        [--batches 10] [--steps 4] [--seconds 4] [--quick] [--out FILE.json]

Loading: the training DataLoader exactly as the training entry builds it (recipes.train.loaders:
FolderDataset in training mode with random segments, GlobalBatchSampler, the profile's batch size
and num_workers), timed batch by batch. "warm": files in the page cache (just written); "cold":
their pages dropped with posix_fadvise(DONTNEED) before the pass, so every read goes to the disk.
Step: forward + backward + grad clipping + Adam step of the recipe's cpu-profile model on one
batch already in memory (what the step costs without loading). With num_workers=0, loading runs
inside the step, so loading's share of a step is load / (load + step). Runs alternate.

    .venv/bin/python perf/bench_loading.py --gpu-loader [--workers 1 2] [--batches 40] [--quick]

--gpu-loader: what the gpu profile's DataLoader supplies, in samples/s and samples/s per worker:
its segments (4 s) and batch size, with dynamic mixing (remixed crops, as the cpu profile
trains; the gpu profile itself leaves `data.dynamic_mixing` off) and with the stored mixtures,
for each worker count, passes alternating. A pass times --batches batches after the first, whose
time (starting the workers) is reported apart: it is paid at every epoch, since the workers are
not persistent (and so every epoch's workers also refit the stems' gains that dynamic mixing
caches). Nothing consumes the batches, so this is the loader's ceiling. Beside it, an estimate
of what one H100/H200 consumes for each seed recipe (gpu_demand: FLOPs and aten ops of a step,
at assumed rates), and the workers that supply twice the highest: until a GPU run measures the
consumption (scripts/gpu_check.sh's report), that sets the gpu profile's `data.num_workers`.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import common

import recipes  # noqa: E402


def drop_cache(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def load_pass(loader, n: int, files: list[Path] | None, epoch: list[int]) -> list[float]:
    if files is not None:
        drop_cache(files)
    epoch[0] += 1  # new crops and order each pass, as in training
    loader.dataset.set_epoch(epoch[0])
    loader.sampler.set_epoch(epoch[0])
    times, it = [], iter(loader)
    for _ in range(n):
        t = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t)
    return times


def step_run(model, opt, loss_fn, clip: float, batch, n: int) -> list[float]:
    import torch

    mix, sources = batch
    times = []
    for i in range(n + 1):  # the first step of a run is a warm-up, dropped
        t = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(mix), sources).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return times


def loader_pass(loader, n: int, epoch: list[int]) -> dict:
    """Time to the first batch (the workers start and prefetch), then `n` batches."""
    epoch[0] += 1  # new crops and remixes each pass, as each epoch in training
    loader.dataset.set_epoch(epoch[0])
    loader.sampler.set_epoch(epoch[0])
    t = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        next(it)
    return {"first_batch_s": first, "batches_s": time.perf_counter() - t}


# What a GPU would consume, estimated from the model alone until a GPU run measures it
# (scripts/gpu_check.sh): a training step takes at least its FLOPs at ASSUMED_TFLOPS and at least
# ASSUMED_OP_US of host time per aten op (eager PyTorch launches each op from Python). Both are
# set high for an H100/H200 (about 25 % of the ~800 TFLOP/s its bf16 matrix products reach; under
# the 2.1 us one tiny CPU op costs on this checkout's CPU, before any CUDA launch), so the
# estimate errs towards more consumption, i.e. more workers: an upper bound, not a forecast.
ASSUMED_TFLOPS = 200.0
ASSUMED_OP_US = 4.0
# Plus Lightning's own host time per step (hooks, logging, the optimizer's closure): 1.15 ms on
# this CPU (a 4x4 Linear: 1.88 ms per Lightning step against 0.73 ms in a plain loop); less than
# half of it, for the same reason.
ASSUMED_LIGHTNING_MS = 0.5
# The GPU machine's cores: one stays with the training process, the rest may be loader workers.
TARGET_CORES = 16


def _rnn_flops(model, count: list[float]):
    """Forward hooks adding nn.LSTM/GRU FLOPs, which torch's FLOP counter leaves out:
    2 FLOPs per weight per frame, per layer and direction."""
    import torch

    def hook(module, inputs, _):
        x = inputs[0]
        frames = x.shape[1] if module.batch_first else x.shape[0]
        batch = x.shape[0] if module.batch_first else x.shape[1]
        weights = sum(p.numel() for name, p in module.named_parameters() if name.startswith("weight"))
        count[0] += 2.0 * weights * frames * batch

    return [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.LSTM, torch.nn.GRU))]


def gpu_demand(recipe: str, cfg: dict, sr: int) -> dict:
    """Estimated training samples/s of `recipe`'s gpu-profile model on one H100/H200."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from recipes import config
    from recipes.losses import build_loss

    class OpCount(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = recipes.get(recipe).build(**config.model_args(recipe, sr, cfg["model"])).train()
    loss_fn = build_loss(cfg["loss"], sr)
    n = int(round(cfg["data"]["segment_seconds"] * sr))
    mix, sources = torch.randn(1, n) * 0.1, torch.randn(1, 2, n) * 0.1  # one item: FLOPs scale with the batch
    rnn, flops, ops = [0.0], FlopCounterMode(display=False), OpCount()
    hooks = _rnn_flops(model, rnn)
    with flops:
        loss_fn(model(mix), sources).backward()
    for h in hooks:
        h.remove()
    with ops:  # aten ops of one step, batch-independent; Adam and clipping run as a few foreach ops on a GPU
        loss_fn(model(mix), sources).backward()
    bs = cfg["optim"]["batch_size"]
    step_flops = bs * (flops.get_total_flops() + 3 * rnn[0])  # an RNN's backward: about twice its forward
    compute_s, host_s = step_flops / (ASSUMED_TFLOPS * 1e12), ops.n * ASSUMED_OP_US * 1e-6 + ASSUMED_LIGHTNING_MS / 1000
    step_s = max(compute_s, host_s)
    return {"gflop_per_step": step_flops / 1e9, "aten_ops_per_step": ops.n, "est_step_ms": 1000 * step_s,
            "bound": "FLOPs" if compute_s >= host_s else "host (op launches)", "est_samples_per_s": bs / step_s}


def gpu_loader(args, report) -> int:
    import math

    from recipes import config
    from recipes.data import FolderDataset, data_splits
    from recipes.train import loaders

    workers = args.workers
    if any(w < 1 for w in workers):
        raise SystemExit("--workers: counts >= 1 (0 would load inside the training step, which bench_loading times "
                         "without --gpu-loader)")
    recipe = args.recipes[0]
    base = config.resolve(recipe, "gpu")
    bs, segment = base["optim"]["batch_size"], base["data"]["segment_seconds"]
    for other in args.recipes[1:]:  # one loader serves all: the recipes must not change it
        cfg = config.resolve(other, "gpu")
        if (cfg["data"], cfg["optim"]["batch_size"], cfg["seed"]) != (base["data"], bs, base["seed"]):
            raise SystemExit(f"{other}'s gpu loader differs from {recipe}'s: run them one at a time (--recipes)")
    figures, sides = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # Enough clips for a pass of (1 + batches) batches plus the validation carved from train/.
        n_train = int((args.batches + 1) * bs / (1 - base["data"]["val_fraction"])) + 2
        data = common.demo_data(Path(tmp) / "data", n_train=n_train, n_test=1, seconds=args.seconds)
        seed = int(base["seed"])
        splits = data_splits(data, base["data"]["val_fraction"], seed)
        epoch = [0]
        for mixing in ("dynamic", "stored"):
            for w in workers:
                cfg = config.resolve(recipe, "gpu", [f"data.dynamic_mixing={mixing == 'dynamic'}",
                                                     f"data.num_workers={w}"])
                loader = loaders(cfg, splits, seed)[0]
                sides[f"{mixing}_w{w}"] = lambda loader=loader: loader_pass(loader, args.batches, epoch)
        passes = common.interleave(sides, args.repeats)
        rows = []
        for name, runs in passes.items():
            mixing, w = name.split("_w")[0], int(name.split("_w")[1])
            rate = args.batches * bs / common.median([p["batches_s"] for p in runs])
            first = common.median([p["first_batch_s"] for p in runs])
            figures[name] = {"mixing": mixing, "workers": w, "samples_per_s": rate, "samples_per_s_per_worker": rate / w,
                             "first_batch_s": first, "passes": runs}
            rows.append([mixing, w, rate, rate / w, first])
        sr = FolderDataset(splits["train"][:1]).sample_rate
    print(f"\nThe gpu profile's training loader: batch {bs} x {segment:g} s segments of {args.seconds:g} s clips at "
          f"{sr} Hz, {args.batches} batches per pass after the first, median of {args.repeats} alternating passes, "
          "nothing consuming them")
    print(common.table(["mixing", "workers", "samples/s", "samples/s per worker", "first batch s"], rows))
    demand = {r: gpu_demand(r, config.resolve(r, "gpu"), sr) for r in args.demand_recipes}
    print(f"\nEstimated GPU consumption (gpu profile, batch {bs}; >= FLOPs at {ASSUMED_TFLOPS:g} TFLOP/s and "
          f">= {ASSUMED_OP_US:g} us per aten op + {ASSUMED_LIGHTNING_MS:g} ms per step: an estimate, not a measurement)")
    print(common.table(["recipe", "GFLOP/step", "aten ops/step", "bound", "est. ms/step", "est. samples/s"],
                       [[r, d["gflop_per_step"], d["aten_ops_per_step"], d["bound"], d["est_step_ms"],
                         d["est_samples_per_s"]] for r, d in demand.items()]))
    need = 2 * max(d["est_samples_per_s"] for d in demand.values())
    # The lowest rate per worker measured: workers share memory bandwidth and the main process's core.
    per_worker = {m: min(f["samples_per_s_per_worker"] for f in figures.values() if f["mixing"] == m)
                  for m in ("dynamic", "stored")}
    advice = {m: math.ceil(need / rate) for m, rate in per_worker.items()}
    fits = {m: n <= TARGET_CORES - 1 for m, n in advice.items()}
    print(f"\n2x the highest estimate: {need:.0f} samples/s; workers at the lowest rate per worker measured: "
          + ", ".join(f"{m} mixing {n} ({'fits' if fits[m] else 'does NOT fit'} {TARGET_CORES} cores)"
                      for m, n in advice.items()))
    report.figures = {"mode": "gpu_loader", "recipe": recipe, "batch": bs, "segment_s": segment, "clip_s": args.seconds,
                      "batches": args.batches, "repeats": args.repeats, "loaders": figures,
                      "assumed_tflops": ASSUMED_TFLOPS, "assumed_op_us": ASSUMED_OP_US,
                      "assumed_lightning_ms": ASSUMED_LIGHTNING_MS, "gpu_demand": demand,
                      "needed_samples_per_s": need, "workers_for_2x": advice,
                      "target_cores": TARGET_CORES, "fits_target_cores": fits}
    report.finish()
    return 0


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--recipes", nargs="+", default=["conv_tasnet", "lstm_mask"])
    p.add_argument("--repeats", type=int, default=4, help="alternating runs per side")
    p.add_argument("--batches", type=int, help="batches per loading pass (default 10; --gpu-loader 40: with "
                   "workers prefetching 2 batches each, 10 would time the prefetch)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per step run")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length of the generated data set")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--gpu-loader", action="store_true", help="the gpu profile's loader in samples/s per worker")
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="--gpu-loader: worker counts")
    p.add_argument("--demand-recipes", nargs="+", default=["conv_tasnet", "lstm_mask", "spec_unet"],
                   help="--gpu-loader: recipes whose GPU consumption is estimated")
    args = p.parse_args(argv)
    if args.gpu_loader:
        args.batches = args.batches or 40
        if args.quick:
            # clips as long as the gpu profile's segment (4 s): shorter ones are refused as all padding
            args.repeats, args.batches, args.seconds, args.workers, args.demand_recipes = 1, 2, 4.0, [1], ["spec_unet"]
        return gpu_loader(args, common.Report("bench_loading", args))
    args.batches = args.batches or 10
    if args.quick:
        args.repeats, args.batches, args.steps, args.seconds, args.profile = 1, 2, 1, 1.0, "smoke"
    report = common.Report("bench_loading", args)
    import torch

    from recipes import config
    from recipes.data import data_splits
    from recipes.losses import build_loss
    from recipes.train import loaders

    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        batch = max(config.resolve(r, args.profile)["optim"]["batch_size"] for r in args.recipes)
        data = common.demo_data(Path(tmp) / "data", n_train=int(args.batches * batch / 0.9) + 2, n_test=1,
                                seconds=args.seconds)
        for recipe in args.recipes:
            cfg = config.resolve(recipe, args.profile)
            seed = int(cfg["seed"])
            splits = data_splits(data, cfg["data"]["val_fraction"], seed)
            loader, _, sr = loaders(cfg, splits, seed)
            files = [f for c in splits["train"] for f in (c.mix, c.voice, c.noise)]
            torch.manual_seed(seed)
            model = recipes.get(recipe).build(**config.model_args(recipe, sr, cfg["model"])).train()
            opt = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"])
            loss_fn, fixed, epoch = build_loss(cfg["loss"], sr), next(iter(loader)), [0]
            runs = common.interleave({
                "load_warm": lambda: load_pass(loader, args.batches, None, epoch),
                "load_cold": lambda: load_pass(loader, args.batches, files, epoch),
                "step": lambda: step_run(model, opt, loss_fn, cfg["optim"]["grad_clip"], fixed, args.steps),
            }, args.repeats)
            med = {k: common.median([t for run in v for t in run]) for k, v in runs.items()}
            bs = cfg["optim"]["batch_size"]
            share = {k: med[k] / (med[k] + med["step"]) for k in ("load_warm", "load_cold")}
            figures[recipe] = {"batch": bs, "segment_s": cfg["data"]["segment_seconds"],
                               "num_workers": cfg["data"]["num_workers"], "clip_s": args.seconds,
                               **{f"{k}_s_per_batch": v for k, v in med.items()},
                               "load_warm_clips_per_s": bs / med["load_warm"], "load_cold_clips_per_s": bs / med["load_cold"],
                               "step_clips_per_s": bs / med["step"],
                               "load_share_warm": share["load_warm"], "load_share_cold": share["load_cold"], "runs_s": runs}
            rows.append([recipe, f"{bs} x {cfg['data']['segment_seconds']:g} s", cfg["data"]["num_workers"],
                         bs / med["load_warm"], bs / med["load_cold"], bs / med["step"],
                         1000 * med["load_warm"], 1000 * med["load_cold"], 1000 * med["step"],
                         f"{100 * share['load_warm']:.2f} %", f"{100 * share['load_cold']:.2f} %"])
            print(f"{recipe}: load {1000 * med['load_warm']:.1f} ms (cold {1000 * med['load_cold']:.1f}) "
                  f"vs step {1000 * med['step']:.0f} ms per batch", flush=True)
    print()
    print(f"Loading vs training step, {args.profile} profile, 8 kHz, {args.seconds:g} s clips, "
          f"{args.repeats} alternating runs per side, medians per batch (goal: loading <= 5 % of the step)")
    print(common.table(["recipe", "batch", "workers", "loader clips/s (warm)", "loader clips/s (cold)",
                        "training consumes clips/s", "load ms/batch (warm)", "load ms/batch (cold)", "step ms",
                        "loading share of step (warm)", "loading share (cold)"], rows))
    report.figures = {"profile": args.profile, "repeats": args.repeats, "recipes": figures}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
