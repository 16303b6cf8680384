"""A setting a KD method adds to a chain: its type, its default, what is valid, and how the search suggests it.

Declared on the method class (`params = (...)`), a `Param` is all the rest of the system needs: `ChainConfig`
checks values against it, the search space suggests it, the hop identity and the Parquet columns include it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from trainables.typed import coerce

Value = bool | int | float | str


class Suggester(Protocol):
    """The part of `optuna.trial.Trial` a space needs (kept structural: trainables does not import Optuna)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class Param:
    """`kind` is float, int or str. Numbers are valid in [low, high] (`low_open` excludes low); strings and
    categorical numbers must be one of `choices`. `search` is the default range (numbers) or the default subset
    (choices) the study suggests from; `label` formats the value in a configuration's label ("T={:.1f}").
    `distillation_only`: the value only shapes the distillation term, so at α = 0 it cannot change a hop's
    weights and is left out of its identity (`KDMethod.identity`)."""

    name: str
    kind: type
    default: Value
    help: str
    choices: tuple[Value, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    search: tuple[Value, ...] = ()
    log: bool = False
    label: str | None = None
    distillation_only: bool = False

    def coerce(self, value: Any) -> Value:
        """`value` as this param's type, by the project's coercion rule (`trainables.typed`), and checked; raises
        ValueError naming the param. A whole float is also an int here: a pandas column of a setting that is
        null for other methods' rows holds its integers as floats."""
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        value = coerce(self.name, self.kind, value)
        self.check(value)
        return value

    def check(self, value: Value) -> None:
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"{self.name}: expected one of {', '.join(map(str, self.choices))}, got {value!r}")
            return
        if self.kind is float and not math.isfinite(value):
            raise ValueError(f"{self.name}: expected a finite number, got {value}")
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and value > self.high
        if below or above:
            raise ValueError(f"{self.name}: expected a value in {self.interval()}, got {value}")

    def interval(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high is None else ']'}"

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
                raise ValueError(f"{self.name}: expected a non-empty list of {', '.join(map(str, self.choices))}")
            return tuple(self.coerce(v) for v in values)
        if len(values) != 2:
            raise ValueError(f"{self.name}: expected [low, high], got {list(values)}")
        low, high = (self.coerce(v) for v in values)
        if low > high:
            raise ValueError(f"{self.name}: expected low <= high, got {list(values)}")
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


TEMPERATURE = Param("temperature", float, 4.0, "softmax temperature T of the distillation term",
                    low=0.0, low_open=True, search=(1.0, 20.0), log=True, label="T={:.1f}", distillation_only=True)
ALPHA = Param("alpha", float, 0.5, "weight α of the distillation term; 1 - α weighs the labels' cross-entropy",
              low=0.0, high=1.0, search=(0.0, 1.0), label="α={:.2f}")
KD_PARAMS = (TEMPERATURE, ALPHA)
