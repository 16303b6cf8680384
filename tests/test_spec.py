"""StudySpec: where a study lives, what it keeps as its settings, and the presets that ship with kdstudy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cli.main import main
from study.folder import check_settings, recorded_runtime, write_settings
from study.space import chain_config, warm_start_points
from study.spec import DEFAULT_CHAIN, DEFAULT_FIT_SIZE, StudySpec, load_spec, preset_names
from trainables.methods.params import Search


@pytest.mark.parametrize("storage, local", [("runs", True), ("file:///tmp/studies", True),
                                            ("s3://bucket/studies?region=us-east-1", False)])
def test_storage_paths(storage: str, local: bool) -> None:
    run = StudySpec(storage=storage, name="x").run
    assert run.is_local == local
    assert run.path.endswith("/x") and (run.uri.startswith("/") or not local)


def test_query_options_stay_after_the_run_path() -> None:
    query = "endpoint_override=127.0.0.1:5055&scheme=http&region=us-east-1"
    run = StudySpec(storage=f"s3://bucket/studies?{query}", name="x").run
    assert run.uri == f"s3://bucket/studies/x?{query}"
    assert run.path == "bucket/studies/x"
    assert (run / "results").uri == f"s3://bucket/studies/x/results?{query}"


def test_only_the_default_study_uses_the_default_chain(tmp_path: Path) -> None:
    assert load_spec(None, {}).chain == DEFAULT_CHAIN
    spec_file = tmp_path / "s.toml"
    spec_file.write_text("trials = 3\n[chain]\nwidth = 0.5\n")
    assert load_spec(spec_file, {}).chain == {"width": 0.5}  # no hidden train_size = 1000


def test_legacy_range_keys_are_search_ranges(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.toml"
    spec_file.write_text("temperature_range = [2, 8]\n[search]\nalpha = [0.5, 1]\n")
    spec = load_spec(spec_file, {})
    # continuous, each on its setting's own scale (T's is a log scale), and recorded as [low, high] as before
    assert spec.search == {"temperature": Search(2.0, 8.0, log=True), "alpha": Search(0.5, 1.0)}
    recorded = spec.settings()["search"]
    assert recorded["alpha"] == [0.5, 1.0] and recorded["temperature"] == [2.0, 8.0]


def test_settings_leave_out_where_and_how_a_study_runs() -> None:
    settings = StudySpec(max_concurrent=8, address="auto", cpus_per_trial=4).settings()
    assert not {"name", "storage", "max_concurrent", "address", "cpus_per_trial"} & set(settings)
    assert settings["trials"] == 12 and settings["methods"] == ["nokd", "kd", "takd", "dgkd", "ensemble"]


def test_each_session_records_how_it_runs_and_a_rerun_may_change_it(tmp_path: Path) -> None:
    spec = StudySpec(storage=str(tmp_path), cpus_per_trial=1, gpus_per_trial=0, max_concurrent=2)
    write_settings(spec)
    moved = dataclasses.replace(spec, cpus_per_trial=4, gpus_per_trial=0.5, max_concurrent=8)
    assert check_settings(moved) is None  # not a changed setting: the study neither grows nor is refused
    write_settings(moved)
    assert recorded_runtime(moved.run) == {"cpus_per_trial": 4, "gpus_per_trial": 0.5, "max_concurrent": 8}
    assert json.loads((tmp_path / "default" / "study.json").read_text())["trials"] == 12  # beside the settings


def test_presets_are_listed_with_what_they_run(capsys: pytest.CaptureFixture) -> None:
    assert "seed-cifar100" in preset_names()
    assert main(["run", "--list-presets"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("seed-cifar100: "))
    assert "plain CNN 10" in line


def test_the_seed_preset_is_the_reference_recipe() -> None:
    import tomllib

    from study.spec import preset_path

    preset = tomllib.loads(preset_path("seed-cifar100").read_text())
    assert (preset["dataset"], preset["teacher"], preset["student"], preset["ta_candidates"]) == \
        ("cifar100", "plain10", "plain2", [8, 6, 4])
    assert preset["methods"] == ["takd", "dgkd", "ensemble"] and preset["epochs"] == 160
    assert preset["chain"] == {"lr": 0.01, "lr_schedule": "constant", "momentum": 0.9, "weight_decay": 1e-4,
                               "batch_size": 128, "augment": False, "kl_reduction": "mean", "val_size": 0.1,
                               "fit_size": 0.05, "width": 1.0, "init": "reference"}
    # the four trials at DGKD's T = 5, α = 1; --trials N then searches TAKD's grid of T and α
    assert (preset["warm_temperature"], preset["warm_alpha"]) == (5.0, 1.0)
    assert preset["search"] == {"temperature": {"choices": [1, 2, 5, 10, 15, 20]},
                                "alpha": {"low": 0.05, "high": 1.0, "step": 0.05}, "drop": [1, 1],
                                "weighting": ["mean", "learned"]}
    assert 0 < preset["gpus_per_trial"] < 1  # several trials per GPU


def test_an_unknown_preset_exits_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--preset", "nope"]) == 2
    assert capsys.readouterr().err.startswith("kdstudy run: preset: unknown preset 'nope'; expected one of ")


@pytest.mark.parametrize("drop, teachers, tas", [("[2, 2]", 2, "8"), ("[0, 3]", 3, "8, 6")])
def test_a_range_that_some_drawn_chain_cannot_take_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture, drop: str, teachers: int, tas: str) -> None:
    # a one-TA chain gives DGKD's student two teachers: dropping two (or three) of them can never train
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(f'methods = ["dgkd"]\nta_candidates = [8, 6, 4]\n[search]\ndrop = {drop}\n')
    storage = tmp_path / "storage"
    assert main(["run", "--spec", str(spec_file), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err == (f"kdstudy run: search.drop: expected fewer than the student's {teachers} teacher(s), got "
                   f"{teachers} (method dgkd with TAs {tas} can draw it); narrow [search] drop or ta_candidates\n")
    assert not storage.exists()


def test_every_end_of_a_searched_range_is_checked_against_every_ta_subset() -> None:
    from study.space import invalid_draw

    assert invalid_draw(StudySpec(methods=("dgkd",), ta_candidates=(8, 6, 4), search={"drop": (0, 1)})) is None
    assert invalid_draw(StudySpec(methods=("dgkd",), ta_candidates=(8, 6, 4), search={"drop": (1, 2)})) is not None
    # one TA: the student has two teachers, so one may be dropped
    assert invalid_draw(StudySpec(methods=("takd", "dgkd"), ta_candidates=(8,), search={"drop": (1, 1)})) is None


def test_every_trial_of_a_study_that_can_draw_a_learned_ensemble_holds_out_the_fit_split(tmp_path: Path) -> None:
    spec = load_spec(None, {})  # the default study searches every ensemble weighting
    assert DEFAULT_FIT_SIZE == 0.05 and spec.settings()["chain"]["fit_size"] == 0.05  # in study.json too
    trials = [chain_config(spec.base_config(), point) for point in warm_start_points(spec)]
    trials.append(chain_config(spec.base_config(), {"method": "nokd"}))
    assert {cfg.method for cfg in trials} == {"takd", "dgkd", "ensemble", "nokd"}
    assert {cfg.fit_size for cfg in trials} == {0.05}  # one split for every method: paired comparisons
    spec_file = tmp_path / "s.toml"
    spec_file.write_text('methods = ["takd", "ensemble"]\n[search]\nweighting = ["mean", "confidence"]\n')
    assert load_spec(spec_file, {}).base_config()["fit_size"] == 0  # no learned ensemble: no image lost
    spec_file.write_text('methods = ["ensemble"]\n[chain]\nfit_size = 300\n')
    assert load_spec(spec_file, {}).base_config()["fit_size"] == 300  # the spec's own


def test_a_study_that_can_draw_a_learned_ensemble_without_a_fit_split_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec_file = tmp_path / "s.toml"
    spec_file.write_text('methods = ["ensemble"]\nta_candidates = [6]\n[chain]\nfit_size = 0\n')
    storage = tmp_path / "storage"
    assert main(["run", "--spec", str(spec_file), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err == ("kdstudy run: chain.fit_size: ensemble[learned/logit] fits its weights on training images held "
                   "out for it; expected a fraction in (0, 1) or a count >= 1, got 0 (method ensemble with TAs 6 can "
                   "draw it)\n")
    assert not storage.exists()
