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

from recipes.errors import SepbenchError
from recipes.files import atomic_path

from .choices import BUCKET_MODES, RANK_METRIC
from .metrics import METRICS

MODEL_KEYS = ["model", "profile", "kind"]
KIND_ORDER = {"trained": 0, "pretrained": 1, "oracle": 2, "reference": 3}
ALL = "all"
SUMMARY_COLUMNS = MODEL_KEYS + ["snr_bucket", "metric", "n", "n_failed", "mean", "median", "std",
                                "ci95_low", "ci95_high", "n_seeds", "seed_std"]
_TEXT_COLUMNS = ("model", "profile", "kind", "clip_id", "failure_reason", "checkpoint", "checkpoint_hash",
                 "evaluated_at", "git_commit", "snr_bucket", "metric", "model_a", "profile_a", "model_b",
                 "profile_b", "seed")
N_SEED_BOOT = 2000  # two-level bootstrap resamples (seeds x clips) for models trained with several seeds


def bucket_label(snr: float) -> str:
    """-5.0 -> "-5", 2.5 -> "2.5": the label as written in the file names."""
    return f"{float(snr):g}"


def bucket_sort_key(bucket: str) -> tuple[int, float]:
    """Labels by value; measured-SNR bins ("<a", "a..b", ">=b") by their lower edge; "all" last."""
    if bucket == ALL:
        return (1, 0.0)
    text = str(bucket)
    if text.startswith("<"):
        return (0, -math.inf)
    lower = text[2:] if text.startswith(">=") else text
    if ".." in lower[1:]:  # "a..b" (a may be negative: "-5..0")
        lower = lower[:lower.index("..", 1)]
    try:
        return (0, float(lower))
    except ValueError:  # "unmeasured": after every bin
        return (0, math.inf)


def default_edges(labels) -> list[float]:
    """Bin edges halfway between neighbouring distinct labels: a clip lands in the bin of the
    label its measured SNR is closest to."""
    values = sorted({float(v) for v in labels if np.isfinite(v)})
    return [(a + b) / 2 for a, b in zip(values, values[1:])]


def bucket_names(edges) -> list[str]:
    e = [f"{float(x):g}" for x in edges]
    # No edge (a single label): one bin, not named ALL, which is the overall row of every model.
    return [f"<{e[0]}", *[f"{a}..{b}" for a, b in zip(e, e[1:])], f">={e[-1]}"] if e else ["any"]


def buckets(results: pd.DataFrame, by: str = "label", edges=None) -> pd.Series:
    """Each row's SNR bucket: its label as written, or (`measured`) the bin of the SNR measured on
    its stems between `edges` (default: halfway between the distinct labels)."""
    if by == "label":
        return results["snr_label"].map(bucket_label)
    if by != "measured":
        raise ValueError(f"bucket mode {by!r}: expected one of {BUCKET_MODES}")
    edges = default_edges(results["snr_label"]) if edges is None else sorted(float(x) for x in edges)
    names = bucket_names(edges)
    if not edges:
        return pd.Series([names[0]] * len(results), index=results.index, dtype=object)
    measured = results["snr_measured"].to_numpy(dtype=np.float64)
    index = np.searchsorted(np.asarray(edges), measured, side="right")
    return pd.Series([names[i] if not np.isnan(m) else "unmeasured" for i, m in zip(index, measured)],
                     index=results.index, dtype=object)


def metric_stats(values, seeds=None, clips=None) -> dict:
    """n, mean, median, std and the two-sided 95% t-interval of the mean of the finite-or-inf
    values; NaN values are failures and only counted. n identical values -> zero-width
    interval exactly; n = 1 -> NaN interval (no spread to estimate). With `seeds` and `clips`
    (one per value) holding more than one seed: see seeded_stats."""
    if seeds is not None and len(set(seeds)) > 1:
        return seeded_stats(values, seeds, clips)
    x = np.asarray(values, dtype=np.float64)
    failed = int(np.isnan(x).sum())
    x = x[~np.isnan(x)]
    n = int(x.size)
    out = {"n": n, "n_failed": failed, "mean": math.nan, "median": math.nan, "std": math.nan,
           "ci95_low": math.nan, "ci95_high": math.nan, "n_seeds": 1, "seed_std": math.nan}
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


def seeded_stats(values, seeds, clips) -> dict:
    """Statistics of a model trained with several seeds, each scored on the same clips. mean: the
    mean over seeds of each seed's mean; seed_std: the standard deviation of those seed means;
    the 95% interval: percentiles of a two-level bootstrap that resamples seeds and clips
    (crossed: every seed saw every clip), so it widens with the spread between seeds as well as
    with the clips. Seeded generator: the same inputs give the same interval."""
    frame = pd.DataFrame({"v": np.asarray(values, dtype=np.float64), "seed": list(seeds), "clip": list(clips)})
    table = frame.pivot_table(index="seed", columns="clip", values="v", aggfunc="mean", dropna=False, sort=True)
    m = table.to_numpy(dtype=np.float64)
    ok = ~np.isnan(m)
    x = frame["v"].to_numpy()
    x = x[~np.isnan(x)]
    seed_means = np.array([row[k].mean() for row, k in zip(m, ok) if k.any()])
    out = {"n": int(x.size), "n_failed": int(np.isnan(frame["v"]).sum()), "mean": math.nan, "median": math.nan,
           "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n_seeds": int(len(seed_means)),
           "seed_std": math.nan}
    if x.size == 0:
        return out
    out.update(mean=float(seed_means.mean()), median=float(np.median(x)),
               std=float(np.std(x, ddof=1)) if x.size > 1 else math.nan)
    if len(seed_means) > 1:
        out["seed_std"] = float(np.std(seed_means, ddof=1))
    rng = np.random.default_rng(0)
    n_seeds, n_clips = m.shape
    # Multinomial counts stand in for index resamples: one weighted sum per resample.
    ws = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=N_SEED_BOOT).astype(np.float64)
    wc = rng.multinomial(n_clips, np.full(n_clips, 1 / n_clips), size=N_SEED_BOOT).astype(np.float64)
    filled = np.where(ok, m, 0.0)
    num = np.einsum("bs,sc,bc->b", ws, filled, wc)
    den = np.einsum("bs,sc,bc->b", ws, ok.astype(np.float64), wc)
    boot = num[den > 0] / den[den > 0]
    if boot.size:
        low, high = np.quantile(boot, [0.025, 0.975])
        out.update(ci95_low=float(low), ci95_high=float(high))
    return out


def summarize(results: pd.DataFrame, by: str = "label", edges=None) -> pd.DataFrame:
    """Per model x SNR bucket (see `buckets`, plus "all") x metric: statistics of every
    registered metric column present in `results`; a model's seeds (column `seed`) are pooled
    as seeded_stats describes."""
    metrics = [m for m in METRICS if m in results.columns]
    results = results.assign(snr_bucket=buckets(results, by, edges))
    has_seeds = "seed" in results.columns
    rows = []
    for keys, group in results.groupby(MODEL_KEYS, sort=False, dropna=False):
        parts = sorted(group.groupby("snr_bucket", sort=False), key=lambda kv: bucket_sort_key(kv[0]))
        for bucket, part in [*parts, (ALL, group)]:
            seeds = part["seed"].tolist() if has_seeds else None
            for metric in metrics:
                rows.append({**dict(zip(MODEL_KEYS, keys)), "snr_bucket": bucket, "metric": metric,
                             **metric_stats(part[metric].to_numpy(dtype=np.float64), seeds,
                                            part["clip_id"].tolist())})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return sort_summary(summary)


def sort_summary(summary: pd.DataFrame) -> pd.DataFrame:
    order = list(METRICS)
    key = summary.apply(lambda r: (KIND_ORDER.get(r["kind"], 9), r["model"], r["profile"],
                                   bucket_sort_key(r["snr_bucket"]), order.index(r["metric"])), axis=1)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: key.iloc[i])].reset_index(drop=True)


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
    def seed(r):  # "" (references, older files) first, then seeds by value
        text = str(r.get("seed", "") or "")
        return (1, int(text)) if text.isdigit() else (0, 0)

    key = results.apply(lambda r: (KIND_ORDER.get(r["kind"], 9), r["model"], r["profile"], seed(r), r["clip_id"]),
                        axis=1)
    return results.iloc[sorted(range(len(results)), key=lambda i: key.iloc[i])].reset_index(drop=True)


def _read(path: str | Path, required) -> pd.DataFrame:
    """A CSV this project wrote; one that is empty, not CSV or lacks `required` columns (edited
    or replaced by hand, cut short by a full disk) is a one-line error naming it."""
    # Text columns stay text ("0001" is not 1, "" is not NaN); only an empty numeric cell is NaN.
    # Floats must read back bit-exact (pandas >= 3's default parser does; test_aggregate checks),
    # or "mixture improvement is exactly 0" would not survive a cache round trip.
    try:
        head = pd.read_csv(path, nrows=0).columns
        dtypes = {c: str for c in head if c in _TEXT_COLUMNS}
        df = pd.read_csv(path, dtype=dtypes, keep_default_na=False,
                         na_values={c: [""] for c in head if c not in dtypes})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, str(exc).splitlines()[0]) from None
    if not _ends_a_line(path):
        raise _damaged(path, "cut short in a row")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise _damaged(path, f"no column {', '.join(missing)}")
    return df


def _damaged(path, why: str) -> SepbenchError:
    return SepbenchError(f"{path} is damaged ({why}); re-run `sepbench evaluate --force` to rebuild it")


def _ends_a_line(path) -> bool:
    """write_csv ends every file with a newline: a file that does not was cut short mid-row."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def read_results(path: str | Path, required=(*MODEL_KEYS, "clip_id")) -> pd.DataFrame:
    return _read(path, required)


def read_summary(path: str | Path) -> pd.DataFrame:
    return _read(path, (*MODEL_KEYS, "snr_bucket", "metric", "mean"))


def read_pairs(path: str | Path) -> pd.DataFrame:
    return _read(path, ("model_a", "profile_a", "model_b", "profile_b", "metric"))


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
