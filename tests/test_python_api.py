"""The public Python API (`study.api`): the README's Python examples run as they stand — a chain, a study through
`study.run`, a 4-trial Tuner of Tune's own random search and ASHA through `study.tune_trainable` (no Optuna), and
`load_run` and the report on its results — and bad input through the API is one InputError naming its field."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.search.sample import Domain

import study
from analysis.load import is_missing, load_run, read_table
from runstore import schema
from study.api import TrialRows, drawn_chain
from study.spec import StudySpec
from study.space import chain_config
from tests.analysis_fixtures import ROOT
from trainables import ChainConfig, InputError

SEARCHED = StudySpec(dataset="digits", teacher="plain4", ta_candidates=(3,), methods=("nokd", "kd", "takd", "dgkd",
                     "ensemble"), epochs=2, chain={"width": 0.25, "train_size": 200})


def readme_examples() -> list[str]:
    """The fenced Python blocks of the README's "Python API" section, in order."""
    section = re.search(r"\n## Python API\n(.*?)\n## ", (ROOT / "README.md").read_text(), flags=re.S)
    assert section, "the README's Python API section is gone"
    return re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S)


@pytest.fixture(scope="module")
def readme(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The README's examples run once, in order, in one namespace, from a folder of their own (their `runs`)."""
    folder, names = tmp_path_factory.mktemp("readme"), {}
    before = Path.cwd()
    os.chdir(folder)
    try:
        for block in readme_examples():
            exec(compile(block, "README.md (Python API)", "exec"), names)  # noqa: S102  (the README's own code)
    finally:
        os.chdir(before)
    return folder, names


def test_the_readme_has_the_four_examples() -> None:
    blocks = readme_examples()
    assert len(blocks) == 4
    assert "train_chain" in blocks[0] and "study.run" in blocks[1] and "tune.Tuner" in blocks[2]
    assert "load_run" in blocks[3] and "write_report" in blocks[3]


def test_a_chain_in_a_notebook(readme: tuple[Path, dict[str, Any]]) -> None:
    _, names = readme
    chain = names["chain"]
    assert [hop.arch for hop in chain.hops] == ["plain4", "plain3", "plain2"]
    assert all(0 <= hop.val_acc <= 1 for hop in chain.hops) and chain.train_flops > 0


def test_a_study_run_from_python(readme: tuple[Path, dict[str, Any]]) -> None:
    folder, names = readme
    results = names["results"]
    assert Path(results.path) == folder / "runs" / "notebook"
    assert (not results.interrupted and results.missing == 0 and not results.errors
            and results.exhausted is None)
    assert len(results.trials) == 3 and set(results.trials["status"]) <= set(schema.FINAL)
    assert sorted(results.trials["trial_id"]) == sorted(load_run(results.path).trials["trial_id"])
    assert names["best"] == ChainConfig.from_flat(results.best_config)
    assert (folder / "runs" / "notebook" / "study.json").exists()  # the CLI's study: it resumes and grows


def test_a_study_run_again_from_python_trains_nothing(readme: tuple[Path, dict[str, Any]]) -> None:
    folder, names = readme
    results = names["results"]
    files = {p: p.stat().st_mtime_ns for p in Path(results.path, "results").rglob("*.parquet")}
    again = study.run(dataclasses.replace(names["spec"], storage=str(folder / "runs")))
    assert again.missing == 0 and len(again.trials) == 3
    assert {p: p.stat().st_mtime_ns for p in Path(results.path, "results").rglob("*.parquet")} == files


def test_own_tuner_with_random_search_and_asha_writes_the_studys_rows(readme: tuple[Path, dict[str, Any]]) -> None:
    folder, names = readme
    grid, run = names["grid"], load_run(folder / "runs" / "asha")
    assert len(grid) == 4 and not grid.errors
    tune_ids = {result.metrics["trial_id"] for result in grid}
    trials = run.trials.set_index("trial_id")
    assert set(trials.index) == tune_ids  # every trial has its row: the stopped ones from tune_callback
    statuses = {result.metrics["trial_id"]: trials.at[result.metrics["trial_id"], "status"] for result in grid}
    for result in grid:
        finished = result.metrics.get("outcome") == "finished"
        assert statuses[result.metrics["trial_id"]] == (schema.FINISHED if finished else schema.STOPPED)
        assert {"student_val_acc", "train_flops", "student_epoch"} <= set(result.metrics)
        assert result.metrics["student_val_acc"] == pytest.approx(trials.at[result.metrics["trial_id"],
                                                                             "student_val_acc"])
    assert schema.FINISHED in statuses.values()
    finished = trials[trials["status"] == schema.FINISHED]
    for _, row in finished.iterrows():  # the drawn method's own settings; the others were drawn and ignored
        assert is_missing(row["drop"]) == (row["method"] != "dgkd")
        assert (len(row["ta_depths"]) > 0) == (row["method"] != "kd")
    teacher = run.hops.loc[run.hops["role"] == "teacher", "key"].unique()
    trained = read_table(run.location / "results", "trained")
    assert len(teacher) == 1 and (trained["key"] == teacher[0]).sum() == 1  # one model store and claim board
    assert not (folder / "runs" / "asha" / "results" / "optuna_journal.log").exists()  # Tune's own search only
    report = folder / "runs" / "asha" / "report"
    assert (report / "summary.md").exists() and (report / "best_config.json").exists()


def test_param_space_draws_only_valid_chains_from_the_studys_search() -> None:
    space = study.param_space(SEARCHED)
    domains = {name: value for name, value in space.items() if isinstance(value, Domain)}
    assert set(domains) == {"method", "ta_depths", "temperature", "alpha", "drop", "weighting", "space"}
    assert space["train_size"] == 200 and space["fit_size"] == 0.05  # a learned ensemble can be drawn
    alpha = SEARCHED.searched(next(p for p in ChainConfig(method="kd").method_class.params if p.name == "alpha"))
    methods = set()
    for draw in range(200):
        config = {name: value.sample() if isinstance(value, Domain) else value for name, value in space.items()}
        cfg = chain_config({}, drawn_chain(config))
        methods.add(cfg.method)
        assert set(cfg.params) == {p.name for p in cfg.method_class.params}
        if "alpha" in cfg.params:
            assert alpha.contains(cfg.params["alpha"])  # the study's very grid points
    assert methods == set(SEARCHED.methods)


def test_tune_callback_writes_the_rows_a_trial_cannot(tmp_path: Path) -> None:
    """A stopped trial's row; nothing for a trial that wrote its own, or that failed on a config that is no chain
    (Tune shows its error). A failed trial's ERROR row: the test below, through a real Tuner."""
    rows = study.tune_callback(storage=str(tmp_path), name="mine")
    config = {"dataset": "digits", "teacher": "plain4", "student": "plain2", "method": "kd", "drop": 1,
              "ta_depths": "3", "temperature": 2.0, "alpha": 0.5, "epochs": 2}
    stopped, finished = (Trial("t", config=config, trial_id=f"ab_0000{i}", stub=True) for i in range(2))
    no_chain = Trial("t", config={**config, "width": 0}, trial_id="ab_00002", stub=True)
    stopped.update_last_result({"student_val_acc": 0.25, "student_epoch": 1, "train_flops": 10})
    finished.update_last_result({"student_val_acc": 0.5, "student_epoch": 2, "train_flops": 20, "outcome": "finished"})
    assert isinstance(rows, TrialRows)
    for trial in (stopped, finished):
        rows.on_trial_complete(0, [], trial)
    rows.on_trial_error(0, [], no_chain)
    trials = load_run(tmp_path / "mine").trials
    assert trials["trial_id"].tolist() == ["ab_00000"] and trials["status"].tolist() == [schema.STOPPED]
    assert trials["student_val_acc"].tolist() == [0.25] and trials["method"].tolist() == ["kd"]
    assert trials["ta_depths"].map(len).tolist() == [0] and is_missing(trials["drop"].iloc[0])  # kd's own only


def test_a_trial_that_raises_in_a_users_tuner_gets_its_error_row(ray_cluster: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Tune trial failing inside the chain trainable (a fault injected at its start): the callback writes its
    ERROR row, with Tune's error, as a study's driver does."""
    from ray import tune

    monkeypatch.setenv("KDSTUDY_FAULT", "trial-start:raise")  # read when the trainable is made, travels with it
    config = {"dataset": "digits", "teacher": "plain4", "student": "plain2", "method": "kd", "epochs": 1,
              "width": 0.25, "train_size": 100}
    tuner = tune.Tuner(study.tune_trainable(storage=str(tmp_path), name="failing"), param_space=config,
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0,
                                                 callbacks=[study.tune_callback(storage=str(tmp_path), name="failing")]))
    grid = tuner.fit()
    assert grid.num_errors == 1
    trials = load_run(tmp_path / "failing").trials
    assert trials["status"].tolist() == [schema.ERROR] and trials["method"].tolist() == ["kd"]
    assert "injected fault at trial-start" in trials["error"].iloc[0]


@pytest.mark.parametrize(("call", "field"), [
    (lambda tmp: study.run(StudySpec(storage=str(tmp), epochs=0)), "epochs"),
    (lambda tmp: study.run(StudySpec(storage=str(tmp), methods="takd")), "methods"),
    (lambda tmp: study.run(StudySpec(storage=str(tmp), teacher="plain2")), "ta_candidates"),
    (lambda tmp: study.run(StudySpec(storage=str(tmp), cpus_per_trial=64)), "cpus_per_trial"),
    (lambda tmp: study.param_space(StudySpec(storage=str(tmp), search={"drop": [0, 9]})), "search.drop"),
    (lambda tmp: study.tune_trainable(storage=str(tmp), name="a/b"), "name"),
    (lambda tmp: study.tune_trainable(storage=str(tmp), name="mine", resources={"cpu": 0}), "resources.cpu"),
    (lambda tmp: study.tune_trainable(storage=str(tmp), name="mine", resources={"tpu": 1}), "resources.tpu"),
    (lambda tmp: study.tune_trainable(storage=str(tmp), name="mine", resources={"gpu": 64}), "resources"),
    (lambda tmp: study.tune_callback(storage=str(tmp / "file.txt" / "below"), name="mine"), "storage"),
])
def test_bad_input_through_the_api_is_one_line_naming_the_field(call: Any, field: str, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError) as raised:
        call(tmp_path)
    assert raised.value.field == field and "\n" not in str(raised.value), str(raised.value)
    assert str(raised.value).startswith(f"{field}: ")
    assert sorted(tmp_path.rglob("*")) == before  # refused before anything is written


def test_a_tuner_is_not_let_into_a_studys_folder(tmp_path: Path) -> None:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "study.json").write_text("{}")
    with pytest.raises(InputError, match="^name: .* is a study's folder"):
        study.tune_trainable(storage=str(tmp_path), name="tiny")
