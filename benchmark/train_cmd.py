"""`sepbench train RECIPE --data DIR ...`: a thin wrapper around recipes.train.train."""
from __future__ import annotations

import sys

from recipes.config import PROFILES

HELP = "train one recipe (resumes an interrupted run; a finished run is a no-op unless --force)"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="registered recipe name (see `sepbench recipes`)")
    p.add_argument("--data", required=True, help="data set root with train/ (and optionally val/)")
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--out", default="runs", help="runs folder; the run goes to OUT/RECIPE/PROFILE (seed 0) or "
                   "OUT/RECIPE/PROFILE-seedK")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (overrides trainer.max_minutes)")
    p.add_argument("--seed", type=int, help="overrides seed (default 0); each seed trains in its own run folder")
    p.add_argument("--devices", help="overrides trainer.devices (e.g. 4, or 'auto')")
    p.add_argument("--num-nodes", type=int, help="overrides trainer.num_nodes")
    p.add_argument("--strategy", help="overrides trainer.strategy (auto, ddp, ...)")
    p.add_argument("--precision", help="overrides trainer.precision (32-true, bf16-mixed, ...)")
    p.add_argument("--resume", action="store_true", help="insist on continuing from last.ckpt")
    p.add_argument("--force", action="store_true", help="delete the run folder and train from scratch")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=3e-4")


def overrides_from_args(args) -> list[str]:
    flags = {"trainer.max_minutes": args.max_minutes, "seed": args.seed, "trainer.devices": args.devices,
             "trainer.num_nodes": args.num_nodes, "trainer.strategy": args.strategy,
             "trainer.precision": args.precision}
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)


def run(args) -> int:
    # Late: recipes.train imports PyTorch Lightning (seconds), which building the parser of every
    # subcommand must not pay.
    from recipes.train import train

    result = train(args.recipe, args.data, profile=args.profile, out=args.out,
                   overrides=overrides_from_args(args), resume=args.resume, force=args.force)
    if result.get("global_rank", 0) != 0:
        return 0
    m = result["metrics"]
    best = m.get("best_epoch")  # 0-based in card.json; shown from 1 like the per-epoch lines
    print(f"{args.recipe}/{result['run_dir'].name}: {result['status']}; best epoch "
          f"{best + 1 if isinstance(best, int) and best >= 0 else best}, "
          f"val_loss {m.get('best_val_loss', float('nan')):.3f}, val voice SI-SDRi "
          f"{m.get('best_val_sisdri', float('nan')):+.2f} dB -> {result['best']}", file=sys.stderr)
    return 0
