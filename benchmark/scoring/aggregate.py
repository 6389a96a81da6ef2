"""results.csv (one row per model x clip) -> summary.csv (one row per model x SNR bucket x metric).

Pure pandas: the only I/O is the read/write helpers, which pin the column types so that a
round trip through CSV changes nothing (clip ids stay strings, floats stay bit-exact).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from recipes.files import atomic_path

from .metrics import METRICS

MODEL_KEYS = ["model", "profile", "kind"]
KIND_ORDER = {"trained": 0, "oracle": 1, "reference": 2}
ALL = "all"
RANK_METRIC = "voice_sisdri"  # what the leaderboard ranks by: mean voice SI-SDRi over all clips
SUMMARY_COLUMNS = MODEL_KEYS + ["snr_bucket", "metric", "n", "n_failed", "mean", "median", "std",
                                "ci95_low", "ci95_high"]
_TEXT_COLUMNS = ("model", "profile", "kind", "clip_id", "failure_reason", "checkpoint", "checkpoint_hash",
                 "evaluated_at", "git_commit", "snr_bucket", "metric")


def bucket_label(snr: float) -> str:
    """-5.0 -> "-5", 2.5 -> "2.5": the label as written in the file names."""
    return f"{float(snr):g}"


def bucket_sort_key(bucket: str) -> tuple[int, float]:
    return (1, 0.0) if bucket == ALL else (0, float(bucket))


def metric_stats(values) -> dict:
    """n, mean, median, std and the two-sided 95% t-interval of the mean of the finite-or-inf
    values; NaN values are failures and only counted. n identical values -> zero-width
    interval exactly; n = 1 -> NaN interval (no spread to estimate)."""
    x = np.asarray(values, dtype=np.float64)
    failed = int(np.isnan(x).sum())
    x = x[~np.isnan(x)]
    n = int(x.size)
    out = {"n": n, "n_failed": failed, "mean": math.nan, "median": math.nan, "std": math.nan,
           "ci95_low": math.nan, "ci95_high": math.nan}
    if n == 0:
        return out
    if np.all(x == x[0]):
        # Summation rounding would give a spread of ~1e-17 around a value that has none.
        v = float(x[0])
        out.update(mean=v, median=v)
        if n > 1:
            out.update(std=0.0, ci95_low=v, ci95_high=v)
        return out
    mean, std = float(np.mean(x)), float(np.std(x, ddof=1)) if n > 1 else math.nan
    out.update(mean=mean, median=float(np.median(x)), std=std)
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        out.update(ci95_low=mean - half, ci95_high=mean + half)
    return out


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per model x SNR bucket (each distinct label, plus "all") x metric: statistics of every
    registered metric column present in `results`."""
    metrics = [m for m in METRICS if m in results.columns]
    rows = []
    for keys, group in results.groupby(MODEL_KEYS, sort=False, dropna=False):
        buckets = [(bucket_label(s), g) for s, g in group.groupby("snr_label", sort=True)] + [(ALL, group)]
        for bucket, part in buckets:
            for metric in metrics:
                rows.append({**dict(zip(MODEL_KEYS, keys)), "snr_bucket": bucket, "metric": metric,
                             **metric_stats(part[metric].to_numpy(dtype=np.float64))})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return sort_summary(summary)


def sort_summary(summary: pd.DataFrame) -> pd.DataFrame:
    order = list(METRICS)
    key = summary.apply(lambda r: (KIND_ORDER.get(r["kind"], 9), r["model"], r["profile"],
                                   bucket_sort_key(r["snr_bucket"]), order.index(r["metric"])), axis=1)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: key.iloc[i])].reset_index(drop=True)


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
    key = results.apply(lambda r: (KIND_ORDER.get(r["kind"], 9), r["model"], r["profile"], r["clip_id"]), axis=1)
    return results.iloc[sorted(range(len(results)), key=lambda i: key.iloc[i])].reset_index(drop=True)


def _read(path: str | Path) -> pd.DataFrame:
    # Text columns stay text ("0001" is not 1, "" is not NaN); only an empty numeric cell is NaN.
    # Floats must read back bit-exact (pandas >= 3's default parser does; test_aggregate checks),
    # or "mixture improvement is exactly 0" would not survive a cache round trip.
    head = pd.read_csv(path, nrows=0).columns
    dtypes = {c: str for c in head if c in _TEXT_COLUMNS}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={c: [""] for c in head if c not in dtypes})


def read_results(path: str | Path) -> pd.DataFrame:
    return _read(path)


def read_summary(path: str | Path) -> pd.DataFrame:
    return _read(path)


def best_trained(summary: pd.DataFrame) -> tuple[str, str] | None:
    """(model, profile) of the trained model with the highest overall mean RANK_METRIC; a NaN
    mean never wins; None when there is no such row."""
    rows = summary[(summary["metric"] == RANK_METRIC) & (summary["kind"] == "trained") & (summary["snr_bucket"] == ALL)]
    means = pd.to_numeric(rows["mean"], errors="coerce")
    if means.notna().sum() == 0:
        return None
    best = rows.loc[means.idxmax()]
    return str(best["model"]), str(best["profile"])


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Atomic: a reader never sees half a file, an interruption leaves the old one."""
    with atomic_path(path) as tmp:
        # NaN is written as an empty cell; floats in repr() form round-trip exactly.
        df.to_csv(tmp, index=False, na_rep="", lineterminator="\n")
