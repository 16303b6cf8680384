"""Chain-level successive halving: the rungs, the promotion rule, and a real study that stops and promotes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState

from runstore import schema
from runstore.storage import locate
from study.halving import HalvingRule, rung_epochs
from study.reconcile import reconcile
from study.results_folder import ResultsFolder
from study.runner import run_study, warm_starts
from study.space import chain_config, params_of
from study.spec import StudySpec, load_spec
from tests.journals import run_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("epochs, share, factor, rungs", [
    (160, 1 / 16, 4, [10, 40, 160]),  # the seed preset's
    (8, 1 / 16, 4, [1, 2, 8]),  # the default study's: at least one epoch
    (4, 1 / 16, 4, [1, 4]),  # ⌈0.25⌉ and ⌈1⌉ are one rung
    (4, 0.25, 2, [1, 2, 4]),
    (1, 1 / 16, 4, [1]),
])
def test_rungs_are_epochs_times_the_share_times_powers_of_the_factor(epochs: int, share: float, factor: int,
                                                                      rungs: list[int]) -> None:
    assert rung_epochs(epochs, share, factor) == rungs


def test_a_rung_promotes_the_best_share_of_what_it_has_seen_at_arrival() -> None:
    rule = HalvingRule([1, 2, 4], factor=2)
    assert rule.promotes("a", 1, 0.5)  # alone at its rung: the cutoff is its own value
    assert not rule.promotes("b", 1, 0.4)  # below the median of {0.5, 0.4}
    assert rule.promotes("c", 1, 0.6)
    assert rule.promotes("c", 1, 0.1)  # a resumed trial is decided on the value it was recorded with
    assert not rule.promotes("d", 4, 0.9)  # the top rung promotes nobody
    assert rule.seen[1] == {"a": 0.5, "b": 0.4, "c": 0.6}
    lowest = HalvingRule([1, 4], factor=2, mode="min")
    assert lowest.promotes("a", 1, 3.0) and lowest.promotes("b", 1, 2.0) and not lowest.promotes("c", 1, 5.0)


def test_rows_seed_the_rule_so_that_cutoffs_go_on_across_sessions() -> None:
    rule = HalvingRule([1, 2, 4], factor=2)
    rule.record_rows([{"trial_id": "a", "rung_accs": [0.7, 0.8]}, {"trial_id": "b", "rung_accs": [0.6]},
                      {"trial_id": "c", "rung_accs": None}])
    assert rule.seen == {1: {"a": 0.7, "b": 0.6}, 2: {"a": 0.8}}
    assert not rule.promotes("d", 1, 0.55)


SPEC = StudySpec(methods=("takd",), ta_candidates=(4,), teacher="plain6", epochs=4, trials=3, scheduler="halving",
                 halving_min=0.25, halving_factor=2)


@pytest.mark.parametrize("state, resumed", [(TrialState.RUNNING, True), (TrialState.PRUNED, False)])
def test_a_row_halted_at_a_rung_is_resumed_while_its_trial_runs_and_final_once_told(
        tmp_path: Path, state: TrialState, resumed: bool) -> None:
    results = ResultsFolder(locate(str(tmp_path / "results")))
    params = {"method": "takd", "temperature": 5.0, "alpha": 0.5, "ta_depths": "4"}
    cfg = chain_config(SPEC.base_config(), params)
    results.write_trial("halted", cfg, schema.STOPPED, summary={"student_val_acc": 0.5, "rung_epochs": 2,
                                                                  "rung_accs": [0.4, 0.5]})
    study = optuna.create_study(direction="maximize")
    _, distributions = params_of(SPEC, cfg.to_flat())
    if state == TrialState.RUNNING:
        trial = study.ask(distributions)
        trial.set_user_attr("trial_id", "halted")
    else:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, state=state,
                                                  user_attrs={"trial_id": "halted"}))
    plan = reconcile(SPEC, study, results)
    assert [r.trial_id for r in plan.resume] == (["halted"] if resumed else [])
    assert [r["trial_id"] for r in plan.halted] == (["halted"] if resumed else [])
    assert plan.ended == (0 if resumed else 1)


def test_a_halving_study_stops_and_promotes_by_the_rule_and_resumes_promoted_hops(
        ray_cluster: None, spec_file: Path, tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "halving", "trials": 5, "epochs": 4,
                                 "scheduler": "halving", "halving_min": 0.25, "halving_factor": 2,
                                 "methods": "takd", "ta_candidates": [4], "max_concurrent": 1})
    assert run_study(spec).errors == []
    run = tmp_path / "halving"
    rows = {r["trial_id"]: r for r in pq.read_table(run / "results" / "trials").to_pylist()}
    assert len(rows) == 5
    # One trial at a time: the journal's order is the order in which trials reached each rung, so the rule
    # replayed over the rows' rung accuracies must take the decisions the rows show.
    journal = [t for t in run_journal(run).trials if "trial_id" in t.user_attrs]
    replay, in_full = HalvingRule([1, 2, 4], factor=2), warm_starts(spec)
    for trial in sorted(journal, key=lambda t: t.number):
        row = rows[trial.user_attrs["trial_id"]]
        accs = row["rung_accs"]
        if chain_config(spec.base_config(), trial.params) in in_full:  # a warm start: no rungs, trained in full
            assert row["status"] == "TERMINATED" and accs is None and row["rung_epochs"] == 4
            continue
        decisions = [replay.promotes(row["trial_id"], rung, acc) for rung, acc in zip([1, 2, 4], accs)]
        assert decisions[:-1] == [True] * (len(accs) - 1) and not decisions[-1]
        assert row["rung_epochs"] == [1, 2, 4][len(accs) - 1] and row["student_val_acc"] == accs[-1]
        finished = row["rung_epochs"] == 4
        assert row["status"] == ("TERMINATED" if finished else "STOPPED")
        assert trial.state == (TrialState.COMPLETE if finished else TrialState.PRUNED)
        # naive: the configuration in one go; a promoted chain's resumed TA computed its teacher's outputs again
        assert 0.9 * row["train_flops"] <= row["naive_flops"] <= row["train_flops"] if finished else \
            row["naive_flops"] > row["train_flops"]
    assert {r["status"] for r in rows.values()} == {"TERMINATED", "STOPPED"}
    # A promoted chain resumed its TA (its teacher did not change) and retrained its student (its TA did).
    hops = pq.read_table(run / "results" / "hops").to_pylist()
    for trial_id, row in rows.items():
        if row["rung_accs"] and row["rung_epochs"] > 1:
            ta, student = sorted((h for h in hops if h["trial_id"] == trial_id and h["index"] > 0),
                                 key=lambda h: h["index"])
            assert ta["resumed_from"] > 0 or ta["reused"]
            assert student["resumed_from"] == 0
