"""Values from JSON, TOML, Optuna or the command line checked against a dataclass field's annotation.

The one coercion rule of the project: `ChainConfig` and the study spec both build their fields through it.
"""

from __future__ import annotations

import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad config value; the message is one line that starts with the field's name."""


def coerce(name: str, hint: Any, value: Any) -> Any:
    """`value` as the annotation `hint` wants it: ints are accepted where floats are expected (and become
    floats), lists where tuples are expected; anything else raises ConfigError naming the field."""
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
