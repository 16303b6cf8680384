"""The study: a Ray Tune + Optuna search over KD chains, and its public Python API (`study.api`).

    import study
    results = study.run(study.StudySpec.from_toml("spec.toml"))     # run, resume or grow a study
    results.trials, results.best_config, results.path
    trainable = study.tune_trainable(storage="runs", name="mine")  # one chain per trial, in your own tune.Tuner
    space = study.param_space(spec)                                 # the spec's search as a Tune param_space
    callback = study.tune_callback(storage="runs", name="mine")     # rows of the trials a scheduler stops

The names are loaded on first use: importing `study.spec` (the CLI does, before it knows the input is good) must
not import Ray's Tune.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["StudyResults", "StudySpec", "param_space", "run", "tune_callback", "tune_trainable"]
_HOMES = {"StudySpec": "study.spec"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES.get(name, "study.api")), name)
