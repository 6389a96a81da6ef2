"""Paired comparisons, tiers, seeds and measured-SNR buckets (benchmark.scoring.compare/aggregate),
and their way through `sepbench evaluate` into pairs.csv and LEADERBOARD.md."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recipes
from benchmark import evaluate as ev
from benchmark.report import render
from benchmark.scoring import aggregate, compare
from recipes.checkpoint import save_model
from recipes.runs import parse_run_folder, run_folder


def results(models: dict[str, np.ndarray], labels=None, seeds=None) -> pd.DataFrame:
    """One trained row per model x clip with the given voice SI-SDRi values."""
    rows = []
    for name, values in models.items():
        for i, v in enumerate(values):
            label = 0.0 if labels is None else labels[i]
            rows.append({"model": name, "profile": "cpu", "kind": "trained", "seed": "" if seeds is None else seeds,
                         "clip_id": f"{i:04d}", "snr_label": label, "snr_measured": label, "voice_sisdri": v})
    return pd.DataFrame(rows)


def overall(summary, model):
    return summary[(summary["model"] == model) & (summary["snr_bucket"] == "all")
                   & (summary["metric"] == "voice_sisdri")].iloc[0]


def test_a_small_constant_gain_on_every_clip_is_significant_although_the_intervals_overlap():
    base = np.random.default_rng(0).normal(5.0, 4.0, 40)
    df = results({"a": base + 0.2, "b": base})
    summary = aggregate.summarize(df)
    a, b = overall(summary, "a"), overall(summary, "b")
    assert a["ci95_low"] < b["ci95_high"]  # the per-model intervals overlap widely
    pairs = compare.pairs(df)
    row = pairs[pairs["snr_bucket"] == "all"].iloc[0]
    assert (row["model_a"], row["model_b"]) == ("a", "b") and row["n"] == 40
    assert row["mean_diff"] == pytest.approx(0.2) and row["ci95_low"] > 0 and row["significant"]
    assert compare.tiers(pairs, [("a", "cpu"), ("b", "cpu")]) == {("a", "cpu"): 1, ("b", "cpu"): 2}


def test_identical_models_share_one_tier():
    base = np.random.default_rng(1).normal(5.0, 4.0, 40)
    df = results({"a": base, "b": base.copy(), "c": base - 3.0})
    pairs = compare.pairs(df)
    ab = pairs[(pairs["snr_bucket"] == "all") & (pairs["model_b"] == "b")].iloc[0]
    assert ab["p_wilcoxon"] == 1.0 and not ab["significant"] and ab["mean_diff"] == 0.0
    assert compare.tiers(pairs, [("a", "cpu"), ("b", "cpu"), ("c", "cpu")]) == {
        ("a", "cpu"): 1, ("b", "cpu"): 1, ("c", "cpu"): 2}


def test_a_tier_is_anchored_at_its_best_model():
    # b is tied with a and c is tied with b, but c is significantly worse than a: c opens tier 2.
    pairs = pd.DataFrame([{"snr_bucket": "all", "model_a": x, "profile_a": "cpu", "model_b": y, "profile_b": "cpu",
                           "significant": sig} for x, y, sig in (("a", "b", False), ("b", "c", False),
                                                                  ("a", "c", True))])
    ranked = [("a", "cpu"), ("b", "cpu"), ("c", "cpu")]
    assert compare.tiers(pairs, ranked) == {("a", "cpu"): 1, ("b", "cpu"): 1, ("c", "cpu"): 2}
    assert compare.ties_with_best(pairs, ranked, "all") == {("a", "cpu"), ("b", "cpu")}


def test_holm_matches_a_hand_computed_case():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert compare.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert compare.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_the_bootstrap_is_seeded_and_leaves_the_global_generator_alone():
    diff = np.random.default_rng(2).normal(0.5, 1.0, 30)
    state = np.random.get_state()[1].copy()
    first = compare.paired_bootstrap_ci(diff)
    np.random.seed(123)
    assert compare.paired_bootstrap_ci(diff) == first
    np.random.seed(0)
    np.random.set_state(("MT19937", state, 624, 0, 0.0))
    compare.paired_bootstrap_ci(diff)
    assert np.array_equal(np.random.get_state()[1], state)
    assert first[0] < diff.mean() < first[1]


def test_per_bucket_ties_are_bold_in_the_snr_table():
    rng = np.random.default_rng(3)
    labels = [0.0] * 20 + [5.0] * 20
    base = rng.normal(5.0, 3.0, 40)
    # a and b tie at 0 dB (identical there); at 5 dB a is better on every clip.
    b = base.copy()
    b[20:] -= 0.5
    df = results({"a": base, "b": b}, labels)
    text = render.snr_table(aggregate.summarize(df), compare.pairs(df))
    row_b = next(line for line in text.splitlines() if line.startswith("| b "))
    cells = [c.strip() for c in row_b.strip("|").split("|")]
    assert cells[3].startswith("**") and not cells[4].startswith("**")


def test_seeds_pool_into_one_row_with_their_spread():
    rng = np.random.default_rng(4)
    base = rng.normal(5.0, 3.0, 30)
    df = pd.concat([results({"a": base + 1.0}, seeds="0"), results({"a": base - 1.0}, seeds="1")],
                   ignore_index=True)
    row = overall(aggregate.summarize(df), "a")
    assert row["n_seeds"] == 2 and row["n"] == 60
    assert row["mean"] == pytest.approx(base.mean())
    assert row["seed_std"] == pytest.approx(math.sqrt(2.0))  # seed means base+1 and base-1
    one = overall(aggregate.summarize(results({"a": base + 1.0})), "a")
    assert row["ci95_high"] - row["ci95_low"] > one["ci95_high"] - one["ci95_low"]  # the seed spread counts
    assert row["ci95_low"] < row["mean"] < row["ci95_high"]
    again = overall(aggregate.summarize(df.sample(frac=1, random_state=0)), "a")
    assert (again["ci95_low"], again["ci95_high"]) == (row["ci95_low"], row["ci95_high"])


def test_measured_buckets_follow_the_stems_not_the_label():
    df = results({"a": np.zeros(3)}, labels=[0.0, 5.0, 10.0])
    df.loc[1, "snr_measured"] = 0.4  # labelled 5 dB, measured 0.4 dB
    assert aggregate.default_edges(df["snr_label"]) == [2.5, 7.5]
    assert list(aggregate.buckets(df, "label")) == ["0", "5", "10"]
    assert list(aggregate.buckets(df, "measured")) == ["<2.5", "<2.5", ">=7.5"]
    assert list(aggregate.buckets(df, "measured", edges=[0.2, 4])) == ["<0.2", "0.2..4", ">=4"]
    # One label only: a single bin that is not the overall "all" row.
    assert set(aggregate.buckets(df.assign(snr_label=0.0), "measured")) == {"any"}
    summary = aggregate.summarize(df.assign(snr_label=0.0), "measured")
    assert sorted(summary[summary["metric"] == "voice_sisdri"]["snr_bucket"]) == ["all", "any"]
    order = sorted(["all", ">=7.5", "2.5..7.5", "<2.5", "-2.5..0"], key=aggregate.bucket_sort_key)
    assert order == ["<2.5", "-2.5..0", "2.5..7.5", ">=7.5", "all"]


def test_run_folders_name_their_seed():
    assert run_folder("cpu", 0) == "cpu" and run_folder("cpu", 3) == "cpu-seed3"
    assert parse_run_folder("cpu-seed3") == ("cpu", 3) and parse_run_folder("cpu") == ("cpu", None)
    assert parse_run_folder("my-seedy") == ("my-seedy", None)


def _run(runs: Path, recipe: str, folder: str, seed: int) -> None:
    args = {"sample_rate": 8000, "hidden": 16, "n_layers": 1}
    torch.manual_seed(seed)
    model = recipes.get(recipe).build(**args)
    path = runs / recipe / folder
    path.mkdir(parents=True)
    save_model(path / "best.pt", model, recipe, args, 8000, profile="tiny", seed=seed, config={})
    card = {"recipe": recipe, "profile": "tiny", "seed": seed, "model_args": args, "sample_rate": 8000,
            "status": "complete", "n_params": sum(p.numel() for p in model.parameters()), "train_seconds": 1.0}
    (path / "card.json").write_text(json.dumps(card), encoding="utf-8")


@pytest.mark.slow
def test_evaluate_pools_seeds_writes_pairs_and_buckets_by_measured_snr(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _run(runs, "lstm_mask", run_folder("tiny", seed), seed)
    out = tmp_path / "out"
    ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None, with_references=False,
                bucket="measured", edges=[-1.0, 1.0])
    res = aggregate.read_results(out / "results.csv")
    assert sorted(set(res["seed"])) == ["0", "1"] and set(res["profile"]) == {"tiny"}
    summary = aggregate.read_summary(out / "summary.csv")
    row = overall(summary, "lstm_mask")
    assert row["n_seeds"] == 2 and row["n"] == 2 * 9
    assert set(summary["snr_bucket"]) <= {"<-1", "-1..1", ">=1", "all"}
    assert (out / "pairs.csv").is_file()  # one model: no pair, but the file (header) is written
    text = (out / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert "SNR measured on the stems (bin edges -1, 1 dB" in text and "| Seeds" in text


def test_evaluate_refuses_edges_without_measured_buckets(tiny_data, tmp_path):
    with pytest.raises(ev.SepbenchError, match="--bucket-edges"):
        ev.evaluate(tiny_data / "test", None, tmp_path / "out", edges=[0.0, 1.0])
