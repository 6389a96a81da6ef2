"""`sepbench listen --data DIR [--out leaderboard]`: the listening page (OUT/listen/index.html)
of a scored leaderboard, a thin wrapper around report.listen.build_listening_page."""
from __future__ import annotations

import sys
from pathlib import Path

from recipes.data import test_split_dir
from recipes.errors import SepbenchError

from .report.listen import build_listening_page

HELP = "build the listening page (OUT/listen/index.html) from an evaluated leaderboard and its test clips"


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="test split folder (numbered clip folders), or a data set root "
                   "holding test/ (the one the leaderboard was scored on)")
    p.add_argument("--out", default="leaderboard", help="leaderboard folder: results.csv is read from it and "
                   "listen/ written into it")
    p.add_argument("--runs", default="runs", help="runs folder the checkpoints in results.csv were found in")
    p.add_argument("--clips-per-bucket", type=int, default=1, help="clips shown per SNR label (default 1)")
    p.add_argument("--models", help="comma-separated names to show (recipe, recipe/profile, oracle_irm); "
                   "default all trained models plus the oracle")
    p.add_argument("--force", action="store_true", help="rebuild even when the page's inputs (results.csv, "
                   "summary.csv, plot, checkpoints, audio files) are those it was built from")


def run(args) -> int:
    if args.clips_per_bucket < 1:
        raise SepbenchError(f"--clips-per-bucket {args.clips_per_bucket}: must be at least 1")
    out = Path(args.out)
    results = out / "results.csv"
    if not results.is_file():
        raise SepbenchError(f"{results} not found: run `sepbench evaluate --out {out}` first")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if args.models is not None and not models:
        raise SepbenchError(f"--models {args.models!r}: no model name given")
    test_dir = test_split_dir(Path(args.data))

    page = build_listening_page(results, test_dir, out, runs_dir=Path(args.runs),
                                clips_per_bucket=args.clips_per_bucket, models=models, force=args.force,
                                log=lambda m: print(m, file=sys.stderr))
    print(f"listening page: {page}", file=sys.stderr)
    return 0
