"""The define-by-run space on its own: every suggestion is a valid chain, and the warm starts come first."""

from __future__ import annotations

import optuna
import pytest

from study.space import flat_from_params, suggest, ta_subsets, warm_start_points
from study.spec import StudySpec
from trainables import ChainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPEC = StudySpec(ta_candidates=(8, 6, 4), temperature_range=(1.0, 20.0))


def _sample(study: optuna.Study) -> tuple[optuna.trial.Trial, dict]:
    trial = study.ask()
    derived = suggest(trial, SPEC)
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
        assert cfg.drop == 0 or cfg.drop < cfg.num_teachers_of_student
        if cfg.method != "nokd":
            assert 1.0 <= cfg.temperature <= 20.0 and 0.0 <= cfg.alpha <= 1.0
        study.tell(trial, 0.0)
    assert methods == {"nokd", "kd", "takd", "dgkd", "ensemble"}


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
    assert [f["method"] for f in firsts] == ["takd", "dgkd", "ensemble", "ensemble"]
    assert all(f["ta_depths"] == [8, 6, 4] for f in firsts)
    assert firsts[1]["drop"] == 1 and [f["weighting"] for f in firsts[2:]] == ["mean", "learned"]


@pytest.mark.parametrize("methods, expected", [(("takd",), ["takd"]), (("nokd", "kd"), []),
                                               (("ensemble", "kd"), ["ensemble", "ensemble"])])
def test_warm_starts_follow_the_methods_in_the_spec(methods: tuple[str, ...], expected: list[str]) -> None:
    spec = StudySpec(methods=methods)
    assert [p["method"] for p in warm_start_points(spec)] == expected

