"""Paired differences between method groups, from the seed confirmation (`kdstudy confirm RUN --per-group`).

A confirmation retrains each chosen configuration on the same new seeds, and a seed draws the validation split and
the teacher: two configurations' accuracies on one seed share that luck, so their difference per seed cancels it
(a paired design). The rules, each in one place here:

- a group's *confirmed configuration* is, among its confirmed configurations (source trials), the one with the best
  mean **validation** accuracy over its finished seeds (ties to the source trial id) — test accuracy never selects;
- the *best group* is the group whose confirmed configuration has the best mean validation accuracy (ties to report
  group order); each configuration's mean is over its own finished seeds;
- the pairs: every group against `takd` (when confirmed), then every group against the best group, each unordered
  pair once (so `takd` against the best group reads `best − takd`, the seed paper's direction);
- a difference is `a − b` of **test** accuracy in points (×100), over the seeds both configurations finished, with a
  two-sided 95 % paired Student-t interval and p-value (none with fewer than 2 paired seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import is_missing, sort_by_group, successful
from analysis.ranking import confirmation_summary, t_quantile_975

DIFFERENCE_COLUMNS = ["group_a", "group_b", "config_a", "config_b", "n_seeds", "mean_diff", "ci_low", "ci_high",
                      "p_value"]
REFERENCE_GROUP = "takd"  # the seed paper's baseline: every other method is read against it
MINUS = "\u2212"  # the sentences' "a − b"


def confirmed_per_group(confirm: pd.DataFrame | None) -> pd.DataFrame:
    """One `confirmation_summary` row per method group, its confirmed configuration, in report group order."""
    summary = confirmation_summary(confirm)  # best mean validation accuracy first, ties to the source trial id
    return sort_by_group(summary.drop_duplicates("group", keep="first"))


def best_group(confirmed: pd.DataFrame) -> str | None:
    """The group whose confirmed configuration has the best mean validation accuracy (ties: report group order)."""
    scored = confirmed.dropna(subset=["val_acc_mean"])
    if scored.empty:
        return None
    # `confirmed` is in report group order, which a stable sort keeps among equal accuracies
    return str(scored.sort_values("val_acc_mean", ascending=False, kind="mergesort")["group"].iat[0])


def comparison_pairs(groups: list[str], best: str | None) -> list[tuple[str, str]]:
    """(a, b) pairs: each group against `takd`, then against the best group; no self pair, each pair once."""
    pairs: list[tuple[str, str]] = []
    for reference in dict.fromkeys([REFERENCE_GROUP, best]):  # one pass when takd is the best
        if reference not in groups:
            continue
        for group in groups:
            if group != reference and (reference, group) not in pairs:
                pairs.append((group, reference))
    return pairs


def paired_differences(confirm: pd.DataFrame | None) -> pd.DataFrame:
    """One DIFFERENCE_COLUMNS row per pair of `comparison_pairs` (see the module docstring for every rule)."""
    confirmed = confirmed_per_group(confirm)
    if confirmed.empty:
        return pd.DataFrame(columns=DIFFERENCE_COLUMNS)
    by_group = confirmed.set_index("group")
    per_seed = _test_acc_by_seed(confirm)
    rows = []
    for a, b in comparison_pairs(list(confirmed["group"]), best_group(confirmed)):
        source_a, source_b = by_group.at[a, "source_trial_id"], by_group.at[b, "source_trial_id"]
        both = pd.concat([per_seed[source_a], per_seed[source_b]], axis=1, join="inner").dropna()
        points = 100 * both.iloc[:, 0].to_numpy(float) - 100 * both.iloc[:, 1].to_numpy(float)
        rows.append({"group_a": a, "group_b": b, "config_a": by_group.at[a, "config_label"],
                     "config_b": by_group.at[b, "config_label"], **paired_t(points)})
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


def paired_t(differences: np.ndarray) -> dict[str, Any]:
    """n_seeds, mean_diff and the two-sided 95 % Student-t interval and p-value of paired `differences`."""
    n = len(differences)
    mean = float(np.mean(differences)) if n else math.nan
    if n < 2:
        return {"n_seeds": n, "mean_diff": mean, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    from scipy.stats import t  # here: importing scipy.stats takes a second, which every importer would pay

    sem = float(np.std(differences, ddof=1)) / math.sqrt(n)
    if sem == 0:
        # Every seed gave the same difference: the interval shrinks onto it, and the t statistic is that of the
        # limit of a vanishing spread: infinite (p = 0) for a non-zero mean, none at all (p = 1) for a zero one.
        p_value = 1.0 if mean == 0 else 0.0
        return {"n_seeds": n, "mean_diff": mean, "ci_low": mean, "ci_high": mean, "p_value": p_value}
    half = t_quantile_975(n - 1) * sem
    p_value = float(2 * t.sf(abs(mean) / sem, n - 1))
    return {"n_seeds": n, "mean_diff": mean, "ci_low": mean - half, "ci_high": mean + half, "p_value": p_value}


def difference_sentence(row: Mapping[str, Any]) -> str:
    """`ensemble-mean − takd: +1.2 points, 95 % CI [+0.3, +2.1], 5 paired seeds`, or what there is instead."""
    pair = f"{row['group_a']} {MINUS} {row['group_b']}"
    n = int(row["n_seeds"])
    if n == 0:
        return f"{pair}: no seed finished for both configurations, so no difference yet"
    if is_missing(row["ci_low"]):
        return (f"{pair}: {_points(row['mean_diff'])} points on {n} paired seed{'s' if n != 1 else ''}, "
                f"no interval (a 95 % CI needs at least 2 paired seeds)")
    interval = f"[{_points(row['ci_low'])}, {_points(row['ci_high'])}]"
    return f"{pair}: {_points(row['mean_diff'])} points, 95 % CI {interval}, {n} paired seeds"


def _points(value: float) -> str:
    """A signed difference in points at one decimal; one that rounds to zero reads +0.0, never -0.0."""
    return f"{round(value, 1) + 0.0:+.1f}"


def _test_acc_by_seed(confirm: pd.DataFrame | None) -> dict[str, pd.Series]:
    """Per source trial: its finished seeds' test accuracy, indexed by seed."""
    ok = successful(confirm).dropna(subset=["student_test_acc"]).drop_duplicates(["source_trial_id", "seed"])
    return {source: rows.set_index(rows["seed"].astype(int))["student_test_acc"].astype(float)
            for source, rows in ok.groupby("source_trial_id")}
