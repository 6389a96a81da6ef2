"""`sepbench train RECIPE --data DIR ...`: a thin wrapper around recipes.train.train."""
from __future__ import annotations

import sys


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
