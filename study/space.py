"""The search space, define-by-run for Optuna: it only suggests, and derives the flat chain settings."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from optuna.trial import Trial

from study.spec import StudySpec

METHODS_WITH_TAS = ("takd", "dgkd", "ensemble")


def ta_subsets(candidates: tuple[int, ...]) -> list[str]:
    """Every non-empty subset of the candidate depths, deepest first, as Optuna category labels ("8-6-4").

    One categorical over subsets (rather than a yes/no per depth) can never draw the empty set for a method that
    needs a TA, so every suggestion is a valid chain and the sampler learns from what was actually trained."""
    ordered = sorted(candidates, reverse=True)
    subsets = [c for size in range(len(ordered), 0, -1) for c in combinations(ordered, size)]
    return ["-".join(str(d) for d in subset) for subset in subsets]


def depths_of(label: str) -> list[int]:
    return [int(d) for d in label.split("-")] if label else []


def suggest(trial: Trial, spec: StudySpec) -> dict[str, Any]:
    """Suggests one chain; returns the derived values (TA depths as a list) that Optuna does not hold."""
    method = trial.suggest_categorical("method", list(spec.methods))
    if method == "nokd":
        return {"ta_depths": []}
    trial.suggest_float("temperature", *spec.temperature_range, log=True)
    trial.suggest_float("alpha", *spec.alpha_range)
    if method not in METHODS_WITH_TAS:
        return {"ta_depths": []}
    depths = depths_of(trial.suggest_categorical("ta_depths", ta_subsets(spec.ta_candidates)))
    if method == "ensemble":
        trial.suggest_categorical("weighting", ["mean", "learned", "confidence"])
        trial.suggest_categorical("space", ["prob", "logit"])
    if method == "dgkd":
        # 0 = deterministic; 1 = DGKD's stochastic teaching. The student always has ≥ 2 teachers here.
        trial.suggest_int("drop", 0, 1)
    return {"ta_depths": depths}


def warm_start_points(spec: StudySpec) -> list[dict[str, Any]]:
    """The seed paper's comparison over the full candidate chain, so it is always in the data: TAKD, DGKD
    (dropping one teacher, as published), the mean and the learned ensemble, at one shared T and α."""
    if not spec.ta_candidates:
        return []
    full_chain = ta_subsets(spec.ta_candidates)[0]
    temperature = min(max(5.0, spec.temperature_range[0]), spec.temperature_range[1])
    alpha = min(max(0.5, spec.alpha_range[0]), spec.alpha_range[1])
    shared = {"ta_depths": full_chain, "temperature": temperature, "alpha": alpha}
    points = [
        {"method": "takd", **shared},
        {"method": "dgkd", **shared, "drop": 1},
        {"method": "ensemble", **shared, "weighting": "mean", "space": "prob"},
        {"method": "ensemble", **shared, "weighting": "learned", "space": "prob"},
    ]
    return [point for point in points if point["method"] in spec.methods]


def flat_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as Tune hands it over (Optuna params + derived values) → chain config fields."""
    flat = dict(params)
    if isinstance(flat.get("ta_depths"), str):
        flat["ta_depths"] = depths_of(flat["ta_depths"])
    return flat
