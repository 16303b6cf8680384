"""analysis.avalanche: hand-computed error-inheritance metrics, the Parquet round trip and the report section.

The notebook runs in tests/test_notebooks.py; the section inside a whole report in tests/test_report.py.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis.avalanche import (PairMetrics, avalanche_curve, avalanche_section, avalanche_summary, chain_pair_table,
                                pair_metrics, teacher_student_rows, trial_avalanche)
from analysis.load import load_run
from study.schema import PREDICTIONS, TRIALS
from tests.analysis_fixtures import assert_png_not_blank, write_table
from trainables.config import ChainConfig

# Mixed example, 10 samples of class 0. Teacher wrong on 0-4; student wrong on 0 (same class), 1 (other class),
# 3 (same class) and 5 (teacher right). Hand counts: P(s✗|t✗)=3/5, P(s✗|t✓)=1/5, lift 3, shared 3/4,
# same class 2/4, inherited 2/5.
MIXED_TARGET = np.zeros(10, dtype=np.int16)
MIXED_TEACHER = np.array([1, 1, 1, 2, 2, 0, 0, 0, 0, 0], dtype=np.int16)
MIXED_STUDENT = np.array([1, 2, 0, 2, 0, 3, 0, 0, 0, 0], dtype=np.int16)


# --------------------------------------------------------------------------------------------------- pair metrics

def test_student_copying_the_teacher_inherits_everything() -> None:
    target = np.arange(8)
    teacher = np.array([0, 1, 2, 3, 9, 9, 1, 7])  # wrong on 4, 5, 6
    m = pair_metrics(teacher, teacher.copy(), target)
    assert (m.n, m.upper_errors, m.lower_errors) == (8, 3, 3)
    assert m.p_lower_wrong_given_upper_wrong == 1.0
    assert m.p_lower_wrong_given_upper_right == 0.0
    assert m.shared_error_share == 1.0 and m.same_class_share == 1.0 and m.inherited_error_rate == 1.0
    assert math.isnan(m.lift)  # baseline 0: the ratio is undefined


def test_independent_student_has_lift_one() -> None:
    target = np.zeros(8, dtype=int)
    teacher = np.array([1, 1, 1, 1, 0, 0, 0, 0])  # wrong on the first half
    student = np.array([2, 1, 0, 0, 3, 3, 0, 0])  # wrong on half of each half; repeats the teacher's class once
    m = pair_metrics(teacher, student, target)
    assert m.p_lower_wrong_given_upper_wrong == 0.5 == m.p_lower_wrong_given_upper_right
    assert m.lift == 1.0
    assert m.shared_error_share == 0.5  # 2 of the student's 4 errors
    assert m.same_class_share == 0.25  # sample 1 only
    assert m.inherited_error_rate == 0.25  # 1 of the teacher's 4 errors


def test_mixed_example_by_hand() -> None:
    m = pair_metrics(MIXED_TEACHER, MIXED_STUDENT, MIXED_TARGET)
    assert m == PairMetrics(n=10, upper_errors=5, lower_errors=4, p_lower_wrong_given_upper_wrong=3 / 5,
                            p_lower_wrong_given_upper_right=1 / 5, lift=pytest.approx(3.0), shared_error_share=3 / 4,
                            same_class_share=2 / 4, inherited_error_rate=2 / 5)


def test_undefined_conditionals_are_nan_without_warnings() -> None:
    target = np.array([0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 must come back as NaN, never as a RuntimeWarning
        never_wrong = pair_metrics(target, np.array([0, 1, 0, 0]), target)  # teacher perfect, student 2 errors
        both_perfect = pair_metrics(target, target, target)
        always_wrong = pair_metrics(target + 1, target, target)  # teacher never right
    assert math.isnan(never_wrong.p_lower_wrong_given_upper_wrong) and math.isnan(never_wrong.inherited_error_rate)
    assert math.isnan(never_wrong.lift)
    assert never_wrong.p_lower_wrong_given_upper_right == 0.5
    assert never_wrong.shared_error_share == 0.0 and never_wrong.same_class_share == 0.0
    assert math.isnan(both_perfect.shared_error_share) and math.isnan(both_perfect.same_class_share)
    assert math.isnan(always_wrong.p_lower_wrong_given_upper_right) and math.isnan(always_wrong.lift)
    assert always_wrong.p_lower_wrong_given_upper_wrong == 0.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="lengths"):
        pair_metrics(np.zeros(3), np.zeros(4), np.zeros(3))


# ------------------------------------------------------------------------------------------- chain tables, curve

def test_chain_pair_table_has_every_pair() -> None:
    chain = [MIXED_TEACHER, MIXED_TEACHER.copy(), MIXED_STUDENT]
    table = chain_pair_table(chain, MIXED_TARGET)
    assert list(zip(table.upper, table.lower, table.distance)) == [(0, 1, 1), (0, 2, 2), (1, 2, 1)]
    teacher_student = table[(table.upper == 0) & (table.lower == 2)].iloc[0]
    assert teacher_student.p_lower_wrong_given_upper_wrong == 0.6 and teacher_student.same_class_share == 0.5


def test_avalanche_curve_follows_the_teacher_errors() -> None:
    curve = avalanche_curve([MIXED_TEACHER, MIXED_TEACHER.copy(), MIXED_STUDENT], MIXED_TARGET)
    assert list(curve.role) == ["teacher", "ta", "student"]
    assert list(curve.error_rate) == [0.5, 0.5, 0.4]
    assert list(curve.teacher_error_carried) == [1.0, 1.0, 0.6]
    assert list(curve.teacher_same_class) == [1.0, 1.0, 0.4]
    assert list(curve.baseline) == [0.0, 0.0, 0.2]


# ------------------------------------------------------------------------------------------------ fake run folder

N_TEST = 300
CLASSES = 10


def _child(rng: np.random.Generator, upper: np.ndarray, target: np.ndarray, copy: float, acc: float) -> np.ndarray:
    """A lower hop that repeats `upper`'s answer with probability `copy`, else is right with probability `acc`."""
    own = np.where(rng.random(target.size) < acc, target, rng.integers(0, CLASSES, target.size))
    return np.where(rng.random(target.size) < copy, upper, own).astype(np.int16)


def _trial_rows(trial_id: str, chain: list[np.ndarray], target: np.ndarray,
                rng: np.random.Generator) -> list[dict[str, Any]]:
    roles = ["student"] if len(chain) == 1 else ["teacher", *["ta"] * (len(chain) - 2), "student"]
    return [{"trial_id": trial_id, "hop": hop, "arch": f"plain{10 - 2 * hop}", "role": role,
             "predicted": pred, "true_prob": rng.random(target.size).astype(np.float16), "target": target}
            for hop, (pred, role) in enumerate(zip(chain, roles))]


def _write_fake_run(run: Path, with_predictions: bool = True) -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, CLASSES, N_TEST).astype(np.int16)
    teacher = _child(rng, target, target, copy=0.0, acc=0.8)
    chains = {  # trial id -> (method, weighting, TA depths, val acc, copy rate down the chain)
        "kd-a": ("kd", "mean", [], 0.70, 0.4),
        "takd-a": ("takd", "mean", [6, 4], 0.72, 0.8),
        "takd-b": ("takd", "mean", [6], 0.60, 0.8),  # worse: not the takd group's best
        "dgkd-a": ("dgkd", "mean", [6, 4], 0.74, 0.2),
        "ens-a": ("ensemble", "confidence", [6], 0.73, 0.3),
        "nokd-a": ("nokd", "mean", [], 0.65, 0.0),
    }
    trials, predictions = [], []
    for trial_id, (method, weighting, depths, val_acc, copy) in chains.items():
        chain = [teacher]
        for _ in range(len(depths) + 1):
            chain.append(_child(rng, chain[-1], target, copy=copy, acc=0.75))
        if method == "nokd":
            chain = chain[-1:]
        trials.append(_trial(trial_id, "TERMINATED", method, weighting, depths, val_acc))
        predictions += _trial_rows(trial_id, chain, target, rng)
    # a failed trial with the best score must never be picked
    trials.append({**_trial("err", "ERROR", "takd", "mean", [4], 0.99), "error": "boom"})
    results = run / "results"
    results.mkdir(parents=True)
    write_table(results / "trials.parquet", trials, TRIALS)
    if with_predictions:
        write_table(results / "predictions.parquet", predictions, PREDICTIONS)


def _trial(trial_id: str, status: str, method: str, weighting: str, depths: list[int],
           val_acc: float) -> dict[str, Any]:
    # a complete config, as the study writes it: the report's labels and groups are built from it
    config = ChainConfig(method=method, weighting=weighting, ta_depths=tuple(depths)).to_flat()
    return {"trial_id": trial_id, "status": status, **config, "num_tas": len(depths), "student_val_acc": val_acc}


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _write_fake_run(run)
    return run


def test_predictions_parquet_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, CLASSES, 50).astype(np.int16)
    chain = [target.copy(), _child(rng, target, target, 0.0, 0.5)]
    rows = _trial_rows("t", chain, target, rng)
    write_table(tmp_path / "predictions.parquet", rows, PREDICTIONS)
    table = pq.read_table(tmp_path / "predictions.parquet")
    assert table.schema.equals(PREDICTIONS)
    back = table.to_pandas()
    for row, (_, read) in zip(rows, back.iterrows()):
        for column in ("predicted", "true_prob", "target"):
            assert read[column].dtype == row[column].dtype
            np.testing.assert_array_equal(read[column], row[column])
    pairs, curve = trial_avalanche(back, "t")
    assert pairs.iloc[0].lower_errors == int((chain[1] != target).sum())
    assert list(curve.role) == ["teacher", "student"] and list(curve.arch) == ["plain10", "plain8"]


def test_summary_picks_the_best_successful_trial_per_group(fake_run: Path) -> None:
    run = load_run(fake_run)
    summary = avalanche_summary(run.trials, run.predictions)
    students = teacher_student_rows(summary)
    # nokd has no teacher; the errored trial and the worse takd trial are not picked
    assert list(students.group) == ["kd", "takd", "dgkd", "ensemble-confidence"]
    assert list(students.trial_id) == ["kd-a", "takd-a", "dgkd-a", "ens-a"]
    assert list(summary[summary.group == "takd"].hop) == [0, 1, 2, 3]
    assert (students.role == "student").all()
    by_group = students.set_index("group")
    # the copy rates built in: TAKD's student repeats far more of the teacher's exact errors than DGKD's
    assert by_group.loc["takd", "teacher_same_class"] > by_group.loc["dgkd", "teacher_same_class"] + 0.2


def test_section_writes_a_plot_and_a_table(fake_run: Path) -> None:
    section = avalanche_section(load_run(fake_run), fake_run / "report")
    assert section is not None
    heading, body = section
    assert heading == "Error avalanche"
    table = [line for line in body.splitlines() if line.startswith("|")]
    assert table[0].startswith("| group |") and len(table) == 2 + 4
    assert any(line.startswith("| takd |") for line in table) and not any("nokd" in line for line in table)
    assert_png_not_blank(fake_run / "report" / "avalanche.png", min_height=300, min_std=0.05)


def test_section_is_none_without_predictions(tmp_path: Path) -> None:
    for name in ("missing", "empty"):
        _write_fake_run(tmp_path / name, with_predictions=False)
    pq.write_table(PREDICTIONS.empty_table(), tmp_path / "empty" / "results" / "predictions.parquet")
    for name in ("missing", "empty"):
        assert avalanche_section(load_run(tmp_path / name), tmp_path / name / "report") is None, name
        assert not (tmp_path / name / "report" / "avalanche.png").exists(), name

