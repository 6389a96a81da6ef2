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


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--recipes", nargs="+", default=["conv_tasnet", "lstm_mask"])
    p.add_argument("--repeats", type=int, default=4, help="alternating runs per side")
    p.add_argument("--batches", type=int, default=10, help="batches per loading pass")
    p.add_argument("--steps", type=int, default=4, help="timed steps per step run")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length of the generated data set")
    p.add_argument("--profile", default="cpu")
    args = p.parse_args(argv)
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
