"""A study's rules on the real cluster: diverged chains, growing a study, changed settings, distinct
configurations, and store entries that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest

from analysis.report import write_report
from cli import run_cmd
from cli.main import main
from runstore.storage import locate
from study.faults import Faults
from study.hop_store import RESUME_SUFFIX, RunHopStore
from study.runner import run_study
from study.spec import load_spec
from tests.journals import run_journal
from trainables import ChainConfig, HopDiverged, StoredHop, train_chain

BASE = """
teacher = "plain4"
student = "plain2"
ta_candidates = []
methods = ["nokd", "kd"]
epochs = 1
max_concurrent = 2
max_failures = 0
{extra}
[chain]
width = 0.25
train_size = 300
val_size = 100
lr = {lr}
batch_size = {batch}
"""


def _spec(tmp_path: Path, extra: str = "", lr: float = 0.05, batch: int = 128) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(BASE.format(extra=extra, lr=lr, batch=batch))
    return path


def test_a_diverging_trial_fails_alone_and_trains_nothing_below(ray_cluster: str, tmp_path: Path) -> None:
    # T = 20 and α = 1 at lr 0.5 blow up the KD student (its logit gradients are T times larger) for seeds 1, 2, 4
    # and 5; nokd, from labels at the same lr, trains. At seeds 0 and 3 the teacher learns nothing at that lr, and
    # a student taught a uniform distribution does not blow up.
    spec = load_spec(_spec(tmp_path, "trials = 2\nseed = 1\ntemperature_range = [20, 20]\nalpha_range = [1, 1]\n",
                           lr=0.5, batch=32), {"storage": str(tmp_path), "name": "diverging", "epochs": 2})
    outcome = run_study(spec)
    assert run_cmd.finish(outcome, spec, report=False) == 0  # the other trial finished: the study goes on
    run = tmp_path / "diverging"
    rows = {r["method"]: r for r in pq.read_table(run / "results" / "trials").to_pylist()}
    assert rows["nokd"]["status"] == "TERMINATED"
    kd = rows["kd"]
    assert kd["status"] == "DIVERGED" and kd["student_val_acc"] is None
    assert kd["error"].startswith("diverged: hop 1 (student plain2), epoch 1: training loss ")
    hops = [h for h in pq.read_table(run / "results" / "hops").to_pylist() if h["trial_id"] == kd["trial_id"]]
    assert [h["role"] for h in hops] == ["teacher"]  # no lower hop was trained
    stored = {p.stem for p in (run / "models").glob("*.pt") if not p.name.endswith(RESUME_SUFFIX)}
    assert len(stored) == 2  # the teacher and nokd's student; nothing diverged was stored
    states = {t.user_attrs["trial_id"]: t.state for t in run_journal(run).trials}
    assert states[kd["trial_id"]] == optuna.trial.TrialState.FAIL  # TPE learns the region is bad
    summary = (write_report(str(run)).path + "/summary.md")
    text = Path(summary).read_text()
    assert "| DIVERGED | 1 |" in text and "1 trial diverged" in text


def test_a_larger_trials_grows_the_study_from_its_journal(ray_cluster: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    spec_file = _spec(tmp_path, "trials = 2\n")
    argv = ["run", "--spec", str(spec_file), "--storage", str(tmp_path), "--name", "growing", "--no-report"]
    assert main(argv) == 0
    run = tmp_path / "growing"
    first = {p.name for p in (run / "results" / "trials").iterdir()}
    assert len(first) == 2 and len(run_journal(run).trials) == 2

    assert main([*argv, "--trials", "4"]) == 0
    assert "growing the study from 2 to 4 trials" in capsys.readouterr().out
    assert {p.name for p in (run / "results" / "trials").iterdir()} > first  # earlier trials kept, not re-run
    trials = [t for t in run_journal(run).trials if "trial_id" in t.user_attrs]  # not TPE's repeated proposals
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # TPE sampled the new trials from the journal that holds the first two: they are numbered after them
    old = [t.number for t in trials if t.user_attrs["trial_id"] + ".parquet" in first]
    new = [t.number for t in trials if t.user_attrs["trial_id"] + ".parquet" not in first]
    assert old == [0, 1] and len(new) == 2 and min(new) > max(old)


def test_any_other_changed_setting_exits_2_listing_the_differences(ray_cluster: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    spec_file = _spec(tmp_path, "trials = 1\n")
    argv = ["run", "--spec", str(spec_file), "--storage", str(tmp_path), "--name", "fixed", "--methods", "nokd",
            "--no-report"]
    assert main(argv) == 0
    before = sorted(p.name for p in (tmp_path / "fixed").rglob("*"))
    capsys.readouterr()
    assert main([*argv, "--epochs", "3", "--seed", "7", "--max-concurrent", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"kdstudy run: settings: {tmp_path / 'fixed'} was started with other settings (epochs 1 → 3, "
                   "seed 0 → 7); a study can only grow (a larger --trials); use another --name for new settings")
    assert sorted(p.name for p in (tmp_path / "fixed").rglob("*")) == before  # nothing written


def test_known_configurations_are_not_trained_twice_and_an_exhausted_space_ends_the_study(
        ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # nokd, and kd at one fixed T and α: the space holds two chains, whatever TPE proposes
    spec_file = _spec(tmp_path, "trials = 5\ntemperature_range = [4, 4]\nalpha_range = [0.5, 0.5]\n")
    assert main(["run", "--spec", str(spec_file), "--storage", str(tmp_path), "--name", "small", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "the study has 2 of the 5 trials asked for: the search space holds only 2 distinct configurations" in out
    run = tmp_path / "small"
    rows = pq.read_table(run / "results" / "trials").to_pylist()
    assert sorted(r["method"] for r in rows) == ["kd", "nokd"]
    trials = run_journal(run).trials
    by_id = {t.user_attrs["trial_id"]: t for t in trials if "trial_id" in t.user_attrs}
    assert len(by_id) == 2
    for duplicate in (t for t in trials if "duplicate_of" in t.user_attrs):  # Optuna got the known value
        original = by_id[duplicate.user_attrs["duplicate_of"]]
        assert duplicate.params == original.params and duplicate.value == original.value


def test_an_unreadable_store_entry_is_retrained_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              ) -> None:
    cfg = ChainConfig.from_flat({"method": "nokd", "train_size": 200, "val_size": 50, "width": 0.25, "epochs": 1})
    store = RunHopStore(locate(str(tmp_path / "models")))
    first = train_chain(cfg, store=store)
    entry = tmp_path / "models" / f"{first.student.key}.pt"
    whole = entry.read_bytes()
    for broken in (whole[: len(whole) // 2], b"not a stored hop"):  # a truncated upload, a foreign file
        entry.write_bytes(broken)
        caplog.clear()
        with caplog.at_level("WARNING", logger="kdstudy"):
            assert store.get(first.student.key) is None
        assert len(caplog.records) == 1 and "unreadable" in caplog.records[0].getMessage()
        again = train_chain(cfg, store=store)
        assert not again.student.reused and again.student.val_acc == first.student.val_acc
        assert isinstance(store.get(first.student.key), StoredHop)  # replaced by a whole entry


def test_a_duplicate_suggestion_gets_the_known_value_and_another_is_drawn() -> None:
    from optuna.trial import TrialState

    from study.search import Known, Ledger, StudySearch
    from study.spec import StudySpec

    spec = StudySpec(methods=("nokd", "kd"), ta_candidates=(), teacher="plain4",
                     search={"temperature": (4.0, 4.0), "alpha": (0.5, 0.5)})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    ledger = Ledger(spec)
    ledger.add(ledger.key({"method": "nokd"}), Known("finished", TrialState.COMPLETE, [0.9]))
    study.enqueue_trial({"method": "nokd"})  # the first proposal is the configuration already trained
    searcher = StudySearch(spec, study, ledger, resume=[])
    config = searcher.suggest("tune-1")
    assert config["method"] == "kd"  # nokd was not handed out again; the next proposal was
    duplicate = study.trials[0]
    assert duplicate.user_attrs == {"duplicate_of": "finished"}
    assert duplicate.state == TrialState.COMPLETE and duplicate.value == 0.9
    assert searcher.suggest("tune-2") == StudySearch.FINISHED  # both configurations are in the study now


def test_an_invalid_draw_is_told_fail_and_another_is_drawn_instead_of_ending_the_session() -> None:
    from optuna.trial import TrialState

    from study.search import Ledger, StudySearch
    from study.spec import StudySpec

    # built without the spec's check (`space.invalid_draw` refuses this range): the searcher's own safety net
    spec = StudySpec(methods=("dgkd",), ta_candidates=(8, 6, 4), search={"drop": (2, 2)})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    searcher = StudySearch(spec, study, Ledger(spec), resume=[])
    configs = [searcher.suggest(f"tune-{i}") for i in range(8)]
    assert all(len(config["ta_depths"]) >= 2 for config in configs)  # drop 2 needs three teachers or more
    invalid = [t for t in study.trials if "invalid" in t.user_attrs]
    assert invalid and all(t.state == TrialState.FAIL and len(t.params["ta_depths"].split("-")) == 1
                           for t in invalid)
    assert invalid[0].user_attrs["invalid"].startswith("drop: expected fewer than the student's 2 teacher(s)")


def test_a_diverging_hop_shared_by_two_trials_is_trained_once_and_remembered(
        ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # lr 5 blows up the teacher both kd trials need: the first trial to claim it trains it to the blow-up and
    # leaves a marker; the other ends the same way at once, without training it again
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv("KDSTUDY_FAULT", "diverged-stored:count")
    monkeypatch.setenv("KDSTUDY_FAULT_DIR", str(faults))
    spec = load_spec(_spec(tmp_path, "trials = 2\nalpha_range = [0.3, 0.7]\n", lr=5.0, batch=32),
                     {"storage": str(tmp_path), "name": "shared-blowup", "methods": "kd"})
    outcome = run_study(spec)
    run = tmp_path / "shared-blowup"
    rows = pq.read_table(run / "results" / "trials").to_pylist()
    assert [r["status"] for r in rows] == ["DIVERGED", "DIVERGED"] and outcome.ended == 2
    assert rows[0]["error"] == rows[1]["error"]
    assert rows[0]["error"].startswith("diverged: hop 0 (teacher plain4), epoch 1: training loss ")
    trained = (faults / "diverged-stored.count").read_text().splitlines()
    assert len(trained) == 1  # one trial trained it; the other read the marker
    assert [p.name for p in (run / "models").iterdir()] == [f"{json.loads(trained[0])['detail']}.diverged.json"]


def test_a_remembered_divergence_ends_the_chain_with_the_same_line_without_training(tmp_path: Path) -> None:
    cfg = ChainConfig.from_flat({"method": "kd", "teacher": "plain4", "train_size": 300, "val_size": 100,
                                 "width": 0.25, "epochs": 1, "lr": 5.0, "batch_size": 32})
    faults = tmp_path / "faults"
    faults.mkdir()
    store = RunHopStore(locate(str(tmp_path / "models")), faults=Faults("diverged-stored:count", str(faults)))
    with pytest.raises(HopDiverged) as first:
        train_chain(cfg, store=store)
    with pytest.raises(HopDiverged) as again:
        train_chain(cfg, store=store)
    assert str(again.value) == str(first.value) and again.value.epoch == first.value.epoch == 1
    assert len((faults / "diverged-stored.count").read_text().splitlines()) == 1
