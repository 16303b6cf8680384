"""Values from JSON, TOML, Optuna or the command line checked against a dataclass field's annotation, and the one
error that bad input raises.

The one coercion rule of the project: `ChainConfig` and the study spec both build their fields through it.
"""

from __future__ import annotations

import types
import typing
from typing import Any


_UNSET: Any = object()


class InputError(ValueError):
    """Bad input, in one line that names its field: `field: expected X, got Y`, or `field: <what is wrong>` where
    no single value is at fault (`problem`). Config, method settings, data, models and the study spec raise it;
    the CLI prints it and exits 2. `field` is kept apart, so a caller that knows more says where the field was
    written (`within("chain.")`) without reading the message back."""

    def __init__(self, field: str, expected: str | None = None, got: Any = _UNSET, *, problem: str | None = None):
        if (expected is None) == (problem is None):
            raise TypeError("InputError takes `expected` (and `got`) or `problem`, not both")
        self.field = field
        self.detail = problem if problem is not None else f"expected {expected}" + (
            "" if got is _UNSET else f", got {got!r}")
        super().__init__(f"{field}: {self.detail}")

    def within(self, prefix: str = "", suffix: str = "") -> InputError:
        """The same error with its field as the user wrote it (`chain.` + field) and, maybe, where it came from."""
        return InputError(prefix + self.field, problem=self.detail + suffix)

    def __reduce__(self) -> tuple[Any, ...]:  # Ray and multiprocessing carry errors pickled
        return _rebuild, (self.field, self.detail)


def _rebuild(field: str, detail: str) -> InputError:
    return InputError(field, problem=detail)


def coerce(name: str, hint: Any, value: Any) -> Any:
    """`value` as the annotation `hint` wants it: ints are accepted where floats are expected (and become
    floats), lists where tuples are expected; anything else raises InputError naming the field."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        ok, coerced = _try_type(option, value)
        if ok:
            return coerced
    expected = " or ".join(_type_name(o) for o in options)
    raise InputError(name, expected, value)


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
        item = typing.get_args(option)[0]
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_try_type(item, v) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    return False, value


def _type_name(option: Any) -> str:
    if typing.get_origin(option) is tuple:
        return f"a list of {_type_name(typing.get_args(option)[0])}s"
    if option is type(None):
        return "null"
    return {"int": "integer", "float": "number", "str": "string", "bool": "true or false"}.get(
        option.__name__, option.__name__)
