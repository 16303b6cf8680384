"""Rankings of a study's chains: overall, per method group, per number of TAs, and seed confirmation.

One ranking rule for the whole project (the report, the avalanche's best trials, `kdstudy run`'s best
configuration and `kdstudy confirm`'s choice all rank through `ranked`): the best student validation
accuracy first — never test accuracy, which would leak the test set — ties to the cheaper chain, then to the
trial id so equal runs rank the same way every time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import is_missing, sort_by_group, successful
from runstore.schema import config_columns

RANK_COLUMNS: list[str] = [
    "config_label", "method", "group", "ta_depths", "num_tas", "student_val_acc", "student_test_acc", "train_flops",
    "reference_flops", "train_seconds", "student_params", "trial_id",
]
RANK_ORDER = (["student_val_acc", "train_flops", "trial_id"], [False, True, True])


def ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """Successful trials, all columns, best first."""
    columns, ascending = RANK_ORDER
    ok = successful(trials)
    return ok.sort_values(columns, ascending=ascending, kind="mergesort", na_position="last").reset_index(drop=True)


def rank_configurations(trials: pd.DataFrame) -> pd.DataFrame:
    """Successful trials, best first, with the columns a ranking table shows."""
    return ranked(trials).reindex(columns=RANK_COLUMNS)  # an empty run has no config columns yet


def best_per_method(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial of each comparison group (nokd, kd, takd, dgkd, ensemble-<weighting>, …), in group order."""
    return sort_by_group(rank_configurations(trials).drop_duplicates("group", keep="first"))


def best_per_num_tas(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial for each number of teacher assistants, fewest TAs first."""
    best = rank_configurations(trials).drop_duplicates("num_tas", keep="first")
    return best.sort_values("num_tas", kind="mergesort").reset_index(drop=True)


def best_config(trials: pd.DataFrame) -> dict[str, Any]:
    """The flat chain config of the best successful trial, with plain Python values (JSON- and from_flat-ready;
    the settings of other methods than its own are null, which `ChainConfig.from_flat` accepts)."""
    best = ranked(trials)
    if best.empty:
        raise ValueError("trials: no successful trial")
    return chain_settings(best.iloc[0])


def chain_settings(row: pd.Series) -> dict[str, Any]:
    """A trials row's chain settings (its configuration columns) as plain Python values."""
    return {column: python_value(row[column]) for column in config_columns(list(row.index))}


def python_value(value: Any) -> Any:
    """Back from pandas' storage to plain Python: nulls to None, numpy scalars and arrays to ints, floats, lists."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [python_value(v) for v in value]
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def confirmation_summary(confirm: pd.DataFrame | None) -> pd.DataFrame:
    """Per confirmed configuration: seeds that finished, mean ± std of test accuracy, 95 % CI half-width; best
    mean validation accuracy first, ties to the source trial id."""
    columns = ["source_trial_id", "config_label", "group", "n_seeds", "test_acc_mean", "test_acc_std",
               "test_acc_ci95", "val_acc_mean"]
    if confirm is None or confirm.empty:
        return pd.DataFrame(columns=columns)
    ok = successful(confirm)
    rows = [_confirmation_row(source, seeds) for source, seeds in ok.groupby("source_trial_id", sort=False)]
    summary = pd.DataFrame(rows, columns=columns)
    return summary.sort_values(["val_acc_mean", "source_trial_id"], ascending=[False, True], kind="mergesort",
                               na_position="last").reset_index(drop=True)


def t_quantile_975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with `dof` degrees of freedom (two-sided 95 % interval)."""
    from scipy.stats import t  # here: importing scipy.stats takes a second, which every importer would pay

    return float(t.ppf(0.975, dof))


def _confirmation_row(source: str, seeds: pd.DataFrame) -> dict[str, Any]:
    test = seeds["student_test_acc"].astype(float)
    n = int(test.notna().sum())
    std = float(test.std(ddof=1)) if n > 1 else math.nan
    return {
        "source_trial_id": source,
        "config_label": seeds["config_label"].iloc[0],
        "group": seeds["group"].iloc[0],
        "n_seeds": n,
        "test_acc_mean": float(test.mean()),
        "test_acc_std": std,
        "test_acc_ci95": t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan,
        "val_acc_mean": float(seeds["student_val_acc"].astype(float).mean()),
    }
