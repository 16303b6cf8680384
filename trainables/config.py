"""The typed, frozen description of one KD chain; built from the flat dicts that Optuna, JSON and the CLI produce."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A bad config value; the message is one line that starts with the field's name."""


METHODS = ("nokd", "kd", "takd", "dgkd", "ensemble")
WEIGHTINGS = ("mean", "learned", "confidence")
SPACES = ("prob", "logit")
LR_SCHEDULES = ("constant", "cosine")
# Methods whose chains have no teacher assistants by definition.
METHODS_WITHOUT_TAS = ("nokd", "kd")


@dataclass(frozen=True)
class ChainConfig:
    """One chain: teacher → TAs → student, the KD method and the training recipe (shared by every hop)."""

    dataset: str = "mnist5k"
    data_dir: str | None = None
    val_size: float = 0.1
    train_size: int | None = None
    augment: bool = False

    teacher: str = "plain10"
    ta_depths: tuple[int, ...] = ()
    student: str = "plain2"
    width: float = 1.0

    method: str = "kd"
    weighting: str = "mean"
    space: str = "prob"
    drop: int = 0
    temperature: float = 4.0
    alpha: float = 0.5

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    lr_schedule: str = "constant"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        # Normalise types so equal configs compare and hash equal however they were built (200 vs 200.0).
        object.__setattr__(self, "ta_depths", tuple(self.ta_depths))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        _validate(self)

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> ChainConfig:
        """Typed config from a flat dict; unknown keys and ill-typed values are rejected naming the field."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown config key; expected one of {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        values = {name: _coerce(name, hints[name], value) for name, value in flat.items()}
        return cls(**values)

    def to_flat(self) -> dict[str, Any]:
        flat = {f.name: getattr(self, f.name) for f in fields(self)}
        flat["ta_depths"] = list(self.ta_depths)
        return flat

    def replace(self, **changes: Any) -> ChainConfig:
        return ChainConfig.from_flat({**self.to_flat(), **changes})

    @property
    def ta_archs(self) -> tuple[str, ...]:
        """TAs belong to the teacher's family; the search varies only their depths."""
        family, _ = _parse_arch("teacher", self.teacher)
        return tuple(f"{family}{depth}" for depth in self.ta_depths)

    @property
    def val_holdout(self) -> float | int:
        """`val_size` as the data loader reads it: a fraction below 1, else a count."""
        return self.val_size if self.val_size < 1 else int(self.val_size)

    @property
    def archs(self) -> tuple[str, ...]:
        """Every model the chain trains, top to bottom."""
        if self.method == "nokd":
            return (self.student,)
        return (self.teacher, *self.ta_archs, self.student)

    @property
    def num_teachers_of_student(self) -> int:
        return len(self.archs) - 1


_FLOAT_FIELDS = tuple(name for name, hint in typing.get_type_hints(ChainConfig).items() if hint is float)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Checks `value` against the field's annotation; ints are accepted where floats are expected."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        ok, coerced = _try_type(option, value)
        if ok:
            return coerced
    expected = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"{name}: expected {expected}, got {value!r}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _try_type(option: Any, value: Any) -> tuple[bool, Any]:
    if option is bool:
        return isinstance(value, bool), value
    if option is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if option is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if option is str:
        return isinstance(value, str), value
    if typing.get_origin(option) is tuple:
        ok = isinstance(value, (list, tuple)) and all(_try_type(int, v)[0] for v in value)
        return ok, tuple(value) if ok else value
    return False, value


def _type_name(option: Any) -> str:
    if typing.get_origin(option) is tuple:
        return "a list of integers"
    return "null" if option is type(None) else option.__name__


def _parse_arch(name: str, arch: str) -> tuple[str, int]:
    from trainables.models import parse_arch

    try:
        return parse_arch(arch)
    except ValueError as error:
        raise ConfigError(f"{name}: {str(error).split(': ', 1)[-1]}") from None


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


def _validate(cfg: ChainConfig) -> None:
    _validate_data(cfg)
    _validate_chain(cfg)
    _validate_method(cfg)
    _validate_recipe(cfg)


def _validate_data(cfg: ChainConfig) -> None:
    from trainables.data import available_datasets

    names = available_datasets()
    _check(cfg.dataset in names, "dataset", f"expected one of {', '.join(names)}, got {cfg.dataset!r}")
    if isinstance(cfg.val_size, float) and not cfg.val_size.is_integer():
        _check(0 < cfg.val_size < 1, "val_size", f"expected a fraction in (0, 1) or a count >= 1, got {cfg.val_size}")
    else:
        _check(cfg.val_size >= 1, "val_size", f"expected a fraction in (0, 1) or a count >= 1, got {cfg.val_size}")
    if cfg.train_size is not None:
        _check(cfg.train_size >= 1, "train_size", f"expected a count >= 1 or null, got {cfg.train_size}")


def _validate_chain(cfg: ChainConfig) -> None:
    teacher_family, teacher_depth = _parse_arch("teacher", cfg.teacher)
    _, student_depth = _parse_arch("student", cfg.student)
    _check(cfg.width > 0, "width", f"expected a multiplier > 0, got {cfg.width}")
    if cfg.method != "nokd":
        _check(teacher_depth > student_depth, "teacher",
               f"expected a model deeper than the student {cfg.student}, got {cfg.teacher}")
    depths = list(cfg.ta_depths)
    _check(all(student_depth < d < teacher_depth for d in depths), "ta_depths",
           f"expected depths strictly between the student ({student_depth}) and the teacher ({teacher_depth}), got {depths}")
    _check(all(a > b for a, b in zip(depths, depths[1:])), "ta_depths",
           f"expected strictly decreasing depths, got {depths}")
    for depth in depths:
        _parse_arch("ta_depths", f"{teacher_family}{depth}")


def _validate_method(cfg: ChainConfig) -> None:
    _check(cfg.method in METHODS, "method", f"expected one of {', '.join(METHODS)}, got {cfg.method!r}")
    _check(cfg.weighting in WEIGHTINGS, "weighting", f"expected one of {', '.join(WEIGHTINGS)}, got {cfg.weighting!r}")
    _check(cfg.space in SPACES, "space", f"expected one of {', '.join(SPACES)}, got {cfg.space!r}")
    if cfg.method in METHODS_WITHOUT_TAS:
        _check(not cfg.ta_depths, "ta_depths", f"method {cfg.method!r} takes no TAs, got {list(cfg.ta_depths)}")
    if cfg.method != "ensemble":
        _check(cfg.weighting == "mean", "weighting", f"only method 'ensemble' weights teachers, got {cfg.weighting!r}")
        _check(cfg.space == "prob", "space", f"only method 'ensemble' averages teachers, got {cfg.space!r}")
    _check(cfg.drop >= 0, "drop", f"expected a count >= 0, got {cfg.drop}")
    if cfg.method != "dgkd":
        _check(cfg.drop == 0, "drop", f"only method 'dgkd' drops teachers, got {cfg.drop}")
    else:
        teachers = cfg.num_teachers_of_student
        _check(cfg.drop < teachers, "drop",
               f"expected fewer than the student's {teachers} teacher(s), got {cfg.drop}")
    _check(cfg.temperature > 0, "temperature", f"expected > 0, got {cfg.temperature}")
    _check(0 <= cfg.alpha <= 1, "alpha", f"expected a value in [0, 1], got {cfg.alpha}")


def _validate_recipe(cfg: ChainConfig) -> None:
    _check(cfg.epochs >= 1, "epochs", f"expected >= 1, got {cfg.epochs}")
    _check(cfg.batch_size >= 1, "batch_size", f"expected >= 1, got {cfg.batch_size}")
    _check(cfg.lr > 0, "lr", f"expected > 0, got {cfg.lr}")
    _check(cfg.lr_schedule in LR_SCHEDULES, "lr_schedule",
           f"expected one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    _check(0 <= cfg.momentum < 1, "momentum", f"expected a value in [0, 1), got {cfg.momentum}")
    _check(cfg.weight_decay >= 0, "weight_decay", f"expected >= 0, got {cfg.weight_decay}")
    _check(cfg.seed >= 0, "seed", f"expected >= 0, got {cfg.seed}")
    _check(cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda"), "device",
           f"expected auto, cpu or cuda[:N], got {cfg.device!r}")

