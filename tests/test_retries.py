"""ERROR is retryable: a configuration whose trial raised (an OOM, a lost node, a transient fault) is trained again
by the next session under its own trial id, until it has failed in three sessions; DIVERGED and STOPPED are final."""

from __future__ import annotations

from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState

from cli.main import main
from runstore import schema
from runstore.storage import locate
from study.reconcile import GIVE_UP_AFTER, reconcile
from study.results_folder import ResultsFolder
from study.space import chain_config, params_of
from study.spec import StudySpec
from tests.journals import run_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_trials_that_failed_at_start_are_retried_by_the_same_command(
        ray_cluster: str, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["run", "--spec", str(spec_file), "--storage", str(tmp_path), "--name", "flaky", "--trials", "2",
            "--methods", "nokd,kd", "--max-failures", "0", "--no-report", "--address", ray_cluster]
    monkeypatch.setenv("KDSTUDY_FAULT", "trial-start:raise")
    assert main(argv) == 1
    run = tmp_path / "flaky"
    first = {r["trial_id"]: r for r in pq.read_table(run / "results" / "trials").to_pylist()}
    assert sorted(r["status"] for r in first.values()) == ["ERROR", "ERROR"]
    assert "2 without a result (2 failed); run the same command to retry them" in capsys.readouterr().err

    monkeypatch.delenv("KDSTUDY_FAULT")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "retrying 2 trials that failed: " in out and out.count("RuntimeError: injected fault at trial-start") == 2
    rows = {r["trial_id"]: r for r in pq.read_table(run / "results" / "trials").to_pylist()}
    assert rows.keys() == first.keys()  # the same trials, their rows replaced by the outcome
    assert sorted((r["method"], r["status"]) for r in rows.values()) == [("kd", "TERMINATED"), ("nokd", "TERMINATED")]
    attempts = [(t.user_attrs["trial_id"], t.state) for t in run_journal(run).trials if "trial_id" in t.user_attrs]
    assert sorted(attempts) == sorted([(i, TrialState.FAIL) for i in first] + [(i, TrialState.COMPLETE) for i in first])


SPEC = StudySpec(methods=("takd",), ta_candidates=(4,), teacher="plain6", trials=3)


def _failed_study(tmp_path: Path, sessions: int) -> tuple[optuna.Study, ResultsFolder]:
    """A journal in which one configuration failed in `sessions` sessions, and its ERROR row."""
    results = ResultsFolder(locate(str(tmp_path / "results")))
    study = optuna.create_study(direction="maximize")
    params = {"method": "takd", "temperature": 5.0, "alpha": 0.25, "ta_depths": "4"}
    cfg = chain_config(SPEC.base_config(), params)
    results.write_trial("flaky", cfg, schema.ERROR, error="RuntimeError: CUDA out of memory")
    _, distributions = params_of(SPEC, cfg.to_flat())
    for _ in range(sessions):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, state=TrialState.FAIL,
                                                  user_attrs={"trial_id": "flaky"}))
    return study, results


def test_a_failed_configuration_is_enqueued_under_its_trial_id_and_does_not_count_as_ended(tmp_path: Path) -> None:
    study, results = _failed_study(tmp_path, GIVE_UP_AFTER - 1)
    plan = reconcile(SPEC, study, results)
    assert plan.ended == 0 and [f.row["trial_id"] for f in plan.retry] == ["flaky"] and not plan.given_up
    assert plan.retry[0].line().endswith("RuntimeError: CUDA out of memory)")
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert {"method": "takd", "temperature": 5.0, "alpha": 0.25, "ta_depths": "4"} in waiting
    assert not plan.ledger.exhausted and plan.ledger.retries == 1
    reconcile(SPEC, study, results)  # a session that crashed before drawing it: enqueued once, not twice
    assert len(study.get_trials(states=(TrialState.WAITING,))) == len(waiting)


def test_a_configuration_that_failed_in_three_sessions_is_given_up(tmp_path: Path) -> None:
    study, results = _failed_study(tmp_path, GIVE_UP_AFTER)
    plan = reconcile(SPEC, study, results)
    assert not plan.retry and [f.row["trial_id"] for f in plan.given_up] == ["flaky"]
    known = next(iter(plan.ledger.configs.values()))
    assert known.state == TrialState.FAIL and not known.retry  # never drawn again
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert all(p.get("temperature") != 3.0 for p in waiting)
