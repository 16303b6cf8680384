"""The study end to end on a real local Ray cluster: Parquet results written by the trials, a rerun, failures,
bad input, resource checks, and a retried trial resuming at its last finished hop."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from analysis.load import read_table
from cli import run_cmd
from cli.main import main
from runstore import schema
from runstore.storage import locate
from study.rows import trial_row
from study.runner import StudyOutcome, run_study
from study.spec import StudySpec, load_spec
from study.trainable import TrialContext, chain_trainable
from trainables.config import ChainConfig


def _table(run: Path, name: str) -> pa.Table:
    return pq.read_table(run / "results" / name)


def test_study_writes_every_table_with_exact_row_counts(tiny_study: Path) -> None:
    trials, hops = _table(tiny_study, "trials"), _table(tiny_study, "hops")
    epochs, predictions = _table(tiny_study, "epochs"), _table(tiny_study, "predictions")
    assert trials.num_rows == 5 == len(list((tiny_study / "results" / "trials").glob("*.parquet")))
    assert trials.column("status").to_pylist() == ["TERMINATED"] * 5
    chain_lengths = [2 + n if m != "nokd" else 1 for m, n in zip(trials.column("method").to_pylist(),
                                                                  trials.column("num_tas").to_pylist())]
    assert hops.num_rows == predictions.num_rows == sum(chain_lengths)
    trained = {h["key"] for h in hops.to_pylist() if not h["reused"]}
    assert sorted({e["key"] for e in epochs.to_pylist()}) == sorted(trained)  # one file per trained hop
    assert epochs.num_rows == len(trained) * 1  # one epoch per trained hop; reused hops train none
    assert trials.schema.field("ta_depths").type == pa.list_(pa.int64())
    assert predictions.schema.field("true_prob").type == pa.list_(pa.float16())
    assert len(set(trials.column("trial_id").to_pylist())) == 5


def test_the_teacher_is_trained_once_per_study(tiny_study: Path) -> None:
    teachers = [h for h in _table(tiny_study, "hops").to_pylist() if h["role"] == "teacher"]
    assert len({h["key"] for h in teachers}) == 1 and sum(not h["reused"] for h in teachers) == 1


def test_warm_start_comparison_is_in_the_data(tiny_study: Path) -> None:
    rows = _table(tiny_study, "trials").to_pylist()
    full_chain = {(r["method"], tuple(r["ta_depths"])) for r in rows}
    assert {("takd", (4, 3)), ("dgkd", (4, 3)), ("ensemble", (4, 3))} <= full_chain
    weightings = {r["weighting"] for r in rows if r["method"] == "ensemble" and r["ta_depths"] == [4, 3]}
    assert {"mean", "learned"} <= weightings
    assert all(r["student_val_acc"] is not None and r["train_flops"] > 0 for r in rows)


def test_every_row_is_built_from_its_config(tiny_study: Path) -> None:
    for row in _table(tiny_study, "trials").to_pylist():
        settings = {"nokd": set(), "kd": {"temperature", "alpha"}, "takd": {"temperature", "alpha"},
                    "dgkd": {"temperature", "alpha", "drop"},
                    "ensemble": {"temperature", "alpha", "weighting", "space"}}[row["method"]]
        for name in ("temperature", "alpha", "drop", "weighting", "space"):
            assert (row[name] is not None) == (name in settings), (row["method"], name)
        assert row["group"] and row["config_label"].startswith(row["method"])


def test_a_second_client_reads_the_same_rows(tiny_study: Path) -> None:
    results = tiny_study / "results"
    con = duckdb.connect()
    trials = con.execute(f"select count(*), count(distinct trial_id) from '{results}/trials/*.parquet'").fetchone()
    assert trials == (5, 5)
    joined = con.execute(f"""
        select count(*) from '{results}/hops/*.parquet' h join '{results}/trials/*.parquet' t using (trial_id)
        where h.role = 'student' and h.val_acc = t.student_val_acc""").fetchone()[0]
    assert joined == 5
    depth_type = con.execute(f"select typeof(ta_depths) from '{results}/trials/*.parquet' limit 1").fetchone()[0]
    assert depth_type == "BIGINT[]"


def test_running_a_finished_study_again_trains_nothing(tiny_study: Path, spec_file: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    files = {p: p.stat().st_mtime_ns for p in (tiny_study / "results").rglob("*.parquet")}
    code = main(["run", "--spec", str(spec_file), "--storage", str(tiny_study.parent), "--name", "tiny",
                 "--no-report"])
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in (tiny_study / "results").rglob("*.parquet")} == files
    assert "5 TERMINATED" in capsys.readouterr().out
    assert (tiny_study / "results" / "optuna_journal.log").stat().st_size > 0


# Ray workers cannot import this test module: ship the trainables below by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def failing_for_dgkd(config: dict[str, Any], context: TrialContext) -> None:
    """dgkd raises; the others share the teacher, and the one that trains it waits for the other to wait on it."""
    if config["method"] == "dgkd":
        raise RuntimeError("injected failure for dgkd")
    with teacher_trained_while_another_trial_waits_for_it(Path(context.run_uri) / "asked"):
        chain_trainable(config, context)


@contextlib.contextmanager
def teacher_trained_while_another_trial_waits_for_it(asked: Path) -> Iterator[None]:
    """Each trial leaves a file in `asked` as it asks for a hop's claim; the one holding the teacher's claim starts
    training it only once another trial has asked too (or after 60 s), and a second later, so that the other is
    then polling the claim: a wait of over a second, whatever order Ray starts the trials in."""
    from study.claims import StorageClaims
    from trainables.chain import ChainTrainer

    asked.mkdir(exist_ok=True)
    hold, train = StorageClaims.hold, ChainTrainer._train

    def hold_once_asked(self: StorageClaims, key: str) -> Any:
        (asked / f"{key}.{uuid.uuid4().hex}").touch()
        return hold(self, key)

    def train_once_another_waits(self: ChainTrainer, plan: Any, *args: Any) -> Any:
        if plan.index == 0:
            deadline = time.monotonic() + 60
            while len(list(asked.glob(f"{plan.key}.*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
        return train(self, plan, *args)

    StorageClaims.hold, ChainTrainer._train = hold_once_asked, train_once_another_waits
    try:
        yield
    finally:  # a reused worker runs the next trial unpatched
        StorageClaims.hold, ChainTrainer._train = hold, train


def test_a_failing_trial_is_recorded_and_the_others_finish(ray_cluster: str, spec_file: Path,
                                                           tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "failing", "trials": 3})
    outcome = run_study(spec, trainable=failing_for_dgkd)
    rows = {r["method"]: r for r in _table(tmp_path / "failing", "trials").to_pylist()}
    assert rows["dgkd"]["status"] == "ERROR"
    assert rows["dgkd"]["error"] == "RuntimeError: injected failure for dgkd"
    assert rows["dgkd"]["ta_depths"] == [4, 3] and rows["dgkd"]["drop"] == 1  # the config, though it never ran
    assert rows["takd"]["status"] == rows["ensemble"]["status"] == "TERMINATED"
    assert outcome.errors == ["RuntimeError: injected failure for dgkd"]
    # the trial that waited for the other's teacher is charged the trainer's seconds for it, and its wait apart
    hops = _table(tmp_path / "failing", "hops").to_pylist()
    trainer, waiter = sorted((h for h in hops if h["role"] == "teacher"), key=lambda hop: hop["reused"])
    assert (trainer["reused"], waiter["reused"]) == (False, True) and waiter["wait_seconds"] > 1.0
    assert waiter["train_seconds"] == trainer["train_seconds"] and waiter["spent_seconds"] == 0
    for row in (rows["takd"], rows["ensemble"]):
        chain = [h for h in hops if h["trial_id"] == row["trial_id"]]
        assert row["train_seconds"] == pytest.approx(sum(h["train_seconds"] for h in chain))
        assert row["wait_seconds"] == pytest.approx(sum(h["wait_seconds"] for h in chain))
        assert row["spent_seconds"] <= row["train_seconds"] and row["spent_flops"] <= row["train_flops"]


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
    (["--cpus-per-trial", "64"], "cpus_per_trial"),  # more than this machine has: it would wait forever
    (["--gpus-per-trial", "4"], "gpus_per_trial"),
    (["--storage", "s3://"], "storage"),
]


@pytest.mark.parametrize("flags, field", BAD_INPUT, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_INPUT)])
def test_bad_flags_exit_2_naming_the_field_and_create_nothing(flags: list[str], field: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("study.runner.run_study", _must_not_run)
    storage = tmp_path / "store"
    assert main(["run", "--storage", str(storage), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kdstudy run: {field}: ") and "\n" not in err
    assert not storage.exists()


def test_more_than_the_clusters_largest_node_exits_2(ray_cluster: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("study.runner.run_study", _must_not_run)
    flags = ["--address", ray_cluster, "--cpus-per-trial", "3"]
    assert main(["run", "--storage", str(tmp_path / "store"), *flags]) == 2
    assert capsys.readouterr().err.strip() == \
        "kdstudy run: cpus_per_trial: 3 per trial, but the largest node of the cluster has 2 CPUs"
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("content, field", [
    ("colour = 'red'", "colour"),
    ("trials = 'many'", "trials"),
    ("[chain]\nalpha = 0.3", "chain.alpha"),
    ("[chain]\nwidth = -1", "chain.width"),
    ("[chain]\nwidth = 1e9", "chain.width"),
    ("[chain]\nbogus = 1", "chain.bogus"),
    ("[search]\ntemperature = [0, 5]", "search.temperature"),
    ("[search]\nweighting = ['median']", "search.weighting"),
    ("[search]\nbeta = [0, 1]", "search.beta"),
    ("methods = ['takd']\n[search]\nweighting = ['mean']", "search.weighting"),
    ("temperature_range = [5, 1]", "search.temperature"),
    ("trials = ", "spec"),
])
def test_bad_spec_files_exit_2(content: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("study.runner.run_study", _must_not_run)
    spec = tmp_path / "bad.toml"
    spec.write_text(content)
    assert main(["run", "--spec", str(spec), "--storage", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kdstudy run: {field}") and err.count("\n") == 1
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


def crash_once_after_the_first_hop(config: dict[str, Any], context: TrialContext) -> None:
    """Dies after the first hop the first time it runs (a marker file remembers); the retry must take that hop
    from the study's model store, where the first attempt put it."""
    from study import trainable

    marker = Path(context.run_uri) / "crashed-once"
    if not marker.exists():
        report = trainable.TrialReporter.__call__

        def report_then_crash(self: trainable.TrialReporter, event: dict[str, Any]) -> None:
            report(self, event)
            if event["event"] == "hop":
                trainable.TrialReporter.__call__ = report  # the retry may run in this very (reused) worker
                marker.write_text("")
                raise RuntimeError("worker lost after the first hop")

        trainable.TrialReporter.__call__ = report_then_crash
    chain_trainable(config, context)


def test_a_retried_trial_resumes_at_its_last_finished_hop(ray_cluster: str, spec_file: Path,
                                                          tmp_path: Path) -> None:
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "retry", "trials": 1, "methods": "kd",
                                 "max_failures": 1})
    outcome = run_study(spec, trainable=crash_once_after_the_first_hop)
    assert outcome.errors == [] and (tmp_path / "retry" / "crashed-once").exists()
    trial = _table(tmp_path / "retry", "trials").to_pylist()[0]
    assert trial["status"] == "TERMINATED"
    hops = _table(tmp_path / "retry", "hops").to_pylist()
    assert [h["reused"] for h in hops] == [True, False]  # the teacher came back from the store
    epochs = [(e["hop"], e["epoch"]) for e in _table(tmp_path / "retry", "epochs").to_pylist()]
    assert sorted(epochs) == [(0, 1), (1, 1)]  # the teacher's epoch is recorded once, not twice
    # the teacher the crashed attempt trained is in what the study spent, though the trial's row reuses it
    trained = _table(tmp_path / "retry", "trained").to_pylist()
    assert sorted(t["key"] for t in trained) == sorted(h["key"] for h in hops)
    assert sum(t["train_flops"] for t in trained) == trial["train_flops"] > trial["spent_flops"]


def test_every_trial_failing_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # How a session ends when no trial finished; trials that raise, through a real driver to its console, are
    # tests/test_survival.py's
    spec = StudySpec(storage=str(tmp_path), name="broken", trials=2)
    failed = [trial_row(f"t{i}", ChainConfig(method=method, ta_depths=(4,)), schema.ERROR,
                        error=f"RuntimeError: injected failure for {method}")
              for i, method in enumerate(("takd", "dgkd"))]
    outcome = StudyOutcome(2, trials=pd.DataFrame(failed), errors=[row["error"] for row in failed])
    assert run_cmd.finish(outcome, spec, report=False) == 1
    captured = capsys.readouterr()
    assert "kdstudy run: no trial finished its chain (2 ERROR); the errors are shown above" in captured.err


def test_a_session_that_ended_short_of_its_trials_says_so_and_exits_1(tiny_study: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    spec = StudySpec(name=tiny_study.name, storage=str(tiny_study.parent), trials=6)
    trials = read_table(locate(str(tiny_study)) / "results", "trials")
    assert len(trials) == 5
    outcome = StudyOutcome(6, trials=trials)  # Tune ended a trial without telling the recorder
    assert run_cmd.finish(outcome, spec, report=False) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("kdstudy run: the study has 5 of 6 trials: 1 without a result; run the same "
                                    "command to retry them")
    assert "best configuration" in captured.out  # what did finish is still shown


def test_tune_results_carry_only_a_few_small_scalars(tiny_study: Path) -> None:
    import json

    state = next((tiny_study / "tune").glob("*/experiment_state-*.json"))
    trials = json.loads(state.read_text())["trial_data"]
    assert len(trials) == 5
    for _, metadata in trials:
        last = json.loads(metadata)["last_result"]
        assert len(json.dumps(last)) <= 2048
        ours = {k for k in last if k not in ("config", "experiment_tag") and not k.startswith(("time", "iter"))}
        assert {"student_val_acc", "outcome"} <= ours and "chain_record" not in ours
