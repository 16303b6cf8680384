"""analysis.avalanche: hand-computed error-inheritance metrics, the Parquet round trip and the report section.

The notebook runs in tests/test_notebooks.py; the section inside a whole report in tests/test_report.py.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.avalanche import (PairMetrics, avalanche_curve, avalanche_summary, best_trials, chain_pair_table,
                                pair_metrics, run_summary, teacher_student_rows, trial_avalanche)
from analysis.load import load_run
from analysis.report import AVALANCHE_INTRO, STUDENT_PAIR_COLUMNS, avalanche_section, student_pair_markdown
from study import rows
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


def _trial_rows(trial_id: str, chain: list[np.ndarray], target: np.ndarray, rng: np.random.Generator,
                archs: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    roles = ["student"] if len(chain) == 1 else ["teacher", *["ta"] * (len(chain) - 2), "student"]
    archs = archs or tuple(f"plain{10 - 2 * hop}" for hop in range(len(chain)))
    return [{"trial_id": trial_id, "hop": hop, "arch": arch, "role": role,
             "predicted": pred, "true_prob": rng.random(target.size).astype(np.float16), "target": target}
            for hop, (pred, role, arch) in enumerate(zip(chain, roles, archs))]


def _write_fake_run(run: Path, with_predictions: bool = True) -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, CLASSES, N_TEST).astype(np.int16)
    teacher = _child(rng, target, target, copy=0.0, acc=0.8)
    chains = {  # trial id -> (method, method settings, TA depths, val acc, copy rate down the chain)
        "kd-a": ("kd", {}, [], 0.70, 0.4),
        "takd-a": ("takd", {}, [6, 4], 0.72, 0.8),
        "takd-b": ("takd", {}, [6], 0.60, 0.8),  # worse: not the takd group's best
        "dgkd-a": ("dgkd", {}, [6, 4], 0.74, 0.2),
        "ens-a": ("ensemble", {"weighting": "confidence"}, [6], 0.73, 0.3),
        "nokd-a": ("nokd", {}, [], 0.65, 0.0),
    }
    results = run / "results"
    for trial_id, (method, params, depths, val_acc, copy) in chains.items():
        cfg = ChainConfig(method=method, params=params, ta_depths=tuple(depths))
        chain = [teacher]
        for _ in range(len(depths) + 1):
            chain.append(_child(rng, chain[-1], target, copy=copy, acc=0.75))
        chain = chain[-len(cfg.archs):]  # nokd trains its student only
        _write_trial(results, trial_id, cfg, schema.FINISHED, val_acc)
        if with_predictions:
            write_table(results / "predictions" / f"{trial_id}.parquet",
                        _trial_rows(trial_id, chain, target, rng, cfg.archs), schema.PREDICTIONS)
    # failed trials with the best score must never be picked, even when they wrote predictions (a diverged
    # trial writes those of the hops it finished)
    _write_trial(results, "err", ChainConfig(method="takd", ta_depths=(4,)), schema.ERROR, 0.99, error="boom")
    _write_trial(results, "div", ChainConfig(method="takd", ta_depths=(6,)), schema.DIVERGED, 0.98,
                 error="hop 2 (plain2): loss nan at epoch 1")
    if with_predictions:
        write_table(results / "predictions" / "div.parquet",
                    _trial_rows("div", [teacher, teacher.copy(), teacher.copy()], target, rng), schema.PREDICTIONS)


def _write_trial(results: Path, trial_id: str, cfg: ChainConfig, status: str, val_acc: float,
                 error: str | None = None) -> None:
    """A trials file as the study writes it: the report's labels and groups come from the config."""
    row = rows.trial_row(trial_id, cfg, status, error=error, summary={"student_val_acc": val_acc})
    write_table(results / "trials" / f"{trial_id}.parquet", [row], rows.trials_schema())


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _write_fake_run(run)
    return run


def test_predictions_parquet_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, CLASSES, 50).astype(np.int16)
    chain = [target.copy(), _child(rng, target, target, 0.0, 0.5)]
    written = _trial_rows("t", chain, target, rng)
    write_table(tmp_path / "results" / "predictions" / "t.parquet", written, schema.PREDICTIONS)
    back = load_run(tmp_path).predictions  # through the reader the report uses
    assert list(back.columns) == schema.PREDICTIONS.names and len(back) == 2
    for row, (_, read) in zip(written, back.iterrows()):
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
    # nokd has no teacher; the errored and diverged trials and the worse takd trial are not picked
    assert list(students.group) == ["kd", "takd", "dgkd", "ensemble-confidence"]
    assert list(students.trial_id) == ["kd-a", "takd-a", "dgkd-a", "ens-a"]
    takd = summary[summary.group == "takd"]
    assert list(takd.hop) == [0, 1, 2, 3] and list(takd.arch) == ["plain10", "plain6", "plain4", "plain2"]
    assert list(students.num_hops) == [2, 4, 4, 3]
    assert (students.role == "student").all()
    by_group = students.set_index("group")
    # the copy rates built in: TAKD's student repeats far more of the teacher's exact errors than DGKD's
    assert by_group.loc["takd", "teacher_same_class"] > by_group.loc["dgkd", "teacher_same_class"] + 0.2
    assert summary.equals(run_summary(run))


def test_best_trials_rank_as_everywhere_else() -> None:
    cfg = ChainConfig(method="takd", ta_depths=(6,))

    def trial(trial_id: str, method: str, val: float, flops: int) -> dict[str, Any]:
        chain = cfg if method == "takd" else ChainConfig(method=method)
        return rows.trial_row(trial_id, chain, schema.FINISHED,
                              summary={"student_val_acc": val, "train_flops": flops})

    trials = pd.DataFrame([trial("x", "takd", 0.8, 200), trial("y", "takd", 0.8, 100),
                           trial("z", "takd", 0.9, 50), trial("w", "kd", 0.7, 10)])
    target = np.zeros(4, dtype=np.int16)
    predictions = pd.DataFrame([{"trial_id": t, "hop": hop, "predicted": target, "target": target}
                                for t, hops in [("x", 3), ("y", 3), ("w", 1)] for hop in range(hops)])
    best = best_trials(trials, predictions)
    # z (the best) has no predictions and w's only hop has no teacher above it; x and y tie on validation
    # accuracy, so the cheaper chain wins, as in `analysis.ranking`
    assert best[["group", "trial_id", "num_hops"]].values.tolist() == [["takd", "y", 3]]


def test_section_writes_a_plot_and_a_table(fake_run: Path, tmp_path: Path) -> None:
    section = avalanche_section(load_run(fake_run), tmp_path / "out")
    assert section is not None
    heading, body = section
    assert heading == "Error avalanche"
    assert body.startswith(AVALANCHE_INTRO) and body.endswith("![Error avalanche](avalanche.png)")
    table = [line for line in body.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4 and not any("nokd" in line for line in table)
    headers = [h.strip().replace("\\|", "|") for h in table[0].strip("|").split(" | ")]
    assert headers == [header for header, _ in STUDENT_PAIR_COLUMNS.values()]
    takd = next(line for line in table if line.startswith("| takd |")).split(" | ")
    assert takd[1:3] == ["`takd-a`", "2"]  # trial, TAs
    assert_png_not_blank(tmp_path / "out" / "avalanche.png", min_height=300, min_std=0.05)
    assert not (fake_run / "report").exists()  # the figure goes where it is told, not into the run


def test_student_pair_markdown_counts_tas_and_aligns_numbers() -> None:
    pairs = pd.DataFrame([{"group": "kd", "trial_id": "a", "num_hops": 2, "student_val_acc": 0.9,
                           "error_rate": 0.125, "teacher_error_carried": 0.5, "baseline": 0.25, "lift": 2.0,
                           "same_class_share": math.nan}])
    header, rule, row = student_pair_markdown(pairs).splitlines()
    assert rule == "|---|---|" + "|".join(["---:"] * (len(STUDENT_PAIR_COLUMNS) - 2)) + "|"
    assert row == "| kd | `a` | 0 | 90.00 % | 12.5 % | 50.0 % | 25.0 % | 2.00 | – |"


def test_section_is_none_without_predictions(tmp_path: Path) -> None:
    for name in ("missing", "empty", "nokd-only"):
        _write_fake_run(tmp_path / name, with_predictions=False)
    write_table(tmp_path / "empty" / "results" / "predictions" / "kd-a.parquet", [], schema.PREDICTIONS)
    target = np.zeros(5, dtype=np.int16)
    write_table(tmp_path / "nokd-only" / "results" / "predictions" / "nokd-a.parquet",
                _trial_rows("nokd-a", [target], target, np.random.default_rng(0), ("plain2",)), schema.PREDICTIONS)
    assert load_run(tmp_path / "missing").predictions is None
    assert load_run(tmp_path / "empty").predictions.empty
    for name in ("missing", "empty", "nokd-only"):
        assert avalanche_section(load_run(tmp_path / name), tmp_path / name / "out") is None, name
        assert not (tmp_path / name / "out" / "avalanche.png").exists(), name
