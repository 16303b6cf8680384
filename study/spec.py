"""The study spec: what to search, on what data, with which resources. TOML file (or a packaged preset) + CLI
overrides, validated completely before Ray starts."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from analysis.storage import Location, locate
from study.errors import UsageError
from trainables.config import ChainConfig, ConfigError
from trainables.methods import all_params, method_class, method_names
from trainables.models import parse_arch
from trainables.typed import coerce

OBJECTIVES = {"student_val_acc": "max", "train_flops": "min"}
SCHEDULERS = ("none", "asha")
# Chain fields set by top-level study keys rather than by [chain].
STUDY_LEVEL_CHAIN_FIELDS = ("dataset", "data_dir", "teacher", "student", "epochs", "seed")
# Settings that say where and how a study runs, not what it finds: a rerun may change them freely.
RUNTIME_FIELDS = ("name", "storage", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "address")
# The runtime settings a study records beside its settings, so that the commands run after it (`kdstudy confirm`)
# run its trials as it did: a CIFAR study on GPUs must not be confirmed on CPUs.
RECORDED_RUNTIME = ("cpus_per_trial", "gpus_per_trial", "max_concurrent")
# Older spellings of search ranges, still accepted: `temperature_range = [1, 20]` is `[search] temperature = [1, 20]`.
RANGE_KEYS = {"temperature_range": "temperature", "alpha_range": "alpha"}

# The default study's chain (no spec): small enough for 2 CPU cores in a few minutes, where KD effects show: few
# training images (soft targets carry most information when labels are scarce) and TAKD's plain-CNN learning
# rate, 0.01 — at 0.05 the plain CNNs with a wide final layer (plain4) diverge under the T²-scaled KD loss.
DEFAULT_CHAIN: dict[str, Any] = {"width": 0.5, "train_size": 1000, "val_size": 500, "lr": 0.01,
                                 "lr_schedule": "cosine"}
PRESETS = resources.files("study") / "presets"
# The fit hold-out of every trial of a study whose search can draw a method that fits weights on it (the learned
# ensemble), unless its [chain] sets one: one value for all trials, so that every chain of the study trains on the
# same images and method groups compare paired (one split, one teacher per seed). Other studies hold out nothing.
DEFAULT_FIT_SIZE = 0.05


def _searched_fields() -> tuple[str, ...]:
    """Chain fields the search owns: a spec may not fix them in [chain]."""
    return ("method", "ta_depths", *all_params())


@dataclass(frozen=True)
class StudySpec:
    name: str = "default"
    storage: str = "runs"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    teacher: str = "plain10"
    student: str = "plain2"
    ta_candidates: tuple[int, ...] = (8, 6, 4)
    methods: tuple[str, ...] = field(default_factory=method_names)
    epochs: int = 8
    trials: int = 12
    seed: int = 0
    objectives: tuple[str, ...] = ("student_val_acc",)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 2
    max_failures: int = 1
    address: str | None = None
    scheduler: str = "none"
    # Per method setting, the searched range ([low, high]) or subset of choices, instead of the setting's default.
    search: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    chain: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CHAIN))

    @cached_property  # an object store's URI may cost a request to resolve
    def run(self) -> Location:
        """`<storage>/<name>`: local folder or URI (query options kept after the path)."""
        return locate(self.storage) / self.name

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def base_config(self) -> dict[str, Any]:
        """The chain settings every trial shares; the search adds the rest."""
        # Trials run in their own working folders: a relative data dir would point nowhere there.
        data_dir = str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None
        return {"dataset": self.dataset, "data_dir": data_dir, "teacher": self.teacher,
                "student": self.student, "epochs": self.epochs, "seed": self.seed, **self.trial_chain()}

    def trial_chain(self) -> dict[str, Any]:
        """The [chain] settings of every trial: the spec's, with `fit_size` resolved where it leaves it out."""
        if "fit_size" in self.chain:
            return dict(self.chain)
        from study.space import draws_a_fitting_method  # the space reads specs: imported where it is needed

        return {**self.chain, "fit_size": DEFAULT_FIT_SIZE if draws_a_fitting_method(self) else 0.0}

    def settings(self) -> dict[str, Any]:
        """What the study is, as plain JSON values: every field but the runtime ones."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in RUNTIME_FIELDS}
        values["search"] = {name: list(bounds) for name, bounds in sorted(self.search.items())}
        values["chain"] = dict(sorted(self.trial_chain().items()))
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}

    def runtime(self) -> dict[str, Any]:
        """How this session runs its trials (the runtime settings a study records)."""
        return {name: getattr(self, name) for name in RECORDED_RUNTIME}


def load_spec(path: Path | None, overrides: dict[str, Any], preset: str | None = None) -> StudySpec:
    """Spec from a TOML file or a preset (top-level keys, `[search]` ranges, `[chain]` fixed chain settings), then
    flag overrides."""
    values: dict[str, Any] = {}
    if preset is not None:
        values = _read_toml(preset_path(preset), name=f"preset {preset}")
    if path is not None:
        values = _read_toml(path)
    # A spec's [chain] starts from ChainConfig's defaults; only the default study (no spec) uses DEFAULT_CHAIN.
    chain = dict(DEFAULT_CHAIN) if path is None and preset is None else _table(values.pop("chain", {}), "chain")
    values.update({k: v for k, v in overrides.items() if v is not None})
    search = _table(values.pop("search", {}), "search")
    for key, param in RANGE_KEYS.items():
        if key in values:
            search[param] = _range_value(key, values.pop(key))
    return validate(StudySpec(**_typed(values), chain=chain, search=_search(search)))


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in PRESETS.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    if name not in preset_names():
        raise UsageError(f"preset: unknown preset {name!r}; expected one of {', '.join(preset_names())}")
    return Path(str(PRESETS / f"{name}.toml"))


def preset_summary(name: str) -> str:
    """The first comment line of a preset file: what it runs."""
    first = preset_path(name).read_text().splitlines()[0]
    return first.lstrip("# ").strip()


def _read_toml(path: Path, name: str = "spec") -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise UsageError(f"{name}: cannot read {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{name}: {path} is not valid TOML ({error})") from None


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{name}: expected a table of settings, got {value!r}")
    return dict(value)


def _range_value(name: str, value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"{name}: expected [low, high], got {value!r}")
    return list(value)


def _search(search: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    params = all_params()
    checked = {}
    for name, value in search.items():
        if name not in params:
            raise UsageError(f"search.{name}: not a setting of any method; expected one of {', '.join(params)}")
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"search.{name}: expected a list, got {value!r}")
        try:
            checked[name] = params[name].check_search(tuple(value))
        except ValueError as error:
            raise UsageError(f"search.{error}") from None
    return checked


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(StudySpec)
    known = {f.name for f in dataclasses.fields(StudySpec)} - {"chain", "search"}
    typed = {}
    for name, value in values.items():
        if name not in known:
            expected = ", ".join(sorted(known | {"chain", "search", *RANGE_KEYS}))
            raise UsageError(f"{name}: unknown study key; expected one of {expected}")
        if isinstance(value, str) and typing.get_origin(hints[name]) is tuple:
            value = [v.strip() for v in value.split(",") if v.strip()]  # from a flag: "8,6,4"
        try:
            typed[name] = coerce(name, hints[name], value)
        except ConfigError as error:
            raise UsageError(str(error)) from None
    return typed


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise UsageError(f"{name}: {message}")


def validate(spec: StudySpec) -> StudySpec:
    _check(bool(spec.name) and "/" not in spec.name and "?" not in spec.name, "name",
           f"expected a folder name, got {spec.name!r}")
    _check(spec.trials >= 1, "trials", f"expected >= 1, got {spec.trials}")
    _check(spec.epochs >= 1, "epochs", f"expected >= 1, got {spec.epochs}")
    _check(bool(spec.methods) and all(m in method_names() for m in spec.methods)
           and len(set(spec.methods)) == len(spec.methods), "methods",
           f"expected distinct methods among {', '.join(method_names())}, got {list(spec.methods)}")
    _check(1 <= len(spec.objectives) <= 2 and all(o in OBJECTIVES for o in spec.objectives)
           and len(set(spec.objectives)) == len(spec.objectives), "objectives",
           f"expected one or two of {', '.join(OBJECTIVES)}, got {list(spec.objectives)}")
    _check(spec.scheduler in SCHEDULERS, "scheduler", f"expected none or asha, got {spec.scheduler!r}")
    _check(not (spec.scheduler == "asha" and spec.multi_objective), "scheduler",
           "asha needs a single objective (it stops trials on one metric)")
    check_runtime(spec.runtime())
    _check(spec.max_failures >= 0, "max_failures", f"expected >= 0, got {spec.max_failures}")
    _check_search(spec)
    _check_chain(spec)
    _check_draws(spec)
    return spec


def check_runtime(runtime: dict[str, Any]) -> None:
    """The rules of the recorded runtime settings: a spec's, and those `kdstudy confirm` resolves."""
    _check(runtime["cpus_per_trial"] > 0, "cpus_per_trial", f"expected > 0, got {runtime['cpus_per_trial']}")
    _check(runtime["gpus_per_trial"] >= 0, "gpus_per_trial", f"expected >= 0, got {runtime['gpus_per_trial']}")
    _check(runtime["max_concurrent"] >= 1, "max_concurrent", f"expected >= 1, got {runtime['max_concurrent']}")


def _check_search(spec: StudySpec) -> None:
    searched = {p.name for m in spec.methods for p in method_class(m).params}
    for name in spec.search:
        _check(name in searched, f"search.{name}", f"no method of this study ({', '.join(spec.methods)}) has it")


def _check_chain(spec: StudySpec) -> None:
    fixed = sorted(set(spec.chain) & set(_searched_fields()))
    _check(not fixed, f"chain.{fixed[0]}" if fixed else "chain", "is searched; it cannot be fixed in [chain]")
    family, teacher_depth = _arch("teacher", spec.teacher)
    _, student_depth = _arch("student", spec.student)
    candidates = list(spec.ta_candidates)
    _check(all(student_depth < d < teacher_depth for d in candidates) and len(set(candidates)) == len(candidates),
           "ta_candidates", f"expected distinct depths strictly between {student_depth} and {teacher_depth}, "
                            f"got {candidates}")
    for depth in candidates:
        _arch("ta_candidates", f"{family}{depth}")
    needs_tas = sorted(m for m in spec.methods if method_class(m).uses_tas)
    _check(bool(candidates) or not needs_tas, "ta_candidates", f"methods {needs_tas} need TA candidates")
    try:
        base = ChainConfig.from_flat({**spec.base_config(), "method": "kd"})
    except ConfigError as error:
        field_name = str(error).split(":", 1)[0]
        # name the field where the user wrote it: a top-level study key, or a key of [chain]
        raise UsageError(str(error) if field_name in STUDY_LEVEL_CHAIN_FIELDS else f"chain.{error}") from None
    _check_data(base)


def _check_draws(spec: StudySpec) -> None:
    from study.space import invalid_draw  # the space reads specs: imported where it is needed

    problem = invalid_draw(spec)
    if problem is not None:
        raise UsageError(problem)


def _arch(name: str, arch: str) -> tuple[str, int]:
    try:
        return parse_arch(arch)
    except ValueError as error:
        raise UsageError(f"{name}: {str(error).split(': ', 1)[-1]}") from None


def _check_data(base: ChainConfig) -> None:
    """Loads the dataset's files once in the driver: a missing data dir must fail here, not in every trial."""
    from trainables.data import DataError, load_chain_data

    try:
        load_chain_data(base)
    except DataError as error:
        raise UsageError(str(error)) from None
