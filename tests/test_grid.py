"""Grids in a study's [search]: the forms a spec writes, the bad ones it is refused for, and what a grid is for —
configurations drawn from it repeat their TA hops, the space is finite, rows go back to Optuna, and the warm starts
lie on the very points the search draws."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch

from cli.main import main
from study.folder import check_settings, write_settings
from study.space import chain_config, flat_from_params, params_of, size, suggest, warm_start_points
from study.spec import StudySpec, load_spec
from tests.cifar_files import write_cifar100
from trainables import ChainConfig
from trainables.hops import plan_chain
from trainables.methods.params import Search
from trainables.typed import InputError

optuna.logging.set_verbosity(optuna.logging.WARNING)
CPU = torch.device("cpu")


def _spec_file(tmp_path: Path, search: str, top: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f"{top}\n[search]\n{search}\n")
    return path


def _draws(spec: StudySpec, count: int, seed: int = 0) -> list[tuple[optuna.trial.Trial, ChainConfig]]:
    """`count` chains drawn at random from the spec's space, each with the Optuna trial that drew it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial = study.ask()
        derived = suggest(trial, spec)
        drawn.append((trial, chain_config(spec.base_config(), flat_from_params({**trial.params, **derived}))))
        study.tell(trial, 0.0)
    return drawn


# --- the forms -----------------------------------------------------------------------------------------------------

def test_each_form_reads_as_one_search(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path, "temperature = {choices = [1, 2, 5]}\n"
                                          "alpha = {low = 0.05, high = 1.0, step = 0.05}\n"
                                          "drop = {low = 0, high = 1, step = 1}\n"
                                          'weighting = {choices = ["mean", "learned"]}\n'
                                          'space = ["prob"]'), {})
    assert spec.search == {"temperature": Search(choices=(1.0, 2.0, 5.0)), "alpha": Search(0.05, 1.0, step=0.05),
                           "drop": Search(0, 1, step=1), "weighting": Search(choices=("mean", "learned")),
                           "space": Search(choices=("prob",))}
    # a table without a step is the continuous range, on the setting's scale unless it says otherwise
    continuous = load_spec(_spec_file(tmp_path, "temperature = {low = 1, high = 20}\n"
                                                "alpha = {low = 0.1, high = 1, log = true}"), {})
    assert continuous.search == {"temperature": Search(1.0, 20.0, log=True), "alpha": Search(0.1, 1.0, log=True)}
    assert continuous.search["temperature"] == load_spec(_spec_file(tmp_path, "temperature = [1, 20]"), {}) \
        .search["temperature"]


def test_a_study_records_its_search_as_json_and_an_unchanged_spec_matches_itself(tmp_path: Path) -> None:
    spec_file = _spec_file(tmp_path, "temperature = {choices = [1, 2, 5]}\n"
                                     "alpha = {low = 0.05, high = 1.0, step = 0.05}\n"
                                     "drop = [0, 1]\n"
                                     'weighting = {choices = ["mean", "learned"]}',
                           top=f'storage = "{tmp_path / "runs"}"')
    spec = load_spec(spec_file, {})
    assert spec.settings()["search"] == {"alpha": {"low": 0.05, "high": 1.0, "step": 0.05}, "drop": [0, 1],
                                         "temperature": {"choices": [1.0, 2.0, 5.0]},
                                         "weighting": ["mean", "learned"],  # as a list, as before
                                         "space": ["prob", "logit"]}  # a default is recorded too
    write_settings(spec)
    assert check_settings(load_spec(spec_file, {})) is None  # read again: the same study
    spec_file.write_text(spec_file.read_text().replace("step = 0.05", "step = 0.19"))
    with pytest.raises(InputError, match=r'search .*"step": 0\.05.* → .*"step": 0\.19'):
        check_settings(load_spec(spec_file, {}))


@pytest.mark.parametrize("search, message", [
    ("alpha = {low = 0.05, high = 1.0, stepp = 0.05}",
     "search.alpha: expected [low, high], {low, high}, {low, high, step} or {choices = [...]}, got "
     "{'low': 0.05, 'high': 1.0, 'stepp': 0.05}"),
    ('alpha = "0.5"', "search.alpha: expected [low, high], {low, high}, {low, high, step} or {choices = [...]}, "
                      "got '0.5'"),
    ('weighting = {choices = ["mean"], step = 1}',
     "search.weighting: expected a list of mean, learned, confidence (or {choices = [...]}), got "
     "{'choices': ['mean'], 'step': 1}"),
    ("alpha = {low = 0.9, high = 0.1, step = 0.1}",
     "search.alpha: expected low <= high, got {'low': 0.9, 'high': 0.1, 'step': 0.1}"),
    ("alpha = {low = 0.05, high = 1.5, step = 0.05}", "search.alpha: expected a value in [0, 1], got 1.5"),
    ("alpha = {low = 0.0, high = 1.0, step = 0.3}",
     "search.alpha: expected high - low a whole number of steps, got {'low': 0.0, 'high': 1.0, 'step': 0.3}"),
    ("alpha = {low = 0.0, high = 1.0, step = 0}",
     "search.alpha: expected a step > 0, got {'low': 0.0, 'high': 1.0, 'step': 0}"),
    ("temperature = {low = 1, high = 20, step = 1, log = true}",
     "search.temperature: expected a step or log = true, not both (a grid is evenly spaced), got "
     "{'low': 1, 'high': 20, 'step': 1, 'log': True}"),
    ('temperature = {low = 1, high = 20, log = "yes"}',
     "search.temperature: expected log = true or false, got {'low': 1, 'high': 20, 'log': 'yes'}"),
    ("alpha = {low = 0.0, high = 1.0, log = true}",
     "search.alpha: expected low > 0 on a log scale, got {'low': 0.0, 'high': 1.0, 'log': True}"),
    ("alpha = {low = 0.5}", "search.alpha: expected both low and high, got {'low': 0.5}"),
    ("alpha = {choices = [0.5], low = 0.1}",
     "search.alpha: expected choices alone, or low and high, got {'choices': [0.5], 'low': 0.1}"),
    ("temperature = {choices = []}",
     "search.temperature: expected a non-empty list of choices, got {'choices': []}"),
    ("temperature = {choices = [1, 2, 2]}",
     "search.temperature: expected distinct choices, got {'choices': [1, 2, 2]}"),
    ("temperature = {choices = [0, 2]}", "search.temperature: expected > 0, got 0.0"),
    ("drop = {low = 0, high = 1, step = 0.5}", "search.drop: expected integer, got 0.5"),
])
def test_a_bad_search_exits_2_naming_the_field_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture, search: str, message: str) -> None:
    storage = tmp_path / "storage"
    assert main(["run", "--spec", str(_spec_file(tmp_path, search)), "--storage", str(storage)]) == 2
    assert capsys.readouterr().err == f"kdstudy run: {message}\n"
    assert not storage.exists()


def test_a_warm_start_outside_its_settings_bounds_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    storage = tmp_path / "storage"
    assert main(["run", "--warm-alpha", "1.5", "--storage", str(storage)]) == 2
    assert capsys.readouterr().err == "kdstudy run: warm_alpha: expected a value in [0, 1], got 1.5\n"
    assert not storage.exists()


# --- what a grid is for ----------------------------------------------------------------------------------------------

GRID = StudySpec(methods=("takd",), ta_candidates=(8, 6, 4),
                 search={"temperature": {"choices": [2, 5]}, "alpha": {"low": 0.5, "high": 1.0, "step": 0.25}})


def _ta_hops_in_two_configurations(spec: StudySpec, draws: int) -> int:
    """How many TA hop keys the distinct configurations of `draws` random draws share."""
    configs = {repr(sorted(cfg.to_flat().items())): cfg for _, cfg in _draws(spec, draws)}
    keys = Counter(hop.key for cfg in configs.values() for hop in plan_chain(cfg, CPU) if hop.role == "ta")
    return sum(count >= 2 for count in keys.values())


def test_configurations_drawn_from_a_grid_share_ta_hops_and_a_continuous_space_never_does() -> None:
    assert _ta_hops_in_two_configurations(GRID, 20) > 0
    continuous = StudySpec(methods=("takd",), ta_candidates=(8, 6, 4),
                           search={"temperature": (2.0, 5.0), "alpha": (0.5, 1.0)})
    assert _ta_hops_in_two_configurations(continuous, 20) == 0


def test_a_grid_space_is_finite_and_the_search_can_draw_all_of_it() -> None:
    assert size(GRID) == 7 * 2 * 3  # TA subsets × temperatures × values of α
    drawn = {repr(sorted(cfg.to_flat().items())) for _, cfg in _draws(GRID, 600)}
    assert len(drawn) == size(GRID)


def test_a_grid_draw_goes_back_to_optuna_as_it_was_drawn() -> None:
    spec = StudySpec(methods=("dgkd",), ta_candidates=(8, 6, 4),
                     search={"drop": {"low": 0, "high": 1, "step": 1}})  # T's choices and α's grid by default
    replayed = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for trial, cfg in _draws(spec, 30):
        params, distributions = params_of(spec, cfg.to_flat())
        assert params == trial.params and distributions == trial.distributions
        replayed.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=0.5))
    trial = replayed.ask()  # TPE draws on from the rows added back
    derived = suggest(trial, spec)
    chain_config(spec.base_config(), flat_from_params({**trial.params, **derived}))
    assert isinstance(trial.distributions["alpha"], optuna.distributions.FloatDistribution)
    assert trial.distributions["alpha"].step == 0.05


def test_the_warm_starts_lie_on_the_grid() -> None:
    points = warm_start_points(StudySpec())  # the default study: the references' grid
    assert {(p["temperature"], p["alpha"]) for p in points if p["method"] != "nokd"} == {(5.0, 0.5)}
    # off the grid, they snap to the nearest point of it
    snapped = warm_start_points(StudySpec(warm_temperature=4.0, warm_alpha=0.53))
    assert {(p["temperature"], p["alpha"]) for p in snapped if p["method"] != "nokd"} == {(5.0, 0.55)}


def test_a_warm_start_and_a_drawn_trial_at_the_same_grid_point_are_one_configuration() -> None:
    # α = 0.15 is 0.15000000000000002 as Optuna draws it on a 0.05 grid: the warm start must be that very number
    spec = StudySpec(methods=("takd",), ta_candidates=(8,), warm_alpha=0.15, search={"temperature": [5, 5]})
    warm = chain_config(spec.base_config(), warm_start_points(spec)[0])
    drawn = [cfg for _, cfg in _draws(spec, 200) if math.isclose(cfg.param("alpha"), 0.15)]
    assert drawn and all(cfg.to_flat() == warm.to_flat() for cfg in drawn)
    assert plan_chain(drawn[0], CPU)[1].key == plan_chain(warm, CPU)[1].key


def test_the_seed_preset_compares_at_dgkds_values_then_searches_takds_grid(tmp_path: Path) -> None:
    data = write_cifar100(tmp_path / "cifar", train_per_class=2, test_per_class=1)
    spec = load_spec(None, {"data_dir": str(data)}, preset="seed-cifar100")
    points = warm_start_points(spec)
    assert len(points) == 4 and {(p["temperature"], p["alpha"]) for p in points} == {(5.0, 1.0)}
    assert spec.search["temperature"] == Search(choices=(1.0, 2.0, 5.0, 10.0, 15.0, 20.0))
    assert spec.search["alpha"] == Search(0.05, 1.0, step=0.05)
    # TA subsets × T × α × (TAKD, DGKD at drop 1, the mean and the learned ensemble in two spaces)
    assert size(spec) == 7 * 6 * 20 * (1 + 1 + 2 * 2)
