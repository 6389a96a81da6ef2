"""Quality per CPU-minute: trains recipes at a fixed wall-clock budget, then scores the test set.

    .venv/bin/python perf/bench_quality.py --data data/real_dev [--recipes lstm_mask,spec_unet]
        [--minutes 10] [--profile cpu] [--work DIR] [--no-test] [--quick] [--out FILE.json] [key=value ...]

Each recipe trains from scratch (`sepbench train --force`, its profile plus `trainer.max_minutes`
and any key=value overrides) into WORK/runs. Printed per recipe: parameters, optimizer steps,
steps per second, epochs, best validation voice SI-SDRi (the figure to tune on), and unless
--no-test the test voice SI-SDRi (mean over the test clips, as `sepbench evaluate` scores it)
with its share of the oracle IRM's on the same clips. The test split is for reporting only:
never tune on it. The budget is wall-clock, so the figures depend on the machine and its load:
the load average is printed at the start and the end.
"""
from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import common


def _steps(run_dir: Path) -> int:
    rows = list(csv.DictReader(open(run_dir / "log.csv")))
    return int(rows[-1]["step"]) if rows else 0


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--data", type=Path, help="data set root (default: a small generated demo set)")
    p.add_argument("--recipes", default="lstm_mask,spec_unet,conv_tasnet")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--work", type=Path, help="runs and leaderboard go here (default: a temporary folder)")
    p.add_argument("--no-test", action="store_true", help="train and report validation figures only")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every recipe")
    args = p.parse_args()
    report = common.Report("bench_quality", args)

    from benchmark.evaluate import evaluate
    from recipes.train import train

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_quality_"))
    data, profile, minutes = args.data, args.profile, args.minutes
    if args.quick:
        data = data or common.demo_data(work / "demo", n_train=24, n_test=6, seconds=1.0)
        profile, minutes = "smoke", 0.05
    elif data is None:
        data = common.demo_data(work / "demo", n_train=200, n_test=40, seconds=4.0)
    rows = []
    for name in args.recipes.split(","):
        result = train(name, data, profile, out=work / "runs", force=True, progress=False,
                       overrides=[f"trainer.max_minutes={minutes}", *args.overrides])
        card, steps = result["card"], _steps(result["run_dir"])
        rows.append({"recipe": name, "params": card["n_params"], "steps": steps,
                     "steps_per_s": steps / max(card["train_seconds"], 1e-9), "epochs": card["epochs"],
                     "train_min": card["train_seconds"] / 60, "val_sisdri": card["metrics"]["best_val_sisdri"]})
        print(f"{name}: {steps} steps in {card['train_seconds']:.0f} s, val SI-SDRi "
              f"{rows[-1]['val_sisdri']:+.2f} dB", flush=True)
    headers = ["recipe", "params", "steps", "steps/s", "epochs", "train min", "val SI-SDRi dB"]
    if not args.no_test:
        evaluate(Path(data) / "test", runs=work / "runs", out=work / "leaderboard", jobs=None, force=True,
                 log=lambda *a, **k: None)
        import pandas as pd
        res = pd.read_csv(work / "leaderboard" / "results.csv")
        voice = res.pivot_table(index="clip_id", columns="model", values="voice_sisdri")
        for row in rows:
            both = voice[[row["recipe"], "oracle_irm"]].dropna()
            row["test_sisdri"] = float(both.iloc[:, 0].mean())
            row["irm_sisdri"] = float(both["oracle_irm"].mean())
            row["share_of_irm"] = row["test_sisdri"] / row["irm_sisdri"]
        headers += ["test SI-SDRi dB", "oracle IRM dB", "share of IRM"]
    print(common.table(headers, [list(r.values()) for r in rows]))
    report.figures["rows"] = rows
    report.figures.update(data=str(data), profile=profile, minutes=minutes, overrides=args.overrides)
    report.finish()


if __name__ == "__main__":
    main()
