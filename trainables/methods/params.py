"""A setting: its type, its default, what is valid, its help, and how the search suggests it — declared once.

A KD method declares its settings on its class (`params = (...)`): `ChainConfig` checks values against them, the
search space suggests them, the hop identity and the Parquet columns include them. The chain's own settings
(`ChainConfig`) and the study's (`StudySpec`) are declared the same way, on their dataclass fields (`setting`), and
read back as `Param`s (`declared`): the CLI's flags, the bounds checks and the README's table of settings follow.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol

from trainables.typed import InputError, coerce

Scope = Literal["method", "chain", "study", "runtime", "confirm"]

Value = bool | int | float | str


class Suggester(Protocol):
    """The part of `optuna.trial.Trial` a space needs (kept structural: trainables does not import Optuna)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class Param:
    """`kind` is float, int, str or bool (a method's setting), or any annotation `trainables.typed` coerces to
    (`int | None`, `tuple[int, ...]`: a chain's or study's setting). Numbers are valid in [low, high] (`low_open`,
    `high_open` exclude an end; each item of a tuple); strings and categorical numbers are valid among `choices`.
    `search` is the default range (numbers) or the default subset (choices) the study suggests from; `label` formats
    the value in a configuration's label ("T={:.1f}"). `distillation_only`: the value only shapes the distillation
    term, so at α = 0 it cannot change a hop's weights and is left out of its identity (`KDMethod.identity`).
    `scope`: a KD method's setting, a chain's (`ChainConfig`), a study's (`StudySpec`), a study's runtime
    setting (where and how it runs, not what it finds), or a confirmation's own (`kdstudy confirm --top`). `flag`:
    the CLI's name where it is not the setting's."""

    name: str
    kind: Any
    default: Any
    help: str
    choices: tuple[Value, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    search: tuple[Value, ...] = ()
    log: bool = False
    label: str | None = None
    distillation_only: bool = False
    scope: Scope = "method"
    flag: str | None = None

    def coerce(self, value: Any) -> Value:
        """`value` as this param's type, by the project's coercion rule (`trainables.typed`), and checked; raises
        InputError naming the param. A whole float is also an int here: a pandas column of a setting that is
        null for other methods' rows holds its integers as floats."""
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        value = coerce(self.name, self.kind, value)
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """The declared rule: one of the choices, or within the bounds (each item of a tuple); None passes where the
        annotation allows it (coercion has checked that)."""
        for item in value if isinstance(value, tuple) else () if value is None else (value,):
            self._check_one(item, value)

    def _check_one(self, item: Value, value: Any) -> None:
        if self.choices:
            if item not in self.choices:
                raise InputError(self.name, f"one of {', '.join(map(str, self.choices))}", value)
            return
        if isinstance(item, float) and not math.isfinite(item):
            raise InputError(self.name, "a finite number", value)
        below = self.low is not None and (item <= self.low if self.low_open else item < self.low)
        above = self.high is not None and (item >= self.high if self.high_open else item > self.high)
        if below or above:
            raise InputError(self.name, self.bounds(), value)

    def bounds(self) -> str:
        """What the bounds allow, in words: ">= 1", "> 0", "a value in [0, 1]"."""
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"a value in {self.interval()}"

    def interval(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}" \
               f"{')' if self.high_open or self.high is None else ']'}"

    # --- the search -------------------------------------------------------------------------------------------

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    def search_values(self, override: tuple[Value, ...] | None = None) -> tuple[Value, ...]:
        """The searched range (low, high) or subset of choices: a study's override, else the default."""
        return tuple(override) if override else (self.search or self.choices)

    def check_search(self, values: tuple[Any, ...]) -> tuple[Value, ...]:
        """A study's override, checked: a non-empty subset of the choices, or [low, high] of valid numbers."""
        if self.categorical:
            if not values:
                raise InputError(self.name, f"a non-empty list of {', '.join(map(str, self.choices))}")
            return tuple(self.coerce(v) for v in values)
        if len(values) != 2:
            raise InputError(self.name, "[low, high]", list(values))
        low, high = (self.coerce(v) for v in values)
        if low > high:
            raise InputError(self.name, "low <= high", list(values))
        return low, high

    def suggest(self, trial: Suggester, override: tuple[Value, ...] | None = None) -> Value:
        values = self.search_values(override)
        if self.categorical:
            return trial.suggest_categorical(self.name, list(values))
        if self.kind is int:
            return trial.suggest_int(self.name, int(values[0]), int(values[1]))
        return trial.suggest_float(self.name, float(values[0]), float(values[1]), log=self.log)

    def cardinality(self, override: tuple[Value, ...] | None = None) -> float:
        """How many distinct values the search can draw: finite for choices, integers and a one-point range."""
        values = self.search_values(override)
        if self.categorical:
            return len(set(values))
        if self.kind is int:
            return int(values[1]) - int(values[0]) + 1
        return 1 if values[0] == values[1] else math.inf

    def format(self, value: Value) -> str | None:
        return None if self.label is None else self.label.format(value)


    @property
    def flag_name(self) -> str:
        return "--" + (self.flag or self.name).replace("_", "-")

    @property
    def value_type(self) -> Any:
        """The annotation without None: what a given value is (`int | None` → int)."""
        if typing.get_origin(self.kind) in (typing.Union, types.UnionType):
            options = [o for o in typing.get_args(self.kind) if o is not type(None)]
            return options[0] if len(options) == 1 else self.kind
        return self.kind


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
            **rules: Any) -> Any:
    """A dataclass field declared as a setting: its default and what the `Param` holds besides its name and type
    (the field's annotation). Read back with `declared`."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"setting": {"help": help, **rules}})
    return dataclasses.field(default=default, metadata={"setting": {"help": help, **rules}})


def declared(cls: type, scope: Scope) -> dict[str, Param]:
    """The settings a dataclass declares with `setting`, by name, in field order. A field's rules may name its
    scope (a study's runtime settings); a field declared as `same_as=Param` is that setting (a chain setting a
    study sets for all its trials), with its own default."""
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        if "setting" not in f.metadata:
            continue
        rules = dict(f.metadata["setting"])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        same_as = rules.pop("same_as", None)
        if same_as is not None:
            found[f.name] = dataclasses.replace(same_as, default=default)
            continue
        rules.setdefault("scope", scope)
        found[f.name] = Param(f.name, hints[f.name], default, **rules)
    return found


TEMPERATURE = Param("temperature", float, 4.0, "softmax temperature T of the distillation term",
                    low=0.0, low_open=True, search=(1.0, 20.0), log=True, label="T={:.1f}", distillation_only=True)
ALPHA = Param("alpha", float, 0.5, "weight α of the distillation term; 1 - α weighs the labels' cross-entropy",
              low=0.0, high=1.0, search=(0.0, 1.0), label="α={:.2f}")
KD_PARAMS = (TEMPERATURE, ALPHA)
