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

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class Search:
    """What a study draws for one setting: one of `choices`, or a number in [low, high] — every `step` from low (a
    grid), or any (a continuous range, on a log scale with `log`). `Param.check_search` builds it from what a spec
    writes and checks it against the setting's rules."""

    low: float | None = None  # an int setting's are ints
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Value, ...] = ()

    def ends(self) -> tuple[Value, ...]:
        """The values that stand for the whole search where a rule is monotone in each number: every choice, or
        both ends of the range."""
        return self.choices or (self.low, self.high)

    def count(self, integer: bool) -> float:
        """How many distinct values it draws: finite for choices, a grid, integers and a one-point range."""
        if self.choices:
            return len(self.choices)
        if self.step is not None:
            return round((self.high - self.low) / self.step) + 1
        if integer:
            return self.high - self.low + 1
        return 1 if self.low == self.high else math.inf

    def nearest(self, value: Any) -> Any:
        """The value it draws that is nearest `value` (of two choices as near, the lower). A grid point is the very
        number Optuna draws for it (`low + k·step`, computed as Optuna computes it: 0.15000000000000002 for 0.15 on a
        0.05 grid), so that a warm start and a drawn trial at one point are one configuration and share their hops."""
        if self.choices:
            return min(self.choices, key=lambda choice: (abs(choice - value), choice))
        clipped = min(max(value, self.low), self.high)
        if self.step is None:
            return clipped
        return min(max(round((clipped - self.low) / self.step) * self.step + self.low, self.low), self.high)

    def contains(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        return self.low <= value <= self.high and (self.step is None or self.nearest(value) == value)

    def table(self) -> dict[str, Any]:
        """As a spec's table writes it (`{low, high, step}`, `{low, high, log}` or `{choices}`)."""
        if self.choices:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high,
                **({"step": self.step} if self.step is not None else {"log": self.log})}


SEARCH_KEYS = ("low", "high", "step", "log", "choices")
# A grid's span must be a whole number of steps; this much relative slack absorbs decimal steps in binary floats
# (0.95 / 0.05 = 18.999999999999996).
STEP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Param:
    """`kind` is float, int, str or bool (a method's setting), or any annotation `trainables.typed` coerces to
    (`int | None`, `tuple[int, ...]`: a chain's or study's setting). Numbers are valid in [low, high] (`low_open`,
    `high_open` exclude an end; each item of a tuple); strings and categorical numbers are valid among `choices`.
    `search` is what a study draws unless its `[search]` says otherwise (a `Search`, or written as a spec writes it:
    `(low, high)`; by default every choice); `log`: the scale a continuous range of it is drawn on unless a spec
    says otherwise. `label` formats the value in a configuration's label ("T={:.1f}"). `distillation_only`: the
    value only shapes the distillation term, so at α = 0 it cannot change a hop's weights and is left out of its
    identity (`KDMethod.identity`). `scope`: a KD method's setting, a chain's (`ChainConfig`), a study's
    (`StudySpec`), a study's runtime setting (where and how it runs, not what it finds), or a confirmation's own
    (`kdstudy confirm --top`). `flag`: the CLI's name where it is not the setting's."""

    name: str
    kind: Any
    default: Any
    help: str
    choices: tuple[Value, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    search: Search | tuple[Value, ...] | None = None
    log: bool = False
    label: str | None = None
    distillation_only: bool = False
    scope: Scope = "method"
    flag: str | None = None

    def __post_init__(self) -> None:
        # A declaration may write its search as a spec does ((low, high), choices): it is held checked, typed.
        if self.search is not None:
            object.__setattr__(self, "search", self.check_search(self.search))

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

    @property
    def default_search(self) -> Search:
        """What a study draws unless its `[search]` says otherwise: the declared search, else every choice."""
        return self.search if self.search is not None else Search(choices=self.choices)

    def check_search(self, value: Any) -> Search:
        """What a spec's `[search]` writes for this setting, checked against its rules: a list of choices
        (`["mean", "learned"]`, or `{choices = [...]}`) for a categorical setting; for a number `[low, high]` or
        `{low, high}` (continuous, on the setting's scale unless `log` says otherwise), `{low, high, step}` (a grid)
        or `{choices = [...]}`. Raises InputError naming the setting."""
        written = value
        if isinstance(value, Search):
            value = value.table()
        if isinstance(value, (list, tuple)):
            value = {"choices": list(value)} if self.categorical else self._range_table(value)
        if not isinstance(value, dict) or not value or not set(value) <= set(self._search_keys()):
            raise InputError(self.name, self._search_forms(), written)
        if "choices" in value:
            if len(value) > 1:
                raise InputError(self.name, "choices alone, or low and high", written)
            return Search(choices=self._check_choices(value["choices"], written))
        return self._check_range(value, written)

    def _search_keys(self) -> tuple[str, ...]:
        return ("choices",) if self.categorical else SEARCH_KEYS

    def _search_forms(self) -> str:
        if self.categorical:
            return f"a list of {', '.join(map(str, self.choices))} (or {{choices = [...]}})"
        return "[low, high], {low, high}, {low, high, step} or {choices = [...]}"

    def _range_table(self, values: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
        if len(values) != 2:
            raise InputError(self.name, "[low, high]", list(values))
        return {"low": values[0], "high": values[1]}

    def _check_choices(self, choices: Any, written: Any) -> tuple[Value, ...]:
        if not isinstance(choices, (list, tuple)) or not choices:
            raise InputError(self.name, "a non-empty list of choices", written)
        checked = tuple(self.coerce(choice) for choice in choices)
        if len(set(checked)) != len(checked):
            raise InputError(self.name, "distinct choices", written)
        return checked

    def _check_range(self, table: dict[str, Any], written: Any) -> Search:
        if "low" not in table or "high" not in table:
            raise InputError(self.name, "both low and high", written)
        low, high = self.coerce(table["low"]), self.coerce(table["high"])
        if low > high:
            raise InputError(self.name, "low <= high", written)
        log = table.get("log", self.log and "step" not in table)
        if not isinstance(log, bool):
            raise InputError(self.name, "log = true or false", written)
        if "step" not in table:
            if log and low <= 0:
                raise InputError(self.name, "low > 0 on a log scale", written)
            return Search(low, high, log=log)
        if log:
            raise InputError(self.name, "a step or log = true, not both (a grid is evenly spaced)", written)
        step = coerce(self.name, self.kind, table["step"])
        if step <= 0:
            raise InputError(self.name, "a step > 0", written)
        steps = (high - low) / step
        if not math.isclose(steps, round(steps), rel_tol=STEP_TOLERANCE, abs_tol=STEP_TOLERANCE):
            raise InputError(self.name, "high - low a whole number of steps", written)
        return Search(low, high, step=step)

    def recorded_search(self, search: Search) -> list[Value] | dict[str, Any]:
        """A search as plain JSON, as a study records it among its settings: a list where a list says it all
        (a categorical setting's choices, a continuous range on the setting's own scale), the table otherwise."""
        if self.categorical:
            return list(search.choices)
        if not search.choices and search.step is None and search.log == self.log:
            return [search.low, search.high]
        return search.table()

    def suggest(self, trial: Suggester, search: Search) -> Value:
        if search.choices:
            return trial.suggest_categorical(self.name, list(search.choices))
        if self.kind is int:
            return trial.suggest_int(self.name, search.low, search.high, step=search.step or 1, log=search.log)
        return trial.suggest_float(self.name, search.low, search.high, step=search.step, log=search.log)

    def cardinality(self, search: Search) -> float:
        """How many distinct values the search can draw."""
        return search.count(integer=self.kind is int)

    def nearest(self, search: Search, value: Value) -> Value:
        """The value the search draws that is nearest `value`, as this setting's type."""
        return self.coerce(search.nearest(value))

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


# The references' search (TAKD's search_space.json): T among six values, α (their λ) on a 0.05 grid. A grid makes
# hops repeat across trials, so a study trains each TA hop once and takes it from the store after. A continuous
# range is a spec's `[search]` away (`temperature = [1, 20]`, drawn on T's log scale).
TEMPERATURE = Param("temperature", float, 4.0, "softmax temperature T of the distillation term",
                    low=0.0, low_open=True, search=Search(choices=(1.0, 2.0, 5.0, 10.0, 15.0, 20.0)), log=True,
                    label="T={:.1f}", distillation_only=True)
ALPHA = Param("alpha", float, 0.5, "weight α of the distillation term; 1 - α weighs the labels' cross-entropy",
              low=0.0, high=1.0, search=Search(0.05, 1.0, step=0.05), label="α={:.2f}")
KD_PARAMS = (TEMPERATURE, ALPHA)
