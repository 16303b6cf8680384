"""The define-by-run space on its own: every suggestion is a valid chain, the warm starts come first, the
searched ranges follow the spec, and the space knows how many distinct chains it holds."""

from __future__ import annotations

import math

import optuna
import pytest

from study.space import flat_from_params, params_of, size, suggest, ta_subsets, warm_start_points
from study.spec import StudySpec
from trainables import ChainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPEC = StudySpec(ta_candidates=(8, 6, 4), search={"temperature": (1.0, 20.0)})


def _sample(study: optuna.Study, spec: StudySpec = SPEC) -> tuple[optuna.trial.Trial, dict]:
    trial = study.ask()
    derived = suggest(trial, spec)
    return trial, flat_from_params({**trial.params, **derived})


def test_ta_subsets_are_every_non_empty_decreasing_subset() -> None:
    assert ta_subsets((4, 8, 6)) == ["8-6-4", "8-6", "8-4", "6-4", "8", "6", "4"]


def test_two_hundred_samples_all_satisfy_the_constraints() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    methods = set()
    for _ in range(200):
        trial, flat = _sample(study)
        cfg = ChainConfig.from_flat({**SPEC.base_config(), **flat})  # raises on any invalid chain
        methods.add(cfg.method)
        depths = list(cfg.ta_depths)
        if cfg.method in ("nokd", "kd"):
            assert depths == [] and "ta_depths" not in trial.params
        else:
            assert depths and depths == sorted(depths, reverse=True) and set(depths) <= {8, 6, 4}
        assert ("weighting" in trial.params) == ("space" in trial.params) == (cfg.method == "ensemble")
        assert ("drop" in trial.params) == (cfg.method == "dgkd")
        assert ("temperature" in trial.params) == (cfg.method != "nokd")
        if cfg.method != "nokd":
            assert 1.0 <= cfg.param("temperature") <= 20.0 and 0.0 <= cfg.param("alpha") <= 1.0
        study.tell(trial, 0.0)
    assert methods == {"nokd", "kd", "takd", "dgkd", "ensemble"}


def test_the_spec_narrows_what_is_searched() -> None:
    spec = StudySpec(methods=("dgkd", "ensemble"), search={"temperature": (3.0, 3.0), "drop": (1, 1),
                                                           "weighting": ("learned",)})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        _, flat = _sample(study, spec)
        cfg = ChainConfig.from_flat({**spec.base_config(), **flat})
        assert cfg.param("temperature") == 3.0
        assert cfg.params.get("drop", 1) == 1 and cfg.params.get("weighting", "learned") == "learned"


def test_warm_start_points_come_first_and_are_the_seed_papers_comparison() -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    points = warm_start_points(SPEC)
    for point in points:
        study.enqueue_trial(point)
    firsts = []
    for _ in points:
        trial, flat = _sample(study)
        firsts.append(flat)
        study.tell(trial, 0.0)
    assert [f["method"] for f in firsts] == ["takd", "dgkd", "ensemble", "ensemble", "nokd"]
    assert all(f["ta_depths"] == [8, 6, 4] for f in firsts[:4]) and firsts[4]["ta_depths"] == []
    assert firsts[1]["drop"] == 1 and [f["weighting"] for f in firsts[2:4]] == ["mean", "learned"]


@pytest.mark.parametrize("methods, expected", [(("takd",), ["takd"]), (("nokd", "kd"), ["nokd"]),
                                               (("ensemble", "kd"), ["ensemble", "ensemble"]),
                                               (("nokd", "takd"), ["takd", "nokd"])])
def test_warm_starts_follow_the_methods_in_the_spec(methods: tuple[str, ...], expected: list[str]) -> None:
    spec = StudySpec(methods=methods)
    assert [p["method"] for p in warm_start_points(spec)] == expected


def test_warm_starts_respect_the_searched_values() -> None:
    spec = StudySpec(search={"temperature": (2.0, 3.0), "alpha": (0.9, 1.0), "weighting": ("mean",)})
    points = warm_start_points(spec)
    assert {(p["temperature"], p["alpha"]) for p in points if p["method"] != "nokd"} == {(3.0, 0.9)}
    assert [p.get("weighting") for p in points if p["method"] == "ensemble"] == ["mean"]


def test_the_space_counts_its_distinct_chains() -> None:
    assert size(StudySpec(methods=("nokd",))) == 1
    one_point = {"temperature": (4.0, 4.0), "alpha": (0.5, 0.5)}
    assert size(StudySpec(methods=("nokd", "kd"), search=one_point)) == 2
    # takd: 7 TA subsets; dgkd: 7 subsets × drop in {0, 1}; ensemble: 7 × 3 weightings × 2 spaces
    assert size(StudySpec(methods=("takd", "dgkd", "ensemble"), search=one_point)) == 7 + 14 + 42
    # the references' grid by default: 6 temperatures × 20 values of α
    assert size(StudySpec(methods=("kd",))) == 6 * 20
    assert size(StudySpec(methods=("kd",), search={"alpha": (0.0, 1.0)})) == math.inf


def test_params_of_a_chain_replay_its_suggestion() -> None:
    cfg = ChainConfig.from_flat({**SPEC.base_config(), "method": "dgkd", "ta_depths": [8, 4], "drop": 1,
                                 "temperature": 3.0, "alpha": 0.25})
    params, distributions = params_of(SPEC, cfg.to_flat())
    assert params == {"method": "dgkd", "temperature": 3.0, "alpha": 0.25, "drop": 1, "ta_depths": "8-4"}
    assert set(distributions) == set(params)
    assert all(distributions[name]._contains(distributions[name].to_internal_repr(v)) for name, v in params.items())
