"""What a study spent against naive (every trial's chain from scratch at full fidelity), from its tables: one
function that `kdstudy run`'s last lines and the report's Cost section both state; and the plan and cost lines of
a real `kdstudy run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.costs import against_naive, cost_section
from analysis.load import load_run, read_table
from cli.main import main
from runstore import schema
from runstore.storage import locate
from study import rows
from study.results_folder import ResultsFolder
from tests.analysis_fixtures import write_table
from tests.conftest import DEVICE
from trainables import ChainConfig

CFG = ChainConfig(method="takd", ta_depths=(4,))


def _write_run(run: Path) -> None:
    """t1 trained in full; t2 stopped at a low rung (its row: the rung's chain, and its full-fidelity cost); t3
    written before `naive_flops` existed; t4 failed; and the hop trainings the study spent."""
    results = ResultsFolder(locate(str(run / "results")))
    results.write_trial("t1", CFG, schema.FINISHED, summary={"train_flops": 3 * 10**9, "train_seconds": 6.0,
                                                             "naive_flops": 3 * 10**9})
    results.write_trial("t2", CFG.replace(seed=1), schema.STOPPED, summary={
        "train_flops": 10**9, "train_seconds": 2.0, "naive_flops": 4 * 10**9, "rung_epochs": 1})
    old = rows.trials_schema()
    old = old.remove(old.get_field_index("naive_flops"))
    write_table(run / "results" / "trials" / "t3.parquet",
                [rows.trial_row("t3", CFG.replace(seed=3), schema.FINISHED,
                                summary={"train_flops": 2 * 10**9, "train_seconds": 3.0})], old)
    results.write_trial("t4", CFG.replace(seed=4), schema.ERROR, error="RuntimeError: lost node")
    for trial_id, key, flops, seconds in (("t1", "k0", 2 * 10**9, 2.0), ("t1", "k1", 10**9, 1.0),
                                          ("t2", "k2", 10**9, 1.5), ("t3", "k3", 5 * 10**8, 0.6),
                                          ("t9-s100", "k9", 10**12, 99.0)):  # a confirmation's: not the search's
        results.write_trained(trial_id, key, flops, seconds, diverged=False)


def test_spent_is_the_trained_table_and_naive_the_trials_at_full_fidelity(tmp_path: Path) -> None:
    _write_run(tmp_path)
    trials = read_table(locate(str(tmp_path / "results")), "trials")
    assert trials.loc[trials["trial_id"] == "t3", "naive_flops"].isna().all()  # a column the old file lacks
    cost = against_naive(trials, read_table(locate(str(tmp_path / "results")), "trained"))
    assert cost is not None
    # spent: 2e9 + 1e9 + 1e9 + 5e8 = 4.5e9 FLOPs, 2 + 1 + 1.5 + 0.6 = 5.1 s
    assert (cost.spent.flops, cost.spent.seconds) == (4_500_000_000, pytest.approx(5.1))
    # naive: t1 3e9 in 6 s; t2 4e9, its 2 s scaled by 4e9/1e9 to 8 s; t3 2e9 (its train_flops) in 3 s; t4 nothing
    assert (cost.naive_flops, cost.naive_seconds) == (9_000_000_000, pytest.approx(17.0))
    assert cost.flops_ratio == pytest.approx(0.5) and cost.seconds_ratio == pytest.approx(5.1 / 17)
    assert cost.line() == "spent 4.5e+09 FLOPs (0.50× naive 9e+09), 5.1 s (0.30× naive 17.0 s)"
    _, body = cost_section(load_run(tmp_path))
    assert "would cost 9e+09 FLOPs" in body and "the study spent 0.50× that (0.30× the seconds, 17.0 s)" in body


def test_a_run_without_trained_rows_has_no_cost_line(tmp_path: Path) -> None:
    results = ResultsFolder(locate(str(tmp_path / "results")))
    results.write_trial("t1", CFG, schema.FINISHED, summary={"train_flops": 10**9, "train_seconds": 1.0})
    trials = read_table(locate(str(tmp_path / "results")), "trials")
    assert against_naive(trials, read_table(locate(str(tmp_path / "results")), "trained")) is None


def test_a_study_whose_trials_all_failed_says_what_it_spent_without_a_ratio(tmp_path: Path) -> None:
    results = ResultsFolder(locate(str(tmp_path / "results")))
    results.write_trial("t1", CFG, schema.ERROR, error="RuntimeError: lost node")
    results.write_trained("t1", "k0", 2 * 10**9, 0.5, diverged=False)  # its teacher, stored before it failed
    trials = read_table(locate(str(tmp_path / "results")), "trials")
    cost = against_naive(trials, read_table(locate(str(tmp_path / "results")), "trained"))
    assert cost is not None and cost.flops_ratio is None
    assert cost.line() == "spent 2e+09 FLOPs, 0.5 s (no trial has a cost to compare with yet)"


SPEC = f"""
teacher = "plain4"
student = "plain2"
ta_candidates = [3]
methods = ["kd"]
epochs = 2
trials = 1
max_concurrent = 1
max_failures = 0
scheduler = "halving"
halving_min = 0.5
halving_factor = 2

[chain]
width = 0.25
train_size = 100
val_size = 50
lr = 0.05
lr_schedule = "constant"
device = "{DEVICE}"
"""


def test_kdstudy_run_prints_its_plan_before_and_its_cost_against_naive_after(
        ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    assert main(["run", "--spec", str(spec), "--storage", str(tmp_path / "runs"), "--name", "costs",
                 "--no-report"]) == 0
    out = capsys.readouterr().out.splitlines()
    plans = [line for line in out if line.startswith("plan: ")]
    costs = [line for line in out if line.startswith("cost: ")]
    assert len(plans) == 1 and plans[0].startswith("plan: 1 trial × 2 hops; naive 4 hop-epochs (")
    assert plans[0].endswith(" with halving at 1, 2 epochs and the teacher trained once (before TA hops shared on "
                             "a grid)")
    assert out.index(plans[0]) < out.index(costs[0])
    run = load_run(tmp_path / "runs" / "costs")
    expected = against_naive(run.trials, read_table(run.location / "results", "trained"))
    assert expected is not None and costs == [f"cost: {expected.line()}"]
    assert run.trials["rung_accs"].map(len).tolist() == [2]  # alone at its rung, so promoted: both rungs trained
