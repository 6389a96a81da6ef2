"""Paired comparisons of trained models (and pretrained enhancers) on the clips both scored:
pairs.csv, tiers, per-bucket ties.

Every model is scored on the same clips, so the per-clip difference between two models varies far
less than either model's scores: a paired test separates models whose own confidence intervals
overlap. For each pair (better-ranked model first): the mean per-clip difference of RANK_METRIC
with a paired bootstrap 95% interval, and a Wilcoxon signed-rank p-value, Holm-corrected over the
pairs of the same SNR bucket. A model trained with several seeds enters with its per-clip mean
over seeds. Deterministic: the bootstrap draws from a generator seeded here, never the global one.

Pretrained enhancers (kind "pretrained") are paired with the trained models and with each other,
but Holm-corrected as a family of their own per bucket: the trained models' pairs, p-values and
tiers are exactly those of a run without them.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from .aggregate import ALL, RANK_METRIC, bucket_sort_key, buckets

COMPARED = ("trained", "pretrained")  # the kinds paired; references and oracles are not competitors
ALPHA = 0.05
N_BOOT = 10_000
BOOT_SEED = 0
PAIR_COLUMNS = ["snr_bucket", "model_a", "profile_a", "model_b", "profile_b", "metric", "n", "mean_diff",
                "ci95_low", "ci95_high", "p_wilcoxon", "p_holm", "significant"]


def clip_table(results: pd.DataFrame, metric: str = RANK_METRIC, kinds=("trained",)) -> pd.DataFrame:
    """Per-clip scores of the rows of `kinds` (trained models by default): index (bucket,
    clip_id), one column per (model, profile), averaged over seeds; a clip that failed for a model
    is NaN there."""
    rows = results[results["kind"].isin(kinds)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index=["snr_bucket", "clip_id"], columns=["model", "profile"], values=metric,
                             aggfunc="mean", dropna=False, sort=True)
    # dropna=False keeps a model whose every clip failed, but also makes every model x profile
    # combination a column: only the pairs that exist are models.
    present = set(zip(rows["model"], rows["profile"]))
    return table[[c for c in table.columns if c in present]]


def paired_bootstrap_ci(diff: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile 95% interval of the mean of `diff` over clip resamples (the pairing kept)."""
    if diff.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when no clip differs (no evidence at all)."""
    if diff.size == 0 or not np.any(diff != 0):
        return 1.0
    return float(stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted, running = np.empty_like(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (p.size - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def pairs(results: pd.DataFrame, metric: str = RANK_METRIC, by: str = "label", edges=None) -> pd.DataFrame:
    """One row per SNR bucket (aggregate.buckets' bins, then "all") x pair of trained models or
    pretrained enhancers, the pair ordered by mean within the bucket (model_a the higher one;
    mean_diff is over the clips both scored, so it can only be negative when failures leave
    different clips). Holm families: the pairs of two trained models, and the pairs with a
    pretrained row."""
    table = clip_table(results.assign(snr_bucket=buckets(results, by, edges)), metric, COMPARED)
    trained = set(zip(*(results.loc[results["kind"] == "trained", c] for c in ("model", "profile"))))
    out = []
    if table.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    names = sorted(set(table.index.get_level_values(0)), key=bucket_sort_key) + [ALL]
    for bucket in names:
        part = table if bucket == ALL else table.xs(bucket, level=0, drop_level=False)
        models = sorted(part.columns, key=lambda m: (-_mean(part[m]), m))
        rows = []
        for a, b in itertools.combinations(models, 2):
            both = part[[a, b]].dropna()
            diff = (both[a] - both[b]).to_numpy(dtype=np.float64)
            low, high = paired_bootstrap_ci(diff)
            rows.append({"snr_bucket": bucket, "model_a": a[0], "profile_a": a[1], "model_b": b[0],
                         "profile_b": b[1], "metric": metric, "n": int(diff.size),
                         "mean_diff": float(diff.mean()) if diff.size else math.nan,
                         "ci95_low": low, "ci95_high": high, "p_wilcoxon": wilcoxon_p(diff)})
        for family in (True, False):
            members = [r for r in rows if ((r["model_a"], r["profile_a"]) in trained
                                           and (r["model_b"], r["profile_b"]) in trained) == family]
            for row, adjusted in zip(members, holm([r["p_wilcoxon"] for r in members])):
                row.update(p_holm=adjusted, significant=bool(adjusted < ALPHA))
        out += rows
    return pd.DataFrame(out, columns=PAIR_COLUMNS)


def versus(pair_table: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], bucket: str = ALL) -> dict | None:
    """a minus b from their pair in `bucket`, whichever order pairs.csv holds them in: mean_diff,
    ci95_low, ci95_high, significant; None when the pair is not there."""
    rows = pair_table[pair_table["snr_bucket"] == bucket]
    for r in rows.itertuples(index=False):
        first, second = (r.model_a, r.profile_a), (r.model_b, r.profile_b)
        if (first, second) == (a, b):
            return {"mean_diff": r.mean_diff, "ci95_low": r.ci95_low, "ci95_high": r.ci95_high,
                    "significant": bool(r.significant)}
        if (first, second) == (b, a):
            return {"mean_diff": -r.mean_diff, "ci95_low": -r.ci95_high, "ci95_high": -r.ci95_low,
                    "significant": bool(r.significant)}
    return None


def _mean(values: pd.Series) -> float:
    m = values.mean()
    return -math.inf if math.isnan(m) else float(m)


def _significant(table: pd.DataFrame, bucket: str) -> dict[tuple, bool]:
    rows = table[table["snr_bucket"] == bucket]
    out = {}
    for r in rows.itertuples(index=False):
        a, b = (r.model_a, r.profile_a), (r.model_b, r.profile_b)
        out[(a, b)] = out[(b, a)] = bool(r.significant)
    return out


def tiers(pair_table: pd.DataFrame, ranked: list[tuple[str, str]], bucket: str = ALL) -> dict[tuple, int]:
    """{(model, profile): tier}, tiers numbered from 1 down the ranking `ranked` (best first):
    a model stays in the current tier while it is not significantly worse than that tier's best
    (its first model); the first one that is opens the next tier."""
    significant = _significant(pair_table, bucket)
    out, head, tier = {}, None, 0
    for model in ranked:
        if head is None or significant.get((head, model), False):
            head, tier = model, tier + 1
        out[model] = tier
    return out


def ties_with_best(pair_table: pd.DataFrame, ranked: list[tuple[str, str]], bucket: str) -> set[tuple]:
    """The models of `ranked` (best first, in this bucket) not significantly worse than its best."""
    if not ranked:
        return set()
    significant = _significant(pair_table, bucket)
    return {m for m in ranked if m == ranked[0] or not significant.get((ranked[0], m), False)}
