"""The study's other modes on the real cluster: two objectives (multi-objective Optuna) and ASHA early stopping."""

from __future__ import annotations

from pathlib import Path

import optuna
import pyarrow.parquet as pq

from study.runner import run_study
from study.spec import load_spec
from tests.journals import run_journal


def test_two_objectives_run_a_multi_objective_search(ray_cluster: None, spec_file: Path, tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "pareto", "trials": 4, "methods": "nokd,kd",
                                 "objectives": "student_val_acc,train_flops"})
    assert run_study(spec).errors == []
    rows = pq.read_table(tmp_path / "pareto" / "results" / "trials").to_pylist()
    assert len(rows) == 4 and all(r["status"] == "TERMINATED" for r in rows)
    study = run_journal(tmp_path / "pareto")
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 4 and all(len(t.values) == 2 for t in finished)
    assert {round(t.values[0], 6) for t in finished} == {round(r["student_val_acc"], 6) for r in rows}


def test_asha_stops_weak_students_early_and_records_them(ray_cluster: None, spec_file: Path, tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "asha", "trials": 6, "epochs": 4,
                                 "scheduler": "asha", "methods": "nokd,kd", "max_concurrent": 2})
    assert run_study(spec).errors == []
    rows = pq.read_table(tmp_path / "asha" / "results" / "trials").to_pylist()
    assert len(rows) == 6
    statuses = {r["status"] for r in rows}
    assert statuses <= {"TERMINATED", "STOPPED"} and "TERMINATED" in statuses
    for row in rows:
        assert row["student_val_acc"] is not None  # a stopped trial keeps what its student reached
    stopped = [r for r in rows if r["status"] == "STOPPED"]
    epochs = pq.read_table(tmp_path / "asha" / "results" / "epochs").to_pylist()
    # A stopped trial's thread writes nothing once stopped: its curve is what it wrote before each report.
    for row in stopped:  # stopped before the student's last epoch (that one only reports with the outcome)
        student_epochs = [e["epoch"] for e in epochs if e["trial_id"] == row["trial_id"] and e["role"] == "student"]
        assert sorted(student_epochs) == list(range(1, len(student_epochs) + 1)) and 0 < len(student_epochs) < 4


def test_asha_never_stops_a_trial_at_its_students_last_epoch(ray_cluster: None, spec_file: Path,
                                                              tmp_path: Path) -> None:
    # One epoch: ASHA's only rung is the student's last epoch, where a trial below the others' median would be cut
    # after training everything; it must end TERMINATED with its rows instead.
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "last", "trials": 4, "epochs": 1,
                                 "scheduler": "asha", "methods": "kd", "max_concurrent": 1})
    assert run_study(spec).errors == []
    rows = pq.read_table(tmp_path / "last" / "results" / "trials").to_pylist()
    assert len({r["student_val_acc"] for r in rows}) > 1  # the students differ, so the rung has a cutoff
    assert [r["status"] for r in rows] == ["TERMINATED"] * 4
