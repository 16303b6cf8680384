"""The seed paper's published accuracies beside a study's confirmed ones, for the study that repeats its setup.

The seed paper (a student paper of the Ajou University CVPR lab) compares TAKD (Mirzadeh et al., AAAI 2020), DGKD
(Son et al., ICCV 2021) and teacher ensembles on CIFAR-100, plain CNN 10 layers → 2 layers (our preset
`seed-cifar100`). Its numbers are declared here once; the report reads them from nowhere else.
"""

from __future__ import annotations

import pandas as pd

from analysis.load import sort_by_group
from analysis.paired import confirmed_per_group

SOURCE = ("seed paper: Ajou University CVPR lab student paper; TAKD: Mirzadeh et al. 2020; "
          "DGKD: Son et al., ICCV 2021")
# The chain of the seed paper's table: the study must have run exactly this one to stand beside it.
SETUP = {"dataset": "cifar100", "teacher": "plain10", "student": "plain2"}
# Published student test accuracy (fraction) per KD method, approximate ("≈") as the paper reports them.
PUBLISHED_TEST_ACC = {"takd": 0.42, "dgkd": 0.45, "ensemble": 0.45}

COLUMNS = ["method", "published", "group", "config_label", "n_seeds", "test_acc_mean", "ci_low", "ci_high"]


def matches_seed_setup(trials: pd.DataFrame) -> bool:
    """The study has TAKD, DGKD and ensemble trials, and every trial runs the seed paper's dataset and chain ends."""
    if trials.empty or not set(PUBLISHED_TEST_ACC) <= set(trials["method"].dropna()):
        return False
    return all(set(trials[column].dropna()) == {value} for column, value in SETUP.items())


def seed_comparison(trials: pd.DataFrame, confirm: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per method group of the seed paper's methods (each ensemble weighting its own row): the published
    accuracy and the group's confirmed configuration (`analysis.paired`'s rule) with its mean test accuracy and
    95 % interval (null where not confirmed, or the interval where fewer than 2 seeds finished); None when the
    study does not repeat the seed paper's setup."""
    if not matches_seed_setup(trials):
        return None
    studied = trials[trials["method"].isin(list(PUBLISHED_TEST_ACC))].drop_duplicates("group")
    confirmed = confirmed_per_group(confirm).set_index("group")
    rows = []
    for method, group in zip(studied["method"], studied["group"]):
        row = {"method": method, "published": PUBLISHED_TEST_ACC[method], "group": group}
        if group in confirmed.index:
            mine = confirmed.loc[group]
            half = mine["test_acc_ci95"]  # NaN below 2 seeds: no interval, not a ±0 one
            row.update(config_label=mine["config_label"], n_seeds=int(mine["n_seeds"]),
                       test_acc_mean=mine["test_acc_mean"], ci_low=mine["test_acc_mean"] - half,
                       ci_high=mine["test_acc_mean"] + half)
        rows.append(row)
    return sort_by_group(pd.DataFrame(rows, columns=COLUMNS))
