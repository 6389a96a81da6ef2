"""benchmark.scoring.aggregate: statistics per model x SNR bucket, CSV round trips."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.scoring import aggregate


def results_frame(values: dict[str, list[float]], labels: list[float], model="m", kind="trained") -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame({"model": model, "profile": "p", "kind": kind, "clip_id": [f"{i:04d}" for i in range(n)],
                         "snr_label": labels, **values, "failure_reason": [""] * n})


@pytest.mark.parametrize("value", [0.1, -7.3, 1e-9, 42.0])
def test_ci_of_identical_values_has_zero_width(value):
    s = aggregate.metric_stats([value] * 7)
    assert s["n"] == 7 and s["std"] == 0.0
    assert s["mean"] == s["median"] == s["ci95_low"] == s["ci95_high"] == value


def test_ci_matches_scipy_t_interval():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=13)
    s = aggregate.metric_stats(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert s["ci95_low"] == pytest.approx(low, rel=1e-12) and s["ci95_high"] == pytest.approx(high, rel=1e-12)
    assert s["mean"] == pytest.approx(x.mean()) and s["median"] == pytest.approx(np.median(x))
    assert s["std"] == pytest.approx(x.std(ddof=1))


def test_single_value_has_no_interval_and_failures_are_counted_not_averaged():
    s = aggregate.metric_stats([5.0])
    assert s["n"] == 1 and s["mean"] == 5.0 and math.isnan(s["ci95_low"]) and math.isnan(s["std"])
    s = aggregate.metric_stats([1.0, math.nan, 3.0, math.nan])
    assert s["n"] == 2 and s["n_failed"] == 2 and s["mean"] == 2.0
    s = aggregate.metric_stats([math.nan])
    assert s["n"] == 0 and s["n_failed"] == 1 and math.isnan(s["mean"])


def test_buckets_are_each_label_plus_all_in_numeric_order():
    labels = [-10.0, -3.0, -3.0, 0.0, 2.5, 2.5, 2.5]
    sisdri = [1.0, 2.0, 4.0, 5.0, 6.0, 7.0, math.nan]
    summary = aggregate.summarize(results_frame({"voice_sisdri": sisdri}, labels))
    assert list(summary["snr_bucket"]) == ["-10", "-3", "0", "2.5", "all"]
    by = summary.set_index("snr_bucket")
    assert by.loc["-3", "n"] == 2 and by.loc["-3", "mean"] == 3.0
    assert by.loc["2.5", "n"] == 2 and by.loc["2.5", "n_failed"] == 1
    assert by.loc["all", "n"] == 6 and by.loc["all", "mean"] == pytest.approx(np.mean(sisdri[:6]))
    assert list(summary.columns) == aggregate.SUMMARY_COLUMNS


def test_models_are_kept_apart_and_ordered_trained_oracle_reference():
    frames = [results_frame({"voice_sisdri": [0.0, 0.0]}, [0.0, 1.0], model="mixture", kind="reference"),
              results_frame({"voice_sisdri": [9.0, 9.5]}, [0.0, 1.0], model="oracle_irm", kind="oracle"),
              results_frame({"voice_sisdri": [3.0, 4.0]}, [0.0, 1.0], model="b_model"),
              results_frame({"voice_sisdri": [5.0, 6.0]}, [0.0, 1.0], model="a_model")]
    summary = aggregate.summarize(pd.concat(frames, ignore_index=True))
    assert list(dict.fromkeys(summary["model"])) == ["a_model", "b_model", "oracle_irm", "mixture"]
    all_rows = summary[summary["snr_bucket"] == "all"].set_index("model")
    assert all_rows.loc["a_model", "mean"] == 5.5 and all_rows.loc["mixture", "ci95_high"] == 0.0


def test_only_registered_metric_columns_are_summarised():
    df = results_frame({"voice_sisdri": [1.0, 2.0], "rtf": [0.1, 0.2], "duration_s": [4.0, 4.0]}, [0.0, 0.0])
    assert set(aggregate.summarize(df)["metric"]) == {"voice_sisdri", "rtf"}


def test_csv_round_trip_is_exact(tmp_path):
    x = np.random.default_rng(1).standard_normal(3)
    df = results_frame({"voice_sisdr": [x[0], math.nan, math.inf], "voice_sisdri": [x[1], x[2], 0.1 + 0.2]},
                       [-3.0, 0.0, 3.0])
    df.loc[1, "failure_reason"] = "voice_sisdr: silent estimate"
    aggregate.write_csv(df, tmp_path / "r.csv")
    text = (tmp_path / "r.csv").read_text()
    assert text.splitlines()[2].startswith("m,p,trained,0001,0.0,,")  # NaN is an empty cell
    back = aggregate.read_results(tmp_path / "r.csv")
    assert list(back["clip_id"]) == ["0000", "0001", "0002"]  # ids stay strings with their zeros
    assert list(back["failure_reason"]) == ["", "voice_sisdr: silent estimate", ""]
    assert back["voice_sisdr"][0] == x[0] and math.isnan(back["voice_sisdr"][1]) and back["voice_sisdr"][2] == math.inf
    assert list(back["voice_sisdri"]) == list(df["voice_sisdri"])  # bit-exact floats
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
