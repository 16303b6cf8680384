"""The search space, define-by-run for Optuna: it only suggests, and derives the flat chain settings.

Everything method-specific comes from the method registry: which methods run through TAs, and the settings each
method adds (with their default ranges, which a spec's `[search]` table may narrow).
"""

from __future__ import annotations

import math
from itertools import combinations, product
from typing import Any, Iterator

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import Trial

from study.spec import StudySpec
from trainables import ChainConfig
from trainables.typed import InputError
from trainables.methods import Param, all_params, method_class

TA_PARAM = "ta_depths"


def ta_subsets(candidates: tuple[int, ...]) -> list[str]:
    """Every non-empty subset of the candidate depths, deepest first, as Optuna category labels ("8-6-4").

    One categorical over subsets (rather than a yes/no per depth) can never draw the empty set for a method that
    needs a TA, so every suggestion is a valid chain and the sampler learns from what was actually trained."""
    ordered = sorted(candidates, reverse=True)
    subsets = [c for size in range(len(ordered), 0, -1) for c in combinations(ordered, size)]
    return [ta_label(subset) for subset in subsets]


def ta_label(depths: tuple[int, ...] | list[int]) -> str:
    return "-".join(str(d) for d in depths)


def depths_of(label: str) -> list[int]:
    return [int(d) for d in label.split("-")] if label else []


def suggest(trial: Trial, spec: StudySpec) -> dict[str, Any]:
    """Suggests one chain; returns the derived values (TA depths as a list) that Optuna does not hold."""
    method = method_class(trial.suggest_categorical("method", list(spec.methods)))
    for param in method.params:
        param.suggest(trial, spec.searched(param))
    if not method.uses_tas:
        return {TA_PARAM: []}
    return {TA_PARAM: depths_of(trial.suggest_categorical(TA_PARAM, ta_subsets(spec.ta_candidates)))}


def invalid_draw(spec: StudySpec) -> InputError | None:
    """Why some chain the space can draw is invalid, or None: every method × every TA subset × both ends of each
    searched range or grid (and every searched choice), so that a study is refused when its spec is read rather
    than aborted by the draw.

    A method's cross-setting rules (DGKD's `drop` below the student's teacher count) are monotone in each
    number, so a range's ends stand for its inside."""
    base = spec.base_config()
    for name in spec.methods:
        method = method_class(name)
        subsets = ta_subsets(spec.ta_candidates) if method.uses_tas else [""]
        for subset, values in product(subsets, _corners(method.params, spec)):
            try:
                ChainConfig.from_flat({**base, **values, "method": name, TA_PARAM: depths_of(subset)})
            except InputError as error:
                chain = f"TAs {subset.replace('-', ', ')}" if subset else "no TA"
                drawn = f" (method {name} with {chain} can draw it)"
                if error.field not in all_params():  # a chain setting that the drawn method cannot take
                    return error.within("chain.", drawn)
                return error.within("search.", f"{drawn}; narrow [search] {error.field} or ta_candidates")
    return None


def draws_a_fitting_method(spec: StudySpec) -> bool:
    """Whether the search can draw a chain whose method fits weights on the fit hold-out (a learned ensemble):
    every choice of every categorical setting is a corner, so none is missed."""
    return any(method_class(name).fits_on_fit_split(values)
               for name in spec.methods for values in _corners(method_class(name).params, spec))


def _corners(params: tuple[Param, ...], spec: StudySpec) -> Iterator[dict[str, Any]]:
    ends = [sorted(set(spec.searched(p).ends()), key=str) for p in params]
    for values in product(*ends):
        yield {p.name: value for p, value in zip(params, values)}


def size(spec: StudySpec) -> float:
    """How many distinct chains the space holds: finite over choices and grids, math.inf as soon as one searched
    number is continuous."""
    total = 0.0
    for name in spec.methods:
        method = method_class(name)
        chains = float(len(ta_subsets(spec.ta_candidates))) if method.uses_tas else 1.0
        total += chains * math.prod(p.cardinality(spec.searched(p)) for p in method.params)
    return total


def warm_start_points(spec: StudySpec) -> list[dict[str, Any]]:
    """The seed paper's comparison over the full candidate chain, so it is always in the data: TAKD, DGKD
    (dropping one teacher, as published), the mean and the learned ensemble, at one shared T and α (the spec's
    `warm_temperature` and `warm_alpha`, 5 and 0.5 by default, snapped to the nearest values its search draws);
    then the `nokd` student, trained from labels on the same seed and split, which the error avalanche needs as its
    control (it is one hop: the cheapest trial)."""
    points = _seed_comparison(spec) + [{"method": "nokd"}]
    return [point for point in points if point["method"] in spec.methods and _allowed(spec, point)]


def warm_start_chains(spec: StudySpec) -> list[ChainConfig]:
    """The warm starts as the chains their trials train, in the order they are drawn."""
    base = spec.base_config()
    return [chain_config(base, point) for point in warm_start_points(spec)]


def _seed_comparison(spec: StudySpec) -> list[dict[str, Any]]:
    if not spec.ta_candidates:
        return []
    shared = {TA_PARAM: ta_subsets(spec.ta_candidates)[0],
              "temperature": _nearest(spec, "temperature", spec.warm_temperature),
              "alpha": _nearest(spec, "alpha", spec.warm_alpha)}
    return [
        {"method": "takd", **shared},
        {"method": "dgkd", **shared, "drop": _nearest(spec, "drop", 1)},
        {"method": "ensemble", **shared, "weighting": "mean", "space": "prob"},
        {"method": "ensemble", **shared, "weighting": "learned", "space": "prob"},
    ]


def _nearest(spec: StudySpec, name: str, value: float) -> Any:
    param = all_params()[name]
    return param.nearest(spec.searched(param), value)


def _allowed(spec: StudySpec, point: dict[str, Any]) -> bool:
    """A point the spec's search excludes (e.g. weighting narrowed to ["mean"]) is not a warm start."""
    return all(spec.searched(param).contains(point[param.name])
               for param in method_class(point["method"]).params if param.name in point)


def chain_config(base: dict[str, Any], params: dict[str, Any]) -> ChainConfig:
    """A trial's chain: the settings every trial of the study shares, plus what the search chose for it."""
    return ChainConfig.from_flat({**base, **flat_from_params(params)})


def flat_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as Tune hands it over (Optuna params + derived values + its id) → chain config fields."""
    flat = {k: v for k, v in params.items() if k != "trial_id"}
    if isinstance(flat.get(TA_PARAM), str):
        flat[TA_PARAM] = depths_of(flat[TA_PARAM])
    return flat


class _Recorder:
    """A stand-in for an Optuna trial that answers with known values and records the distributions asked for."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values, self.distributions = values, {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.distributions[name] = CategoricalDistribution(choices)
        return self.values[name]

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        self.distributions[name] = FloatDistribution(low, high, step=step, log=log)
        return self.values[name]

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        self.distributions[name] = IntDistribution(low, high, step=step, log=log)
        return self.values[name]


def params_of(spec: StudySpec, flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """The Optuna params and distributions that suggest `flat` (a chain config, e.g. a results row): how a trial
    known from the results but lost from the journal is added back to it."""
    values = {**flat, TA_PARAM: ta_label(flat.get(TA_PARAM) or [])}
    recorder = _Recorder(values)
    suggest(recorder, spec)  # type: ignore[arg-type]
    return {name: values[name] for name in recorder.distributions}, recorder.distributions
