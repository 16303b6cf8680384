"""The "error avalanche" of a KD chain, measured from each hop's test-split predictions.

In TAKD each model distils only from the model directly above it, so a wrong answer of an upper model is a
training signal for the model below and may be compounded down to the student; DGKD (distil from every model
above) and ensemble KD are meant to stop this. The measurement here is purely observational: for a pair of hops
(upper u, lower l) we ask how much more likely l is to be wrong on the samples u gets wrong than on those u gets
right (`lift`), and how often l repeats u's *exact* wrong class (a much stronger sign of inheritance than merely
failing on the same hard images, which independently trained models also do).

Layers: pure numpy metrics (`pair_metrics`, `chain_pair_table`, `avalanche_curve`), then the Parquet-shaped
DataFrames of a run as `analysis.load` reads them (`trial_avalanche`, `avalanche_summary`). The figure is
`analysis.plots.avalanche_plot`, the report's section `analysis.report.avalanche_section`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from analysis.load import Run, sort_by_group
from analysis.ranking import ranked


# ---------------------------------------------------------------------------------------------------------------
# Pure metrics
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairMetrics:
    """How the errors of a lower hop relate to those of an upper hop on the same test samples."""

    n: int
    upper_errors: int
    lower_errors: int
    p_lower_wrong_given_upper_wrong: float
    p_lower_wrong_given_upper_right: float  # the baseline the conditional above is compared with
    lift: float
    shared_error_share: float  # share of l's errors that u also makes
    same_class_share: float  # share of l's errors where u predicted the same wrong class
    inherited_error_rate: float  # P(l wrong with u's wrong class | u wrong)


PAIR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PairMetrics))


def _ratio(numerator: int | float, denominator: int | float) -> float:
    """numerator / denominator, NaN when the denominator is zero (an undefined conditional, not an error)."""
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return float(numerator) / float(denominator)


def _as_labels(values: np.ndarray | list[int]) -> np.ndarray:
    # int16 from Parquet would overflow nothing here, but comparisons across mixed dtypes are clearer in int64.
    return np.asarray(values, dtype=np.int64).ravel()


def pair_metrics(upper_pred: np.ndarray, lower_pred: np.ndarray, target: np.ndarray) -> PairMetrics:
    """Error-inheritance metrics of `lower_pred` with respect to `upper_pred`; undefined conditionals are NaN."""
    upper, lower, truth = _as_labels(upper_pred), _as_labels(lower_pred), _as_labels(target)
    if not upper.shape == lower.shape == truth.shape:
        raise ValueError(f"prediction lengths differ: upper {upper.shape}, lower {lower.shape}, target {truth.shape}")
    upper_wrong, lower_wrong = upper != truth, lower != truth
    both_wrong = upper_wrong & lower_wrong
    # lower == upper on a sample upper gets wrong implies lower is wrong too, with the very same class
    same_wrong = upper_wrong & (lower == upper)
    n_upper_wrong, n_lower_wrong = int(upper_wrong.sum()), int(lower_wrong.sum())
    n_upper_right = int(upper.size - n_upper_wrong)
    p_wrong_wrong = _ratio(int(both_wrong.sum()), n_upper_wrong)
    p_wrong_right = _ratio(int((lower_wrong & ~upper_wrong).sum()), n_upper_right)
    return PairMetrics(
        n=int(upper.size),
        upper_errors=n_upper_wrong,
        lower_errors=n_lower_wrong,
        p_lower_wrong_given_upper_wrong=p_wrong_wrong,
        p_lower_wrong_given_upper_right=p_wrong_right,
        lift=_ratio(p_wrong_wrong, p_wrong_right),
        shared_error_share=_ratio(int(both_wrong.sum()), n_lower_wrong),
        same_class_share=_ratio(int(same_wrong.sum()), n_lower_wrong),
        inherited_error_rate=_ratio(int(same_wrong.sum()), n_upper_wrong),
    )


def chain_pair_table(predictions_of_one_trial: list[np.ndarray], target: np.ndarray) -> pd.DataFrame:
    """One row per hop pair u < l (all pairs, not only adjacent ones): upper, lower, distance + PairMetrics."""
    rows = []
    for upper, upper_pred in enumerate(predictions_of_one_trial):
        for lower in range(upper + 1, len(predictions_of_one_trial)):
            metrics = pair_metrics(upper_pred, predictions_of_one_trial[lower], target)
            rows.append({"upper": upper, "lower": lower, "distance": lower - upper, **asdict(metrics)})
    return pd.DataFrame(rows, columns=["upper", "lower", "distance", *PAIR_FIELDS])


def _default_role(hop: int, num_hops: int) -> str:
    if hop == 0:
        return "teacher"
    return "student" if hop == num_hops - 1 else "ta"


CURVE_COLUMNS = ["hop", "role", "error_rate", "teacher_error_carried", "teacher_same_class", "baseline", "lift",
                 "same_class_share"]


def avalanche_curve(predictions_of_one_trial: list[np.ndarray], target: np.ndarray) -> pd.DataFrame:
    """Per hop h: how much of the teacher's (hop 0) error set h still gets wrong, against h's own baseline.

    Each row is the teacher→h pair, so the student's row doubles as the chain's teacher→student summary.
    Hop 0 compares the teacher with itself: carried = same class = 1 (NaN if the teacher is never wrong).
    """
    truth = _as_labels(target)
    teacher = predictions_of_one_trial[0]
    rows = []
    for hop, pred in enumerate(predictions_of_one_trial):
        metrics = pair_metrics(teacher, pred, truth)
        rows.append({
            "hop": hop,
            "role": _default_role(hop, len(predictions_of_one_trial)),
            "error_rate": _ratio(metrics.lower_errors, metrics.n),
            "teacher_error_carried": metrics.p_lower_wrong_given_upper_wrong,
            "teacher_same_class": metrics.inherited_error_rate,
            "baseline": metrics.p_lower_wrong_given_upper_right,
            "lift": metrics.lift,
            "same_class_share": metrics.same_class_share,
        })
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


# ---------------------------------------------------------------------------------------------------------------
# Parquet-shaped DataFrames of a run
# ---------------------------------------------------------------------------------------------------------------

def _trial_rows(predictions_df: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    rows = predictions_df[predictions_df["trial_id"] == trial_id].sort_values("hop")
    if rows.empty:
        raise KeyError(f"trial {trial_id!r} has no predictions")
    return rows


def trial_avalanche(predictions_df: pd.DataFrame, trial_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all-pairs table, teacher curve) of one trial from the PREDICTIONS-shaped DataFrame."""
    rows = _trial_rows(predictions_df, trial_id)
    predictions = [_as_labels(p) for p in rows["predicted"]]
    target = _as_labels(rows["target"].iloc[0])  # identical on every hop; each row carries it to stand alone
    pairs = chain_pair_table(predictions, target)
    curve = avalanche_curve(predictions, target)
    # the stored role/arch beat the positional guess (a one-hop nokd chain's only hop is its student)
    curve["role"] = rows["role"].to_numpy() if "role" in rows else curve["role"]
    curve.insert(2, "arch", rows["arch"].to_numpy() if "arch" in rows else None)
    return pairs, curve


def best_trials(trials_df: pd.DataFrame, predictions_df: pd.DataFrame) -> pd.DataFrame:
    """The best successful trial of each method group among trials with a teacher, ranked as everywhere else
    (`analysis.ranking`): the report's best trial of a group is the one whose avalanche it shows.

    Only trials with predictions for at least two hops count: a one-hop chain (nokd) has no teacher whose
    errors could be inherited, and a best trial without predictions would silently drop its group.
    """
    hop_counts = predictions_df.groupby("trial_id")["hop"].nunique()
    chained = hop_counts[hop_counts >= 2]
    ok = ranked(trials_df)
    best = ok[ok["trial_id"].isin(chained.index)].drop_duplicates("group", keep="first")
    return sort_by_group(best.assign(num_hops=best["trial_id"].map(chained).astype(int)))


SUMMARY_ID_COLUMNS = ["group", "trial_id", "student_val_acc", "num_hops"]
SUMMARY_COLUMNS = [*SUMMARY_ID_COLUMNS, "hop", "arch", *CURVE_COLUMNS[1:]]


def avalanche_summary(trials_df: pd.DataFrame, predictions_df: pd.DataFrame) -> pd.DataFrame:
    """The teacher curve of each method group's best trial, one row per group × hop.

    Every row is a teacher→hop pair, so `teacher_student_rows` of this frame is the teacher→student pair
    table per group (inheritance = teacher_error_carried, baseline, lift, same_class_share).
    """
    frames = []
    for best in best_trials(trials_df, predictions_df).itertuples(index=False):
        _, curve = trial_avalanche(predictions_df, best.trial_id)
        ids = {"group": best.group, "trial_id": best.trial_id, "student_val_acc": best.student_val_acc,
               "num_hops": best.num_hops}
        frames.append(curve.assign(**ids))
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SUMMARY_COLUMNS]


def teacher_student_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The last hop (the student) of each group in an `avalanche_summary` frame: the teacher→student pairs."""
    last = summary.groupby("group", sort=False)["hop"].transform("max")
    return summary[summary["hop"] == last].reset_index(drop=True)


def run_summary(run: Run) -> pd.DataFrame:
    """`avalanche_summary` of a loaded run; empty (with its columns) while the run has no predictions."""
    if run.predictions is None:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return avalanche_summary(run.trials, run.predictions)
