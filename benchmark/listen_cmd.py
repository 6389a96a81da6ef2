"""`sepbench listen --data DIR [--out leaderboard]`: the listening page (OUT/listen/index.html)
of a scored leaderboard, a thin wrapper around report.listen.build_listening_page."""
from __future__ import annotations

import sys
from pathlib import Path

from recipes.errors import SepbenchError
from recipes.folder import test_split_dir

from .report.listen import build_listening_page


def run(args) -> int:
    if args.clips_per_bucket is not None and args.clips_per_bucket < 1:
        raise SepbenchError(f"--clips-per-bucket {args.clips_per_bucket}: must be at least 1")
    out = Path(args.out)
    results = out / "results.csv"
    if not results.is_file():
        raise SepbenchError(f"{results} not found: run `sepbench evaluate --out {out}` first")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if args.models is not None and not models:
        raise SepbenchError(f"--models {args.models!r}: no model name given")
    test_dir = test_split_dir(Path(args.data))

    page = build_listening_page(results, test_dir, out, clips_per_bucket=args.clips_per_bucket, models=models, force=args.force,
                                log=lambda m: print(m, file=sys.stderr))
    print(f"listening page: {page}", file=sys.stderr)
    return 0
