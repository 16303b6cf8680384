"""pareto_front: equal to an O(n²) brute force on tie- and NaN-heavy random data, and small hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import DEFAULT_FRONTS, pareto_front

DIRECTIONS = list(itertools.product(["min", "max"], repeat=2))


def brute_force_front(xs: np.ndarray, ys: np.ndarray, x_dir: str, y_dir: str) -> np.ndarray:
    """The definition, literally: no other NaN-free row at least as good on both and strictly better on one."""
    sx = xs if x_dir == "min" else -xs
    sy = ys if y_dir == "min" else -ys
    valid = ~(np.isnan(sx) | np.isnan(sy))
    front = np.zeros(len(xs), dtype=bool)
    for i in np.flatnonzero(valid):
        front[i] = not any(
            sx[j] <= sx[i] and sy[j] <= sy[i] and (sx[j] < sx[i] or sy[j] < sy[i])
            for j in np.flatnonzero(valid) if j != i
        )
    return front


def random_frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Values from a small integer set make ties on one or both axes common; ~15 % NaN on each axis.
    xs = rng.integers(0, 6, n).astype(float)
    ys = rng.integers(0, 6, n).astype(float)
    xs[rng.random(n) < 0.15] = np.nan
    ys[rng.random(n) < 0.15] = np.nan
    # A shuffled, non-default index checks that the mask is aligned by label, not by position.
    return pd.DataFrame({"cost": xs, "acc": ys}, index=rng.permutation(n) * 7 + 3)


@pytest.mark.parametrize("x_dir, y_dir", DIRECTIONS)
@pytest.mark.parametrize("seed", range(8))
def test_front_equals_brute_force(seed: int, x_dir: str, y_dir: str) -> None:
    frame = random_frame(seed, n=5 + 9 * seed)
    mask = pareto_front(frame, "cost", "acc", x_dir, y_dir)
    assert mask.dtype == bool and mask.index.equals(frame.index)
    expected = brute_force_front(frame["cost"].to_numpy(), frame["acc"].to_numpy(), x_dir, y_dir)
    np.testing.assert_array_equal(mask.to_numpy(), expected)


@pytest.mark.parametrize("x_dir, y_dir", DIRECTIONS)
def test_front_of_continuous_values_equals_brute_force(x_dir: str, y_dir: str) -> None:
    rng = np.random.default_rng(42)
    frame = pd.DataFrame({"cost": rng.lognormal(25, 1, 200), "acc": rng.uniform(0.7, 0.95, 200)})
    mask = pareto_front(frame, "cost", "acc", x_dir, y_dir)
    expected = brute_force_front(frame["cost"].to_numpy(), frame["acc"].to_numpy(), x_dir, y_dir)
    np.testing.assert_array_equal(mask.to_numpy(), expected)


def test_exact_duplicates_are_both_kept() -> None:
    frame = pd.DataFrame({"flops": [10, 10, 20, 5], "acc": [0.9, 0.9, 0.95, 0.8]})
    assert pareto_front(frame, "flops", "acc", "min", "max").tolist() == [True, True, True, True]


def test_tie_on_one_axis_is_dominated() -> None:
    frame = pd.DataFrame({"flops": [10, 10, 20], "acc": [0.9, 0.85, 0.9]})
    assert pareto_front(frame, "flops", "acc", "min", "max").tolist() == [True, False, False]


def test_nan_row_is_excluded_and_dominates_nothing() -> None:
    frame = pd.DataFrame({"flops": [1.0, 10.0, np.nan, 30.0], "acc": [np.nan, 0.8, 0.99, 0.7]})
    # Row 0 (cheapest, NaN acc) would dominate row 3 were NaN read as "good"; row 2 would dominate all.
    assert pareto_front(frame, "flops", "acc", "min", "max").tolist() == [False, True, False, False]


def test_large_integer_costs_keep_their_order() -> None:
    # Beyond 2**53 a float cast would merge these two FLOP counts into a tie and keep both on the front.
    big = 2**62
    frame = pd.DataFrame({"flops": pd.Series([big, big + 1], dtype="int64"), "acc": [0.9, 0.9]})
    assert pareto_front(frame, "flops", "acc", "min", "max").tolist() == [True, False]


def test_empty_frame_and_bad_direction() -> None:
    empty = pd.DataFrame({"flops": [], "acc": []})
    assert pareto_front(empty, "flops", "acc", "min", "max").empty
    with pytest.raises(ValueError, match="direction"):
        pareto_front(pd.DataFrame({"flops": [1], "acc": [1]}), "flops", "acc", "least", "max")


def test_default_fronts_trade_cost_against_validation_accuracy() -> None:
    assert [front[0] for front in DEFAULT_FRONTS] == ["train_flops", "reference_flops", "train_seconds",
                                                      "student_params"]
    assert all(front[1:] == ("min", "student_val_acc", "max") for front in DEFAULT_FRONTS)


def test_sweep_is_fast_on_many_rows() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"flops": rng.integers(0, 1000, 200_000), "acc": rng.random(200_000)})
    mask = pareto_front(frame, "flops", "acc", "min", "max")  # O(n²) would take minutes here
    assert 0 < mask.sum() < 100
