"""Command-line flags derived from declared settings (`Param`): one flag per setting, spelled `--<name>` (or the
setting's `flag`), typed by its annotation, with its help. A flag left out is None, so a file's value or the
setting's default holds. The README's table of settings is derived here too (`settings_table`)."""

from __future__ import annotations

import argparse
import typing
from typing import Any, Iterable

from study.spec import STUDY_SETTINGS
from trainables.config import CHAIN_SETTINGS
from trainables.methods import Param, all_params
from trainables.typed import InputError


def add_flags(parser: argparse.ArgumentParser, settings: Iterable[Param], *, show_default: bool = True) -> None:
    """`show_default`: whether a flag's help names the setting's default (not where the default is another
    source's, as `kdstudy confirm`'s runtime flags, which default to the study's)."""
    for param in settings:
        help_text = param.help + (f" (default: {_shown(param.default)})" if show_default else "")
        kind = param.value_type
        if kind is bool:
            parser.add_argument(param.flag_name, dest=param.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        elif typing.get_origin(kind) is tuple:  # a comma-separated list, parsed by `flag_values`
            parser.add_argument(param.flag_name, dest=param.name, help=help_text)
        else:
            parser.add_argument(param.flag_name, dest=param.name, type=kind, help=help_text)


def flag_values(args: argparse.Namespace, settings: Iterable[Param]) -> dict[str, Any]:
    """The settings given as flags, by name; a list flag ("8,6,4") as a list of its items' type."""
    values = {}
    for param in settings:
        value = getattr(args, param.name)
        if value is None:
            continue
        if isinstance(value, str) and typing.get_origin(param.value_type) is tuple:
            value = _list(param, value)
        values[param.name] = value
    return values


def _list(param: Param, text: str) -> list[Any]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if typing.get_args(param.value_type)[0] is not int:
        return items
    depths = []
    for item in items:
        digits = item.lstrip("abcdefghijklmnopqrstuvwxyz_")  # a depth may name its family: plain8
        if not digits.isdigit():
            raise InputError(param.flag or param.name, "depths like 8,6,4 or plain8,plain6", item)
        depths.append(int(digits))
    return depths


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def settings_table(settings: Iterable[Param], study_defaults: dict[str, Any] | None = None) -> str:
    """A Markdown table of settings: name, scope, type, default (and a study's own, where it declares one), what is
    valid, flag, help."""
    study_defaults = study_defaults or {}
    rows = ["| setting | scope | type | default | valid | flag | what it is |", "|---|---|---|---|---|---|---|"]
    for p in settings:
        default = f"`{_shown(p.default)}`"
        if p.name in study_defaults:
            default += f" (a study's: `{_shown(study_defaults[p.name])}`)"
        rows.append(f"| `{p.name}` | {p.scope} | {_type_shown(p.kind)} | {default} | {_valid(p)} | `{p.flag_name}` | "
                    f"{p.help} |")
    return "\n".join(rows)


def _type_shown(kind: Any) -> str:
    """`int | None` as "int or null", `tuple[int, ...]` as "list of int": a pipe would end a table cell."""
    if typing.get_origin(kind) is tuple:
        return f"list of {_type_shown(typing.get_args(kind)[0])}"
    if not isinstance(kind, type):
        return " or ".join("null" if o is type(None) else _type_shown(o) for o in typing.get_args(kind))
    return kind.__name__


def _valid(param: Param) -> str:
    if param.choices:
        return ", ".join(map(str, param.choices))
    if param.low is None and param.high is None:
        return ""
    return param.bounds().removeprefix("a value in ")
def readme_table() -> str:
    """The README's table of settings: the chain's, the study's own, the KD methods'. `python -m cli.flags`
    prints it; a test holds the README to it."""
    study_own = [p for p in STUDY_SETTINGS.values() if p.scope != "chain"]
    study_defaults = {name: p.default for name, p in STUDY_SETTINGS.items()
                      if p.scope == "chain" and p.default != CHAIN_SETTINGS[name].default}
    return settings_table([*CHAIN_SETTINGS.values(), *study_own, *all_params().values()], study_defaults)


if __name__ == "__main__":
    print(readme_table())
