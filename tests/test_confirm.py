"""Seed confirmation and the report command, on a copy of the session's real tiny study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cli.analysis_cmds import confirm_runtime
from cli.main import build_parser, main
from study.folder import write_settings
from study.confirm import confirmation_jobs
from study.spec import StudySpec
from tests.conftest import ON_GPU


@pytest.fixture()
def study_copy(tiny_study: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_study, tmp_path / "tiny"))


def _set_runtime(run: Path, **runtime: float) -> None:
    settings = json.loads((run / "study.json").read_text())
    (run / "study.json").write_text(json.dumps({**settings, "runtime": {**settings["runtime"], **runtime}}))


def test_confirm_retrains_the_best_configuration_with_new_seeds(study_copy: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    _set_runtime(study_copy, max_concurrent=3)  # as if the study's last session had run 3 trials at a time
    assert main(["confirm", str(study_copy), "--top", "1", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    gpus = 0.25 if ON_GPU else 0
    assert f"resources: 1 CPU and {gpus:g} GPU per trial, at most 3 trials at a time" in out.splitlines()
    trials = pq.read_table(study_copy / "results" / "trials").to_pylist()
    best = max(trials, key=lambda t: (t["student_val_acc"], -t["train_flops"]))
    rows = pq.read_table(study_copy / "results" / "confirm").to_pylist()
    assert [r["source_trial_id"] for r in rows] == [best["trial_id"]] * 2
    assert sorted(r["seed"] for r in rows) == [1, 2]  # the study used seed 0: both are new
    assert all(r["status"] == "TERMINATED" and r["student_test_acc"] is not None for r in rows)
    assert all(r["config_label"] == best["config_label"] and r["ta_depths"] == best["ta_depths"] for r in rows)
    assert "test_acc_ci95" in out

    # --per-group: the best of every other group on seed 1 too; the best's own seeds are not trained again
    before = {p.name: p.stat().st_mtime_ns for p in (study_copy / "results" / "confirm").iterdir()}
    assert main(["confirm", str(study_copy), "--per-group", "--seeds", "1"]) == 0
    assert "1 paired seed, no interval" in capsys.readouterr().out  # the differences, said as the report says them
    after = {p.name: p.stat().st_mtime_ns for p in (study_copy / "results" / "confirm").iterdir()}
    groups = {t["group"] for t in trials if t["status"] == "TERMINATED"}
    assert {k: after[k] for k in before} == before and len(after) == 2 + len(groups) - 1
    rows = pq.read_table(study_copy / "results" / "confirm").to_pylist()
    best_of = {}
    for t in sorted((t for t in trials if t["status"] == "TERMINATED"),
                    key=lambda t: (-t["student_val_acc"], t["train_flops"], t["trial_id"])):
        best_of.setdefault(t["group"], t["trial_id"])
    seed_1 = [r for r in rows if r["seed"] == 1]
    assert sorted((r["group"], r["source_trial_id"]) for r in seed_1) == sorted(best_of.items())  # each group once
    assert all(r["status"] == "TERMINATED" for r in rows)

    assert main(["report", str(study_copy)]) == 0
    summary = (study_copy / "report" / "summary.md").read_text()
    assert "Seed confirmation" in summary
    differences = pd.read_csv(study_copy / "report" / "differences.csv")
    assert set(differences["group_a"]) | set(differences["group_b"]) == groups
    assert (differences["n_seeds"] == 1).all() and differences["ci_low"].isna().all()  # one shared seed: no CI
    assert "1 paired seed, no interval" in summary


def test_confirmation_picks_distinct_configurations_by_validation_accuracy() -> None:
    base = {"status": "TERMINATED", "train_flops": 10, "seed": 0, "ta_depths": [4], "method": "takd",
            "student_test_acc": 0.5, "group": "takd", "config_label": "x", "error": None}

    def trial(trial_id: str, val: float, test: float, alpha: float) -> dict:
        return {**base, "trial_id": trial_id, "student_val_acc": val, "student_test_acc": test, "alpha": alpha}

    trials = pd.DataFrame([trial("a", 0.9, 0.1, 0.5), trial("b", 0.8, 0.99, 0.3), trial("dup", 0.85, 0.5, 0.5),
                           trial("c", 0.7, 0.2, 0.1)])
    jobs = confirmation_jobs(trials, top=2, seeds=1)
    assert [j["source_trial_id"] for j in jobs] == ["a", "b"]  # 'dup' is a's configuration; test acc is ignored
    assert [j["chain"]["seed"] for j in jobs] == [1, 1]
    assert confirmation_jobs(trials, top=2, seeds=2, done={("a", 1)})[0]["chain"]["seed"] == 2


def test_confirm_runs_like_its_study_unless_a_flag_says_otherwise(tmp_path: Path) -> None:
    def runtime(*flags: str) -> dict:
        return confirm_runtime(build_parser().parse_args(["confirm", str(run), *flags]), str(run))

    spec = StudySpec(storage=str(tmp_path), name="gpu", cpus_per_trial=4, gpus_per_trial=0.5, max_concurrent=8)
    run = tmp_path / "gpu"
    defaults = {"cpus_per_trial": 1.0, "gpus_per_trial": 0.0, "max_concurrent": 2}
    assert runtime() == defaults  # no study.json
    write_settings(spec)
    assert runtime() == {"cpus_per_trial": 4, "gpus_per_trial": 0.5, "max_concurrent": 8}
    assert runtime("--gpus-per-trial", "0", "--max-concurrent", "1") == \
        {"cpus_per_trial": 4, "gpus_per_trial": 0.0, "max_concurrent": 1}
    (run / "study.json").write_text(json.dumps(spec.settings()))  # written before studies recorded their runtime
    assert runtime() == defaults


def test_confirm_refuses_the_studys_resources_where_they_do_not_fit(study_copy: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    assert json.loads((study_copy / "study.json").read_text())["runtime"] == \
        {"cpus_per_trial": 1.0, "gpus_per_trial": 0.25 if ON_GPU else 0, "max_concurrent": 2}  # as the study ran
    _set_runtime(study_copy, gpus_per_trial=64)
    assert main(["confirm", str(study_copy), "--top", "1", "--seeds", "1"]) == 2
    assert capsys.readouterr().err.startswith("kdstudy confirm: gpus_per_trial: 64 per trial, but this machine has")
    assert not (study_copy / "results" / "confirm").exists()


@pytest.mark.parametrize("args, field", [(["--top", "0"], "top"), (["--seeds", "0"], "seeds"),
                                         (["--max-concurrent", "0"], "max_concurrent"),
                                         (["--gpus-per-trial", "-1"], "gpus_per_trial")])
def test_confirm_rejects_bad_counts(study_copy: Path, args: list[str], field: str,
                                    capsys: pytest.CaptureFixture) -> None:
    assert main(["confirm", str(study_copy), *args]) == 2
    assert capsys.readouterr().err.startswith(f"kdstudy confirm: {field}: ")


def test_report_and_confirm_need_a_study_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for command in ("report", "confirm"):
        assert main([command, str(tmp_path / "missing")]) == 2
        assert capsys.readouterr().err.startswith(f"kdstudy {command}: run: no study results in ")
