"""The study spec: what to search, on what data, with which resources. TOML file (or a packaged preset) + CLI
overrides, validated completely before Ray starts.

Each study setting is declared once on `StudySpec` (`setting`: type, default, bounds or choices, help, and whether it
is a runtime setting); a chain setting the study sets for all its trials is the chain's declaration (`same_as`),
with the study's own default where it differs. `STUDY_SETTINGS` reads them back: `kdstudy run`'s flags, the checks
below and the README's table of settings follow."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from runstore.storage import Location, locate
from trainables.config import CHAIN_SETTINGS, ChainConfig
from trainables.methods import Param, all_params, method_class, method_names
from trainables.methods.params import Search, declared, setting
from trainables.models import parse_arch
from trainables.typed import InputError, coerce

OBJECTIVES = {"student_val_acc": "max", "train_flops": "min"}
SCHEDULERS = ("auto", "none", "asha", "halving")
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


def _chain(name: str, default: Any = dataclasses.MISSING) -> Any:
    """A chain setting set by a top-level study key for every trial: the chain's declaration, and its default
    unless the study declares its own."""
    chain_setting = CHAIN_SETTINGS[name]
    return setting(chain_setting.default if default is dataclasses.MISSING else default, same_as=chain_setting)


@dataclass(frozen=True)
class StudySpec:
    name: str = setting("default", "study name: results go to STORAGE/NAME/", scope="runtime")
    storage: str = setting("runs", "local folder or pyarrow URI, e.g. s3://bucket/studies", scope="runtime")
    dataset: str = _chain("dataset")
    data_dir: str | None = _chain("data_dir")
    teacher: str = _chain("teacher")
    student: str = _chain("student")
    ta_candidates: tuple[int, ...] = setting((8, 6, 4), "candidate TA depths, e.g. 8,6,4")
    methods: tuple[str, ...] = setting(help="methods to consider, e.g. takd,dgkd,ensemble", factory=method_names)
    # The default study is small enough for 2 CPU cores in a few minutes; a single chain's default stays 10.
    epochs: int = _chain("epochs", 8)
    trials: int = setting(12, "trials in all; a larger number grows an existing study", low=1)
    seed: int = _chain("seed")
    objectives: tuple[str, ...] = setting(("student_val_acc",), "student_val_acc, or student_val_acc,train_flops "
                                                               "(multi-objective)")
    cpus_per_trial: float = setting(1.0, "CPUs per trial", low=0.0, low_open=True, scope="runtime")
    gpus_per_trial: float = setting(0.0, "GPUs per trial; fractions share a GPU", low=0.0, scope="runtime")
    max_concurrent: int = setting(2, "trials at a time", low=1, scope="runtime")
    max_failures: int = setting(1, "retries of a failed trial", low=0, scope="runtime")
    address: str | None = setting(None, "Ray cluster address; 'auto' joins a running cluster", scope="runtime")
    # auto: successive halving, the policy bench/study_cost.py measured best (the same configurations found for
    # well under a fifth of naive's FLOPs), wherever it can run: it stops trials on one metric.
    scheduler: str = setting("auto", "auto (halving for one objective, none for two), none, asha (early stopping "
                                     "on the student's epochs) or halving (successive halving over the whole "
                                     "chain's epochs per hop)", choices=SCHEDULERS)
    halving_min: float = setting(1 / 16, "halving: the lowest rung's epochs per hop, as a share of epochs", low=0.0,
                                 low_open=True, high=1.0, high_open=True)
    halving_factor: int = setting(4, "halving: reduction factor between rungs (a rung keeps 1/factor of the "
                                     "chains that reach it)", low=2)
    # The seed paper's comparison that warm-starts every study, at the nearest values the search draws.
    warm_temperature: float = setting(5.0, "T of the warm starts: the seed paper's comparison", low=0.0,
                                      low_open=True)
    warm_alpha: float = setting(0.5, "α of the warm starts: the seed paper's comparison", low=0.0, high=1.0)
    # Per method setting, what the search draws instead of the setting's default: written as a spec writes it
    # (`(low, high)`, a list of choices, a table), held as a checked `Search`.
    search: dict[str, Search] = field(default_factory=dict)
    chain: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CHAIN))

    def __post_init__(self) -> None:
        object.__setattr__(self, "search", _search(self.search))

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> StudySpec:
        """The spec file as `kdstudy run --spec` reads and checks it; keyword arguments override its settings as
        the flags do (`trials=20`)."""
        return load_spec(Path(path), overrides)

    @cached_property  # an object store's URI may cost a request to resolve
    def run(self) -> Location:
        """`<storage>/<name>`: local folder or URI (query options kept after the path)."""
        return locate(self.storage) / self.name

    def searched(self, param: Param) -> Search:
        """What the study draws for a method setting: its `[search]` entry, else the setting's default."""
        return self.search.get(param.name) or param.default_search

    @property
    def early_stopping(self) -> str:
        """The scheduler the study runs: `scheduler`, with auto resolved."""
        if self.scheduler == "auto":
            return "none" if self.multi_objective else "halving"
        return self.scheduler

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
        # Every searched setting as the study draws it, its default included: a study grown after a default
        # changed is refused like any changed setting (its journal's distributions would not take the new draws).
        searched = {p.name: p for method in self.methods for p in method_class(method).params}
        values["search"] = {name: param.recorded_search(self.searched(param))
                            for name, param in sorted(searched.items())}
        values["chain"] = dict(sorted(self.trial_chain().items()))
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}

    def runtime(self) -> dict[str, Any]:
        """How this session runs its trials (the runtime settings a study records)."""
        return {name: getattr(self, name) for name in RECORDED_RUNTIME}


STUDY_SETTINGS: dict[str, Param] = declared(StudySpec, "study")
# Settings that say where and how a study runs, not what it finds: a rerun may change them freely.
RUNTIME_FIELDS = tuple(name for name, p in STUDY_SETTINGS.items() if p.scope == "runtime")
# Chain fields set by top-level study keys rather than by [chain].
STUDY_LEVEL_CHAIN_FIELDS = tuple(name for name, p in STUDY_SETTINGS.items() if p.scope == "chain")


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
    return validate(StudySpec(**_typed(values), chain=chain, search=search))


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in PRESETS.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    if name not in preset_names():
        raise InputError("preset", problem=f"unknown preset {name!r}; expected one of {', '.join(preset_names())}")
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
        raise InputError(name, problem=f"cannot read {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(name, problem=f"{path} is not valid TOML ({error})") from None


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(name, "a table of settings", value)
    return dict(value)


def _range_value(name: str, value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise InputError(name, "[low, high]", value)
    return list(value)


def _search(search: dict[str, Any]) -> dict[str, Search]:
    params = all_params()
    checked = {}
    for name, value in search.items():
        if name not in params:
            raise InputError(f"search.{name}", problem=f"not a setting of any method; expected one of "
                                                       f"{', '.join(params)}")
        try:
            checked[name] = params[name].check_search(value)
        except InputError as error:
            raise error.within("search.") from None
    return checked


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    typed = {}
    for name, value in values.items():
        if name not in STUDY_SETTINGS:
            expected = ", ".join(sorted({*STUDY_SETTINGS, "chain", "search", *RANGE_KEYS}))
            raise InputError(name, problem=f"unknown study key; expected one of {expected}")
        kind = STUDY_SETTINGS[name].kind
        if isinstance(value, str) and typing.get_origin(kind) is tuple:
            value = [v.strip() for v in value.split(",") if v.strip()]  # TOML's "takd,dgkd" for a list
        typed[name] = coerce(name, kind, value)
    return typed


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise InputError(name, problem=message)


def validate(spec: StudySpec) -> StudySpec:
    check_name(spec.name)
    for name, declared_setting in STUDY_SETTINGS.items():
        declared_setting.check(getattr(spec, name))
    _check(bool(spec.methods) and all(m in method_names() for m in spec.methods)
           and len(set(spec.methods)) == len(spec.methods), "methods",
           f"expected distinct methods among {', '.join(method_names())}, got {list(spec.methods)}")
    _check(1 <= len(spec.objectives) <= 2 and all(o in OBJECTIVES for o in spec.objectives)
           and len(set(spec.objectives)) == len(spec.objectives), "objectives",
           f"expected one or two of {', '.join(OBJECTIVES)}, got {list(spec.objectives)}")
    _check(not (spec.early_stopping != "none" and spec.multi_objective), "scheduler",
           f"{spec.scheduler} needs a single objective (it stops trials on one metric)")
    _check_search(spec)
    _check_chain(spec)
    _check_draws(spec)
    return spec


def check_name(name: str) -> None:
    """A run's name is one folder under its storage (and no URI's query)."""
    _check(bool(name) and "/" not in name and "?" not in name, "name", f"expected a folder name, got {name!r}")


def check_runtime(runtime: dict[str, Any]) -> None:
    """The rules of the recorded runtime settings: a spec's, and those `kdstudy confirm` resolves."""
    for name, value in runtime.items():
        STUDY_SETTINGS[name].check(value)


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
    except InputError as error:
        # name the field where the user wrote it: a top-level study key, or a key of [chain]
        raise error.within("" if error.field in STUDY_LEVEL_CHAIN_FIELDS else "chain.") from None
    _check_data(base)


def _check_draws(spec: StudySpec) -> None:
    from study.space import invalid_draw  # the space reads specs: imported where it is needed

    problem = invalid_draw(spec)
    if problem is not None:
        raise problem


def _arch(name: str, arch: str) -> tuple[str, int]:
    return parse_arch(arch, field=name)


def _check_data(base: ChainConfig) -> None:
    """Loads the dataset's files once in the driver: a missing data dir must fail here, not in every trial."""
    from trainables.data import load_chain_data

    load_chain_data(base)
