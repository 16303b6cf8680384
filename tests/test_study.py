"""The study end to end on a real local Ray cluster: Parquet results, resume, failures and bad input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from study import run_cmd
from study.cli import main
from study.runner import run_study
from study.spec import load_spec
from study.trainable import chain_trainable

@pytest.fixture(scope="module")
def finished_study(tiny_study: Path) -> Path:
    return tiny_study


def _table(run: Path, name: str) -> pa.Table:
    return pq.read_table(run / "results" / f"{name}.parquet")


def test_study_writes_every_table_with_exact_row_counts(finished_study: Path) -> None:
    trials, hops = _table(finished_study, "trials"), _table(finished_study, "hops")
    epochs, predictions = _table(finished_study, "epochs"), _table(finished_study, "predictions")
    assert trials.num_rows == 5
    assert trials.column("status").to_pylist() == ["TERMINATED"] * 5
    chain_lengths = [2 + n if m != "nokd" else 1 for m, n in zip(trials.column("method").to_pylist(),
                                                                  trials.column("num_tas").to_pylist())]
    assert hops.num_rows == predictions.num_rows == sum(chain_lengths)
    trained_here = sum(not r for r in hops.column("reused").to_pylist())
    assert epochs.num_rows == trained_here * 1  # one epoch per trained hop; reused hops train none
    assert trials.schema.field("ta_depths").type == pa.list_(pa.int64())
    assert predictions.schema.field("true_prob").type == pa.list_(pa.float16())
    assert len(set(trials.column("trial_id").to_pylist())) == 5


def test_warm_start_comparison_is_in_the_data(finished_study: Path) -> None:
    rows = _table(finished_study, "trials").to_pylist()
    full_chain = {(r["method"], tuple(r["ta_depths"])) for r in rows}
    assert {("takd", (4, 3)), ("dgkd", (4, 3)), ("ensemble", (4, 3))} <= full_chain
    weightings = {r["weighting"] for r in rows if r["method"] == "ensemble" and r["ta_depths"] == [4, 3]}
    assert {"mean", "learned"} <= weightings
    assert all(r["student_val_acc"] is not None and r["train_flops"] > 0 for r in rows)


def test_a_second_client_reads_the_same_rows(finished_study: Path) -> None:
    results = finished_study / "results"
    con = duckdb.connect()
    trials = con.execute(f"select count(*), count(distinct trial_id) from '{results}/trials.parquet'").fetchone()
    assert trials == (5, 5)
    joined = con.execute(f"""
        select count(*) from '{results}/hops.parquet' h join '{results}/trials.parquet' t using (trial_id)
        where h.role = 'student' and h.val_acc = t.student_val_acc""").fetchone()[0]
    assert joined == 5
    depth_type = con.execute(f"select typeof(ta_depths) from '{results}/trials.parquet' limit 1").fetchone()[0]
    assert depth_type == "BIGINT[]"


def test_running_again_resumes_instead_of_starting_over(finished_study: Path, spec_file: Path) -> None:
    before = _table(finished_study, "trials").column("trial_id").to_pylist()
    code = main(["run", "--spec", str(spec_file), "--storage", str(finished_study.parent), "--name", "tiny",
                 "--no-report"])
    assert code == 0
    assert sorted(_table(finished_study, "trials").column("trial_id").to_pylist()) == sorted(before)
    assert (finished_study / "results" / "optuna_journal.log").stat().st_size > 0


# Ray workers cannot import this test module: ship the trainables below by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def failing_for_dgkd(config: dict[str, Any], base: dict[str, Any], shared_store: str | None = None) -> None:
    if config["method"] == "dgkd":
        raise RuntimeError("injected failure for dgkd")
    chain_trainable(config, base, shared_store)


def always_failing(config: dict[str, Any], base: dict[str, Any], shared_store: str | None = None) -> None:
    raise RuntimeError(f"injected failure for {config['method']}")


def test_a_failing_trial_is_recorded_and_the_others_finish(ray_cluster: None, spec_file: Path,
                                                           tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "failing", "trials": 3})
    outcome = run_study(spec, trainable=failing_for_dgkd)
    rows = {r["method"]: r for r in _table(tmp_path / "failing", "trials").to_pylist()}
    assert rows["dgkd"]["status"] == "ERROR"
    assert rows["dgkd"]["error"] == "RuntimeError: injected failure for dgkd"
    assert rows["dgkd"]["ta_depths"] == [4, 3]  # the config is recorded even though the chain never ran
    assert rows["takd"]["status"] == rows["ensemble"]["status"] == "TERMINATED"
    assert len(outcome.errors) == 1


def test_every_trial_failing_exits_non_zero_with_the_first_error(ray_cluster: None, spec_file: Path,
                                                                 tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "broken", "trials": 2})
    outcome = run_study(spec, trainable=always_failing)
    assert run_cmd.finish(outcome, spec, report=False) == 1
    assert "injected failure" in capsys.readouterr().err


BAD_INPUT = [
    (["--trials", "0"], "trials"),
    (["--teacher", "vgg"], "teacher"),
    (["--ta-candidates", "12,4"], "ta_candidates"),
    (["--methods", "takd,magic"], "methods"),
    (["--dataset", "imagenet"], "dataset"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "data_dir"),
    (["--objectives", "student_val_acc,latency"], "objectives"),
    (["--scheduler", "asha", "--objectives", "student_val_acc,train_flops"], "scheduler"),
    (["--scheduler", "hyperband"], "scheduler"),
    (["--cpus-per-trial", "0"], "cpus_per_trial"),
]


@pytest.mark.parametrize("flags, field", BAD_INPUT, ids=[f for _, f in BAD_INPUT])
def test_bad_flags_exit_2_naming_the_field_and_create_nothing(flags: list[str], field: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("study.runner.run_study", _must_not_run)
    storage = tmp_path / "store"
    assert main(["run", "--storage", str(storage), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kdstudy run: {field}: ") and "\n" not in err
    assert not storage.exists()


@pytest.mark.parametrize("content, field", [
    ("colour = 'red'", "colour"),
    ("trials = 'many'", "trials"),
    ("[chain]\nalpha = 0.3", "chain.alpha"),
    ("[chain]\nwidth = -1", "chain.width"),
    ("[chain]\nbogus = 1", "chain.bogus"),
    ("trials = ", "spec"),
])
def test_bad_spec_files_exit_2(content: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("study.runner.run_study", _must_not_run)
    spec = tmp_path / "bad.toml"
    spec.write_text(content)
    assert main(["run", "--spec", str(spec), "--storage", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err.startswith(f"kdstudy run: {field}")
    assert not (tmp_path / "store").exists()


def test_unwritable_storage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("study.runner.run_study", _must_not_run)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["run", "--storage", str(blocker / "runs")]) == 2
    assert capsys.readouterr().err.startswith("kdstudy run: storage: ")


def _must_not_run(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the study started despite bad input")


def test_argparse_type_errors_also_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--trials", "many"])
    assert exit_info.value.code == 2
    assert "--trials" in capsys.readouterr().err


def crash_once_after_the_first_hop(config: dict[str, Any], base: dict[str, Any],
                                   shared_store: str | None = None) -> None:
    """Dies after the first hop unless resuming from a checkpoint; trains without the shared store, so any hop
    the retry does not train can only have come from the trial's own checkpoint."""
    from ray import tune

    from study import trainable

    if tune.get_checkpoint() is None:
        report = trainable.TuneReporter.__call__

        def report_then_crash(self: trainable.TuneReporter, event: dict[str, Any]) -> None:
            report(self, event)
            if event["event"] == "hop":
                raise RuntimeError("worker lost after the first hop")

        trainable.TuneReporter.__call__ = report_then_crash  # this worker process only
    chain_trainable(config, base, shared_store=None)


def test_a_retried_trial_resumes_at_its_last_finished_hop(ray_cluster: None, spec_file: Path,
                                                          tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "retry", "trials": 1, "methods": "takd",
                                 "max_failures": 1})
    outcome = run_study(spec, trainable=crash_once_after_the_first_hop)
    assert outcome.errors == []
    trial = _table(tmp_path / "retry", "trials").to_pylist()[0]
    assert trial["status"] == "TERMINATED"
    hops = _table(tmp_path / "retry", "hops").to_pylist()
    assert [h["reused"] for h in hops] == [True, False, False, False]  # the teacher came back from the checkpoint
    epochs = [(e["hop"], e["epoch"]) for e in _table(tmp_path / "retry", "epochs").to_pylist()]
    assert sorted(epochs) == [(h, 1) for h in range(4)]  # the teacher's epoch is recorded once, not twice
