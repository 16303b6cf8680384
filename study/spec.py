"""The study spec: what to search, on what data, with which resources. TOML file + CLI overrides, validated
completely before Ray starts."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.errors import UsageError
from trainables.config import METHODS, ChainConfig, ConfigError
from trainables.models import parse_arch

OBJECTIVES = {"student_val_acc": "max", "train_flops": "min"}
SCHEDULERS = ("none", "asha")
# Chain fields set by top-level study keys rather than by [chain].
STUDY_LEVEL_CHAIN_FIELDS = ("dataset", "data_dir", "teacher", "student", "epochs", "seed")
# Chain fields the search owns: a spec may not fix them.
SEARCHED_FIELDS = ("method", "ta_depths", "temperature", "alpha", "weighting", "space", "drop")

# A default small enough for 2 CPU cores in a few minutes, where KD effects show: few training images (soft
# targets carry most information when labels are scarce) and TAKD's plain-CNN learning rate, 0.01 — at 0.05
# the plain CNNs with a wide final layer (plain4) diverge under the T²-scaled KD loss.
DEFAULT_CHAIN: dict[str, Any] = {"width": 0.5, "train_size": 1000, "val_size": 500, "lr": 0.01,
                                 "lr_schedule": "cosine"}


@dataclass(frozen=True)
class StudySpec:
    name: str = "default"
    storage: str = "runs"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    teacher: str = "plain10"
    student: str = "plain2"
    ta_candidates: tuple[int, ...] = (8, 6, 4)
    methods: tuple[str, ...] = METHODS
    epochs: int = 8
    trials: int = 12
    seed: int = 0
    objectives: tuple[str, ...] = ("student_val_acc",)
    temperature_range: tuple[float, ...] = (1.0, 20.0)
    alpha_range: tuple[float, ...] = (0.0, 1.0)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 2
    max_failures: int = 1
    address: str | None = None
    scheduler: str = "none"
    chain: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CHAIN))

    @property
    def storage_uri(self) -> str:
        """Ray needs absolute storage: local paths (file:// too) become absolute paths, other URIs are kept."""
        local = self.storage.removeprefix("file://")
        if "://" in local:
            return self.storage
        return str(Path(local).expanduser().resolve())

    @property
    def is_local(self) -> bool:
        return "://" not in self.storage_uri

    @property
    def run_path(self) -> str:
        return f"{self.storage_uri.rstrip('/')}/{self.name}"

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def base_config(self) -> dict[str, Any]:
        """The chain settings every trial shares; the search adds the rest."""
        # Trials run in their own working folders: a relative data dir would point nowhere there.
        data_dir = str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None
        return {"dataset": self.dataset, "data_dir": data_dir, "teacher": self.teacher,
                "student": self.student, "epochs": self.epochs, "seed": self.seed, **self.chain}


def load_spec(path: Path | None, overrides: dict[str, Any]) -> StudySpec:
    """Spec from an optional TOML file (top-level keys, `[chain]` fixed chain settings), then flag overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_toml(path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    chain = {**DEFAULT_CHAIN, **_table(values.pop("chain", {}), "chain")}
    return validate(StudySpec(**_typed(values), chain=chain))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise UsageError(f"spec: cannot read {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"spec: {path} is not valid TOML ({error})") from None


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{name}: expected a table of chain settings, got {value!r}")
    return dict(value)


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(StudySpec)
    known = {f.name for f in dataclasses.fields(StudySpec)} - {"chain"}
    typed = {}
    for name, value in values.items():
        if name not in known:
            raise UsageError(f"{name}: unknown study key; expected one of {', '.join(sorted(known | {'chain'}))}")
        typed[name] = _coerce(name, hints[name], value)
    return typed


def _coerce(name: str, hint: Any, value: Any) -> Any:
    optional = type(None) in typing.get_args(hint)
    if value is None and optional:
        return None
    target = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if typing.get_origin(target) is tuple:
        item = typing.get_args(target)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(name, item, v) for v in value)
    elif target is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif target is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    elif target is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif target is str and isinstance(value, str):
        return value
    raise UsageError(f"{name}: expected {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {typing.get_args(hint)[0].__name__}"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint).__name__


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise UsageError(f"{name}: {message}")


def validate(spec: StudySpec) -> StudySpec:
    _check(bool(spec.name) and "/" not in spec.name, "name", f"expected a folder name, got {spec.name!r}")
    _check(spec.trials >= 1, "trials", f"expected >= 1, got {spec.trials}")
    _check(spec.epochs >= 1, "epochs", f"expected >= 1, got {spec.epochs}")
    _check(bool(spec.methods) and all(m in METHODS for m in spec.methods), "methods",
           f"expected a non-empty subset of {', '.join(METHODS)}, got {list(spec.methods)}")
    _check(1 <= len(spec.objectives) <= 2 and all(o in OBJECTIVES for o in spec.objectives)
           and len(set(spec.objectives)) == len(spec.objectives), "objectives",
           f"expected one or two of {', '.join(OBJECTIVES)}, got {list(spec.objectives)}")
    _check(spec.scheduler in SCHEDULERS, "scheduler", f"expected none or asha, got {spec.scheduler!r}")
    _check(not (spec.scheduler == "asha" and spec.multi_objective), "scheduler",
           "asha needs a single objective (it stops trials on one metric)")
    _check(spec.cpus_per_trial > 0, "cpus_per_trial", f"expected > 0, got {spec.cpus_per_trial}")
    _check(spec.gpus_per_trial >= 0, "gpus_per_trial", f"expected >= 0, got {spec.gpus_per_trial}")
    _check(spec.max_concurrent >= 1, "max_concurrent", f"expected >= 1, got {spec.max_concurrent}")
    _check(spec.max_failures >= 0, "max_failures", f"expected >= 0, got {spec.max_failures}")
    _check_range(spec.temperature_range, "temperature_range", low=1e-6)
    _check_range(spec.alpha_range, "alpha_range", low=0.0, high=1.0)
    _check_chain(spec)
    return spec


def _check_range(bounds: tuple[float, ...], name: str, low: float, high: float | None = None) -> None:
    ok = len(bounds) == 2 and low <= bounds[0] <= bounds[1] and (high is None or bounds[1] <= high)
    _check(ok, name, f"expected [low, high] with {low} <= low <= high{'' if high is None else f' <= {high}'}, "
                     f"got {list(bounds)}")


def _check_chain(spec: StudySpec) -> None:
    fixed = sorted(set(spec.chain) & set(SEARCHED_FIELDS))
    _check(not fixed, f"chain.{fixed[0]}" if fixed else "chain", "is searched; it cannot be fixed in [chain]")
    family, teacher_depth = _arch("teacher", spec.teacher)
    _, student_depth = _arch("student", spec.student)
    candidates = list(spec.ta_candidates)
    _check(all(student_depth < d < teacher_depth for d in candidates) and len(set(candidates)) == len(candidates),
           "ta_candidates", f"expected distinct depths strictly between {student_depth} and {teacher_depth}, "
                            f"got {candidates}")
    for depth in candidates:
        _arch("ta_candidates", f"{family}{depth}")
    needs_tas = {"takd", "dgkd", "ensemble"} & set(spec.methods)
    _check(bool(candidates) or not needs_tas, "ta_candidates", f"methods {sorted(needs_tas)} need TA candidates")
    try:
        base = ChainConfig.from_flat({**spec.base_config(), "method": "kd"})
    except ConfigError as error:
        field = str(error).split(":", 1)[0]
        # name the field where the user wrote it: a top-level study key, or a key of [chain]
        raise UsageError(str(error) if field in STUDY_LEVEL_CHAIN_FIELDS else f"chain.{error}") from None
    _check_data(base)


def _arch(name: str, arch: str) -> tuple[str, int]:
    try:
        return parse_arch(arch)
    except ValueError as error:
        raise UsageError(f"{name}: {str(error).split(': ', 1)[-1]}") from None


def _check_data(base: ChainConfig) -> None:
    """Loads the dataset's files once in the driver: a missing data dir must fail here, not in every trial."""
    from trainables.chain import load_chain_data
    from trainables.data import DataError

    if base.dataset.startswith("cifar"):
        _check(base.data_dir is not None, "data_dir", f"dataset {base.dataset} needs --data-dir")
        _check(os.path.isdir(os.path.expanduser(base.data_dir)), "data_dir", f"{base.data_dir} does not exist")
    try:
        load_chain_data(base)
    except DataError as error:
        raise UsageError(str(error)) from None
