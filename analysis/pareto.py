"""Pareto fronts of cost against accuracy: which chains no other chain beats on both at once."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Direction = Literal["min", "max"]

# (x, x_dir, y, y_dir): the cost axes a study trades against the student's validation accuracy. Costs are a
# chain's from scratch (`runstore.schema` says what they count): FLOPs with the teachers' outputs cached, as kdstudy
# trains, and as the TAKD/DGKD reference code trains (every upper model forwarded on every batch); seconds; size.
DEFAULT_FRONTS: list[tuple[str, Direction, str, Direction]] = [
    ("train_flops", "min", "student_val_acc", "max"),
    ("reference_flops", "min", "student_val_acc", "max"),
    ("train_seconds", "min", "student_val_acc", "max"),
    ("student_params", "min", "student_val_acc", "max"),
]


def pareto_front(df: pd.DataFrame, x: str, y: str, x_dir: Direction = "min", y_dir: Direction = "max") -> pd.Series:
    """Index-aligned bool mask of the non-dominated rows of `df` on (x, y).

    A row is dominated when another is at least as good on both and strictly better on one, so exact
    duplicates stay on the front together; rows with NaN in x or y are never on it and dominate nothing.
    A sort-based sweep: O(n log n).
    """
    if len(df) == 0:
        return pd.Series(False, index=df.index, dtype=bool)
    xs = _minimisable_ranks(df[x], x_dir)
    ys = _minimisable_ranks(df[y], y_dir)
    valid = ~(np.isnan(xs) | np.isnan(ys))
    on_front = np.zeros(len(df), dtype=bool)
    positions = np.flatnonzero(valid)
    if len(positions):
        on_front[positions] = _front_of_minimised(xs[positions], ys[positions])
    return pd.Series(on_front, index=df.index, dtype=bool)


def _minimisable_ranks(column: pd.Series, direction: Direction) -> np.ndarray:
    """Dense ranks, negated for "max": both axes become "smaller is better".

    Ranks rather than the values themselves because FLOP counts can pass 2**53, where a cast to float
    would merge distinct values into false ties; ranks compare exactly and keep NaN as NaN.
    """
    if direction not in ("min", "max"):
        raise ValueError(f"direction: expected 'min' or 'max', got {direction!r}")
    ranks = pd.to_numeric(column, errors="coerce").rank(method="dense").to_numpy(dtype=float)
    return ranks if direction == "min" else -ranks


def _front_of_minimised(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Front mask for NaN-free points where smaller is better on both axes."""
    order = np.lexsort((ys, xs))  # by x, then y
    sx, sy = xs[order], ys[order]
    starts = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1]])
    group_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(sx)]))
    group_min_y = sy[starts]  # sorted by y inside an x group, so the first is the group's best
    # A group's best survives only if every strictly cheaper group is strictly worse on y.
    best_before = np.r_[np.inf, np.minimum.accumulate(group_min_y)[:-1]]
    group_survives = group_min_y < best_before
    # Inside a group, only the rows tied with its best are not beaten by a row of equal x and better y.
    sorted_mask = group_survives[group_of] & (sy == group_min_y[group_of])
    mask = np.empty_like(sorted_mask)
    mask[order] = sorted_mask
    return mask
