"""Harness overhead: seconds per training step of sepbench's shared training entry vs a plain loop.

    .venv/bin/python perf/bench_training.py [--recipes conv_tasnet lstm_mask] [--repeats 4]
        [--steps 12] [--warmup 3] [--quick] [--out FILE.json]

Side "sepbench": recipes.train.train() itself (Lightning Trainer + SeparationSystem, callbacks,
logger, GlobalBatchSampler, exactly as `sepbench train` builds them) on the recipe's cpu profile
(--quick: smoke), one epoch of warmup + steps batches. The only addition is a timestamp taken in the system's
on_train_batch_end hook (a no-op hook Lightning calls anyway).
Side "plain": the same model (same builder, arguments and seed), Adam, loss, DataLoader (built by
the same function) and grad-norm clipping in a hand-written PyTorch loop, timestamp per step.
A step is the time between consecutive timestamps, so it includes loading the batch and all of
Lightning's per-step work; the first `warmup` steps of every run are dropped. Runs alternate
(A B, B A, ...) so the shared machine's load falls on both sides alike. Both wall time and the
process's CPU time are reported; on a busy machine CPU time with OMP_NUM_THREADS=1 is the
steadier measure of the harness's own cost.
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import common

import recipes  # noqa: E402  (common puts the repository on sys.path)


def _stamp() -> tuple[float, float]:
    # Wall time is what a user waits; process CPU time (all threads) is what the step costs, and
    # it is much less disturbed by other jobs on a shared machine.
    return time.perf_counter(), time.process_time()


class _Stamps:
    """Mixed into the recipe's LightningModule: one stamp per finished training batch."""
    stamps: list = []

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        _Stamps.stamps.append(_stamp())


def _steps(stamps: list, warmup: int) -> dict[str, list[float]]:
    kept = stamps[warmup:]
    return {clock: [b[i] - a[i] for a, b in zip(kept, kept[1:])] for i, clock in enumerate(("wall", "cpu"))}


def sepbench_run(recipe: str, profile: str, data: Path, out: Path, n_batches: int, warmup: int, threads: list) -> list[float]:
    from recipes.train import train

    rec = recipes.get(recipe)
    base = rec.system_class()
    timed = type(f"Timed{base.__name__}", (_Stamps, base), {})
    _Stamps.stamps = []
    # Swapped in through the registry, the one place train() looks the system class up.
    recipes._REGISTRY[recipe] = dataclasses.replace(rec, system=timed)
    try:
        # limit_val_batches=1, not 0: train()'s EarlyStopping needs val_loss (0 crashes), and
        # validation runs after the last timed step, so it is not in any step time.
        train(recipe, data, profile, out=out, force=True, progress=False,
              overrides=["trainer.max_epochs=1", f"trainer.limit_train_batches={n_batches}",
                         "trainer.limit_val_batches=1", "trainer.max_minutes=null"])
    finally:
        recipes._REGISTRY[recipe] = rec
    import torch
    threads.append(torch.get_num_threads())
    return _steps(_Stamps.stamps, warmup)


def plain_run(recipe: str, profile: str, data: Path, n_batches: int, warmup: int, threads: list) -> list[float]:
    import pytorch_lightning as pl
    import torch

    from recipes import config
    from recipes.data import data_splits
    from recipes.losses import build_loss
    from recipes.train import loaders

    cfg = config.resolve(recipe, profile, ["trainer.max_epochs=1"])
    seed = int(cfg["seed"])
    pl.seed_everything(seed, workers=True, verbose=False)  # what train() does before building
    loader, _, sr = loaders(cfg, data_splits(data, cfg["data"]["val_fraction"], seed), seed)
    model = recipes.get(recipe).build(**config.model_args(recipe, sr, cfg["model"]))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"], weight_decay=cfg["optim"]["weight_decay"])
    loss_fn, clip = build_loss(cfg["loss"], sr), cfg["optim"]["grad_clip"]
    model.train()
    stamps = []
    for i, (mix, sources) in enumerate(loader):
        if i == n_batches:
            break
        opt.zero_grad()
        loss = loss_fn(model(mix), sources)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        stamps.append(_stamp())
    threads.append(torch.get_num_threads())
    return _steps(stamps, warmup)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--recipes", nargs="+", default=["conv_tasnet", "lstm_mask"])
    p.add_argument("--repeats", type=int, default=4, help="runs per side, alternating")
    p.add_argument("--steps", type=int, default=12, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3, help="steps dropped at the start of every run")
    p.add_argument("--profile", default="cpu", help="config profile of the models, batch and segment")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.warmup, args.profile = 1, 2, 1, "smoke"
    profile = args.profile
    report = common.Report("bench_training", args)
    from recipes import config

    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        n_batches = args.warmup + args.steps + 1  # stamps bound steps: one more stamp than steps
        batch = max(config.resolve(r, profile)["optim"]["batch_size"] for r in args.recipes)
        # Enough training clips for one epoch of n_batches (10% are carved off for validation).
        n_train = int(n_batches * batch / 0.9) + 2
        seconds = 0.5 + max(config.resolve(r, profile)["data"]["segment_seconds"] for r in args.recipes)
        data = common.demo_data(Path(tmp) / "data", n_train=n_train, n_test=1, seconds=seconds)
        for recipe in args.recipes:
            cfg = config.resolve(recipe, profile)
            threads: list[int] = []
            runs = common.interleave({
                "sepbench": lambda: sepbench_run(recipe, profile, data, Path(tmp) / "runs", n_batches, args.warmup, threads),
                "plain": lambda: plain_run(recipe, profile, data, n_batches, args.warmup, threads),
            }, args.repeats)
            n_params = sum(p.numel() for p in recipes.get(recipe).build(**config.model_args(recipe, 8000, cfg["model"])).parameters())
            figures[recipe] = {"n_params": n_params, "batch": cfg["optim"]["batch_size"],
                               "segment_s": cfg["data"]["segment_seconds"], "torch_threads": sorted(set(threads))}
            for clock in ("wall", "cpu"):
                flat = {k: [s for run in v for s in run[clock]] for k, v in runs.items()}
                med = {k: common.median(v) for k, v in flat.items()}
                mean = {k: statistics.fmean(v) for k, v in flat.items()}
                # Each repeat's two runs sat next to each other in time: their ratio is the paired
                # estimate, and its median the headline figure (a load burst spoils one pair only).
                paired = [common.median(a[clock]) / common.median(b[clock]) for a, b in zip(runs["sepbench"], runs["plain"])]
                figures[recipe][clock] = {
                    "steps_per_side": len(flat["plain"]), "plain_s_median": med["plain"], "sepbench_s_median": med["sepbench"],
                    "plain_s_mean": mean["plain"], "sepbench_s_mean": mean["sepbench"], "ratio_paired_median": common.median(paired),
                    "ratio_per_repeat": paired, "ratio_of_medians": med["sepbench"] / med["plain"],
                    "ratio_of_means": mean["sepbench"] / mean["plain"], "steps_s": flat}
                rows.append([recipe, clock, f"{n_params / 1e6:.2f} M", len(flat["plain"]), med["plain"], med["sepbench"],
                             common.median(paired), " ".join(f"{r:.3f}" for r in paired), med["sepbench"] / med["plain"],
                             mean["sepbench"] / mean["plain"]])
            w = figures[recipe]["wall"]
            print(f"{recipe}: plain {w['plain_s_median']:.4f} s/step, sepbench {w['sepbench_s_median']:.4f} s/step (wall)",
                  flush=True)
    print()
    print(f"Training step at 8 kHz, {profile} profile, batch {batch} x {seconds - 0.5:g} s, {args.repeats} alternating runs "
          f"per side, {args.steps} timed steps per run after {args.warmup} warm-up steps (goal: ratio <= 1.05)")
    print(common.table(["recipe", "clock", "params", "steps/side", "plain s/step (median)", "sepbench s/step (median)",
                        "ratio (median of pairs)", "ratio per pair", "ratio of medians", "ratio of means"], rows))
    report.figures = {"profile": profile, "recipes": figures, "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
