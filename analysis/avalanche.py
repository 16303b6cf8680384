"""The "error avalanche" of a KD chain, measured from each hop's test-split predictions.

In TAKD each model distils only from the model directly above it, so a wrong answer of an upper model is a
training signal for the model below and may be compounded down to the student; DGKD (distil from every model
above) and ensemble KD are meant to stop this. The measurement here is purely observational: for a pair of hops
(upper u, lower l) we ask how much more likely l is to be wrong on the samples u gets wrong than on those u gets
right (`lift`), and how often l repeats u's *exact* wrong class (a much stronger sign of inheritance than merely
failing on the same hard images, which independently trained models also do).

Independently trained models agree on some errors anyway, so the teacher→student pairs are read against a
control — the `nokd` student of the same teacher, seed and training settings, compared with that same teacher —
with bootstrap intervals over the test images, the differences from the control on the same resamples.

Layers: pure numpy metrics (`pair_metrics`, `chain_pair_table`, `avalanche_curve`) and their bootstrap
(`outcome_codes`, `bootstrap_metrics`, `percentile_interval`, `claim`), then the Parquet-shaped DataFrames of a
run as `analysis.load` reads them (`trial_avalanche`, `avalanche_summary`, `student_pairs`). The figure is
`analysis.plots.avalanche_plot`, the report's section `analysis.avalanche_report.avalanche_section`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import Run, is_missing, sort_by_group
from analysis.ranking import chain_settings, ranked


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
    """Error-inheritance metrics of `lower_pred` with respect to `upper_pred`; undefined conditionals are NaN. The
    same outcome counts and ratios (`metrics_from_counts`) as the bootstrap's, on all the test samples."""
    counts = np.bincount(outcome_codes(upper_pred, lower_pred, target), minlength=N_OUTCOMES)
    _, only_lower, only_upper, other_class, same_class = (int(c) for c in counts)
    upper_errors = only_upper + other_class + same_class
    lower_errors = only_lower + other_class + same_class
    inheritance, baseline, lift, same_class_share = (float(v) for v in metrics_from_counts(counts))
    return PairMetrics(
        n=int(counts.sum()),
        upper_errors=upper_errors,
        lower_errors=lower_errors,
        p_lower_wrong_given_upper_wrong=inheritance,
        p_lower_wrong_given_upper_right=baseline,
        lift=lift,
        shared_error_share=_ratio(other_class + same_class, lower_errors),
        same_class_share=same_class_share,
        inherited_error_rate=_ratio(same_class, upper_errors),
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
# Bootstrap intervals over test images
# ---------------------------------------------------------------------------------------------------------------

# What one test image says about a student against a teacher. The four teacher→student metrics are ratios of the
# counts of these outcomes, so a resample of the images needs only how often each outcome was drawn.
OUTCOMES = ("both_right", "only_student_wrong", "only_teacher_wrong", "both_wrong_other_class",
            "both_wrong_same_class")
N_OUTCOMES = len(OUTCOMES)
# The metrics that get intervals, as `avalanche_curve` names them (teacher_error_carried = the inheritance).
INTERVAL_METRICS = ("teacher_error_carried", "baseline", "lift", "same_class_share")
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
# A resample can leave a metric undefined (no teacher error drawn); below this share of defined resamples the
# percentiles would describe a few lucky draws, so the interval is NaN instead.
MIN_DEFINED_SHARE = 0.5
_CHUNK = 200  # resamples drawn at a time: bounds the memory of the draw at _CHUNK × images indices


def outcome_codes(teacher_pred: np.ndarray, student_pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per test image, the index in OUTCOMES of the student's answer against the teacher's."""
    teacher, student, truth = _as_labels(teacher_pred), _as_labels(student_pred), _as_labels(target)
    if not teacher.shape == student.shape == truth.shape:
        raise ValueError(f"prediction lengths differ: teacher {teacher.shape}, student {student.shape}, "
                         f"target {truth.shape}")
    teacher_wrong, student_wrong = teacher != truth, student != truth
    codes = np.where(student_wrong, 1, 0)
    both_wrong_code = np.where(student == teacher, 4, 3)
    return np.where(teacher_wrong, np.where(student_wrong, both_wrong_code, 2), codes).astype(np.int8)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio, NaN where the denominator is zero or either side is NaN (as `_ratio`)."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=(denominator != 0) & np.isfinite(denominator))
    return out


def metrics_from_counts(counts: np.ndarray) -> np.ndarray:
    """INTERVAL_METRICS (last axis) from outcome counts (last axis in OUTCOMES order); undefined ratios are NaN."""
    c = np.asarray(counts, dtype=np.float64)
    right, only_student, only_teacher, other_class, same_class = (c[..., i] for i in range(N_OUTCOMES))
    inheritance = _divide(other_class + same_class, only_teacher + other_class + same_class)
    baseline = _divide(only_student, right + only_student)
    lift = _divide(inheritance, baseline)
    same_class_share = _divide(same_class, only_student + other_class + same_class)
    return np.stack([inheritance, baseline, lift, same_class_share], axis=-1)


def point_metrics(codes: np.ndarray) -> np.ndarray:
    """INTERVAL_METRICS of each student (rows of `codes`) on all the test images: (students, metrics)."""
    codes = np.atleast_2d(codes)
    counts = np.stack([np.bincount(row, minlength=N_OUTCOMES) for row in codes])
    return metrics_from_counts(counts)


def bootstrap_metrics(codes: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """INTERVAL_METRICS of each student on `resamples` resamples of the test images: (students, resamples, metrics).

    `codes` holds one row of `outcome_codes` per student, all on the same images: every student is measured on
    the very same resamples, so differences between rows are paired. A resample draws the images with
    replacement; how often each image was drawn times its outcome gives the counts the metrics are ratios of.
    """
    codes = np.atleast_2d(codes)
    students, n = codes.shape
    # one column per (student, outcome): the drawn-times vector of a resample times this gives all counts at once
    onehot = np.zeros((n, students * N_OUTCOMES), dtype=np.float32)
    onehot[np.arange(n)[:, None], np.arange(students) * N_OUTCOMES + codes.T] = 1.0
    rng = np.random.default_rng(seed)
    counts = np.empty((resamples, students * N_OUTCOMES), dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        drawn = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        times = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float32)
        counts[start:start + size] = times @ onehot  # whole numbers ≤ n: exact in float32
    return metrics_from_counts(counts.reshape(resamples, students, N_OUTCOMES)).transpose(1, 0, 2)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval over axis -2 (the resamples) of `samples`, ignoring undefined resamples;
    NaN where fewer than MIN_DEFINED_SHARE of them are defined."""
    tail = 100 * (1 - level) / 2
    defined = np.isfinite(samples).mean(axis=-2) >= MIN_DEFINED_SHARE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column; masked out just below
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=-2)
    return np.where(defined, low, np.nan), np.where(defined, high, np.nan)


def claim(low: float, high: float) -> int:
    """+1 when an interval of a difference lies above 0, -1 below, 0 when it holds 0 or is undefined."""
    if low > 0:
        return 1
    return -1 if high < 0 else 0


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
    """The teacher curve of each method group's best trial, one row per group × hop (every row a teacher→hop
    pair); `student_pairs` gives the teacher→student pairs with intervals and the control."""
    frames = []
    for best in best_trials(trials_df, predictions_df).itertuples(index=False):
        _, curve = trial_avalanche(predictions_df, best.trial_id)
        ids = {"group": best.group, "trial_id": best.trial_id, "student_val_acc": best.student_val_acc,
               "num_hops": best.num_hops}
        frames.append(curve.assign(**ids))
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SUMMARY_COLUMNS]


def run_summary(run: Run) -> pd.DataFrame:
    """`avalanche_summary` of a loaded run; empty (with its columns) while the run has no predictions."""
    if run.predictions is None:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return avalanche_summary(run.trials, run.predictions)


# ---------------------------------------------------------------------------------------------------------------
# Teacher → student pairs with intervals, against a nokd control
# ---------------------------------------------------------------------------------------------------------------

# The control: a student trained on the labels only, by the method whose chains train no teacher.
CONTROL_METHOD = "nokd"
# The settings that make a nokd student the control of a KD student: everything in a student hop's identity
# (`trainables.hops`) but what teaches it — data, recipe, seed, architecture. The two students then differ only
# in the teacher's signal, so the agreement the control reaches with the teacher is what training alone gives.
# A setting a run's files do not have (an older run) reads as None on both sides.
CONTROL_MATCH = ("seed", "student", "width", "init", "dataset", "val_size", "fit_size", "train_size", "augment",
                 "epochs", "lower_epochs", "patience", "batch_size", "lr", "lr_schedule", "momentum", "weight_decay",
                 "precision")

TEACHER_KEY_CHARS = 8  # of a 24-character hop key: enough to tell a run's teachers apart in a table or figure

_METRIC_COLUMNS = [f"{m}{suffix}" for m in INTERVAL_METRICS for suffix in ("", "_low", "_high")]
_DIFF_COLUMNS = [f"{m}_diff{suffix}" for m in INTERVAL_METRICS for suffix in ("", "_low", "_high")]
PAIR_COLUMNS = ["group", "trial_id", "is_control", "teacher_key", "control_trial_id", "num_hops", "student_val_acc",
                "n", "teacher_errors", "student_errors", "error_rate", *_METRIC_COLUMNS, *_DIFF_COLUMNS]


def teacher_keys(hops: pd.DataFrame, trial_ids: pd.Series) -> list[str | None]:
    """The hop key of each trial's teacher (hop 0) from the hops table; None where the table has no such row."""
    teachers = hops[hops["index"] == 0].drop_duplicates("trial_id").set_index("trial_id")["key"]
    return [None if is_missing(key) else str(key) for key in trial_ids.map(teachers)]


def control_candidates(trials: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Successful nokd trials with predictions, best first (a tie between equal controls breaks as everywhere)."""
    ok = ranked(trials)
    return ok[(ok["method"] == CONTROL_METHOD) & ok["trial_id"].isin(predictions["trial_id"])]


def find_control(trial: pd.Series, candidates: pd.DataFrame) -> str | None:
    """The trial id of the first candidate trained like `trial`'s student on CONTROL_MATCH; None if none is."""
    wanted = chain_settings(trial)
    for _, candidate in candidates.iterrows():
        settings = chain_settings(candidate)
        if all(settings.get(name) == wanted.get(name) for name in CONTROL_MATCH):
            return str(candidate["trial_id"])
    return None


def _hop_predictions(predictions: pd.DataFrame, trial_id: str, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, target) of one hop of one trial; hop -1 is the trial's last hop (its student)."""
    rows = _trial_rows(predictions, trial_id)
    row = rows.iloc[hop]
    return _as_labels(row["predicted"]), _as_labels(row["target"])


def student_pairs(trials: pd.DataFrame, hops: pd.DataFrame, predictions: pd.DataFrame,
                  resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Teacher→student metrics of each method group's best trial with bootstrap intervals, plus control rows.

    Rows are grouped by teacher (its hop key): the nokd control of a teacher's rows is compared with that very
    teacher's test predictions and comes first; each KD row carries its difference from its control, computed
    on the same resamples of the test images (a paired bootstrap). A KD row without a control has no differences.
    """
    best = best_trials(trials, predictions)
    if best.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    best = best.assign(teacher_key=teacher_keys(hops, best["trial_id"]))
    candidates = control_candidates(trials, predictions)
    best["control_trial_id"] = [find_control(row, candidates) for _, row in best.iterrows()]
    # a trial whose teacher key is unknown is its own block: its teacher cannot be shown to be anyone else's
    blocks = best["teacher_key"].where(best["teacher_key"].notna(), "trial " + best["trial_id"])
    frames = [_teacher_block(rows, trials, predictions, resamples, seed)
              for _, rows in best.groupby(blocks, sort=False)]
    pairs = pd.concat(frames, ignore_index=True)[PAIR_COLUMNS]
    controls = pairs["control_trial_id"].astype(object)
    return pairs.assign(control_trial_id=controls.where(controls.notna(), None))  # None, not NaN, for "no control"


def _teacher_block(rows: pd.DataFrame, trials: pd.DataFrame, predictions: pd.DataFrame, resamples: int,
                   seed: int) -> pd.DataFrame:
    """The rows of one teacher: its controls first, then the KD rows, all measured on the same resamples."""
    teacher, target = _hop_predictions(predictions, rows["trial_id"].iloc[0], 0)
    # a control predicted on other test images (another dataset or split) is no control
    controls = [c for c in dict.fromkeys(rows["control_trial_id"].dropna())
                if np.array_equal(_hop_predictions(predictions, c, -1)[1], target)]
    val_acc = trials.drop_duplicates("trial_id").set_index("trial_id")["student_val_acc"]
    records = [{"group": CONTROL_METHOD, "trial_id": c, "is_control": True, "control_trial_id": None, "num_hops": 1,
                "student_val_acc": val_acc[c]} for c in controls]
    records += [{"group": r.group, "trial_id": r.trial_id, "is_control": False,
                 "control_trial_id": r.control_trial_id if r.control_trial_id in controls else None,
                 "num_hops": r.num_hops, "student_val_acc": r.student_val_acc} for r in rows.itertuples()]
    codes = np.stack([*(outcome_codes(teacher, _hop_predictions(predictions, c, -1)[0], target) for c in controls),
                      *(_own_codes(predictions, trial_id) for trial_id in rows["trial_id"])])
    points, samples = point_metrics(codes), bootstrap_metrics(codes, resamples, seed)
    low, high = percentile_interval(samples)
    for i, record in enumerate(records):
        record.update(teacher_key=rows["teacher_key"].iloc[0], **_counts(codes[i]))
        record.update(_metric_columns(points[i], low[i], high[i], ""))
        control = record["control_trial_id"]
        if control is None:
            record.update(_metric_columns(*np.full((3, len(INTERVAL_METRICS)), np.nan), "_diff"))
        else:
            k = controls.index(control)
            record.update(_metric_columns(points[i] - points[k], *percentile_interval(samples[i] - samples[k]),
                                          "_diff"))
    return pd.DataFrame(records)


def _own_codes(predictions: pd.DataFrame, trial_id: str) -> np.ndarray:
    """Outcome codes of a trial's student against its own teacher."""
    teacher, target = _hop_predictions(predictions, trial_id, 0)
    return outcome_codes(teacher, _hop_predictions(predictions, trial_id, -1)[0], target)


def _counts(codes: np.ndarray) -> dict[str, Any]:
    """n: test images, and the errors of the teacher and of the student among them."""
    counts = np.bincount(codes, minlength=N_OUTCOMES)
    n, student_errors = int(counts.sum()), int(counts[[1, 3, 4]].sum())
    return {"n": n, "teacher_errors": int(counts[2:].sum()), "student_errors": student_errors,
            "error_rate": _ratio(student_errors, n)}


def _metric_columns(values: np.ndarray, low: np.ndarray, high: np.ndarray, suffix: str) -> dict[str, float]:
    """{metric+suffix, metric+suffix_low, metric+suffix_high} for each of INTERVAL_METRICS."""
    columns = {}
    for j, metric in enumerate(INTERVAL_METRICS):
        name = f"{metric}{suffix}"
        columns.update({name: float(values[j]), f"{name}_low": float(low[j]), f"{name}_high": float(high[j])})
    return columns


def run_student_pairs(run: Run, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """`student_pairs` of a loaded run; empty (with its columns) while the run has no predictions."""
    if run.predictions is None or run.predictions.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    return student_pairs(run.trials, run.hops, run.predictions, resamples, seed)
