"""`sepbench recipes`: every registered recipe with its description and size per profile."""
from __future__ import annotations

from tabulate import tabulate

import recipes
from recipes import config


def _params(name: str, profile: str, sample_rate: int) -> str:
    cfg = config.resolve(name, profile)
    model = recipes.get(name).build(**config.model_args(name, sample_rate, cfg["model"]))
    n = sum(p.numel() for p in model.parameters())
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def run(args) -> int:
    rows = [[n, "yes" if recipes.get(n).default else "", recipes.get(n).description]
            + [_params(n, p, args.sample_rate) for p in ("smoke", "cpu", "gpu")] for n in recipes.names()]
    print(tabulate(rows, headers=["recipe", "run_all default", "description", "params smoke", "params cpu", "params gpu"]))
    return 0
