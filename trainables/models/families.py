"""Architecture registry and validated factory for the KD model zoo (TAKD, Mirzadeh et al. 2020)."""

from __future__ import annotations

import math
import numbers
import re
from typing import Callable

from torch import nn

from trainables.typed import InputError

# (depth, num_classes, in_channels, image_size, width, init) -> model
Builder = Callable[[int, int, int, int, float, str], nn.Module]
# "reference": shaped and initialised as the reference implementation of each family (the default);
# "he": He-normal fan-out for every conv, no conv bias (what kdstudy used before matching the references).
INITS = ("reference", "he")

# Insertion-ordered so that available_archs() lists families in registration order.
_FAMILIES: dict[str, tuple[Builder, tuple[int, ...]]] = {}

_ARCH_RE = re.compile(r"^([a-z_]+)(\d+)$")

MIN_IMAGE_SIZE = 16


def register_family(name: str, depths: tuple[int, ...]) -> Callable[[Builder], Builder]:
    """Register ``builder`` as the constructor for ``<name><depth>`` for each depth."""
    if not re.fullmatch(r"[a-z_]+", name):
        # Names must not end in digits, otherwise "<name><depth>" would be ambiguous.
        raise InputError("family", "a name matching [a-z_]+", name)
    if not depths or any(int(d) != d or d < 1 for d in depths):
        raise InputError("depths", "a non-empty tuple of positive ints", depths)

    def decorator(builder: Builder) -> Builder:
        if name in _FAMILIES:
            raise InputError("family", problem=f"{name!r} is already registered")
        _FAMILIES[name] = (builder, tuple(sorted(int(d) for d in depths)))
        return builder

    return decorator


def available_archs() -> list[str]:
    """All registered architecture names, by family (registration order) then depth."""
    return [_format_arch(f, d) for f, (_, depths) in _FAMILIES.items() for d in depths]


def _format_arch(family: str, depth: int) -> str:
    return f"{family}{depth}"


def _unknown_arch(field: str, arch: object) -> InputError:
    return InputError(field, f"one of {', '.join(available_archs())}", arch)


def parse_arch(arch: str, field: str = "arch") -> tuple[str, int]:
    """Split a registered name such as ``"resnet20"`` into ``("resnet", 20)``; an unknown one is an InputError
    named `field` (the setting that holds it: "teacher", "student")."""
    match = _ARCH_RE.match(arch) if isinstance(arch, str) else None
    if match is None:
        raise _unknown_arch(field, arch)
    family, depth = match.group(1), int(match.group(2))
    if family not in _FAMILIES or depth not in _FAMILIES[family][1]:
        raise _unknown_arch(field, arch)
    return family, depth


def arch_name(family: str, depth: int) -> str:
    """Inverse of :func:`parse_arch`; only registered (family, depth) pairs are accepted."""
    name = _format_arch(family, depth)
    parse_arch(name)  # validate against the registry
    return name


def scaled(channels: int, width: float) -> int:
    """Width-multiplied layer size; never zero so that thin models stay buildable."""
    return max(1, round(channels * width))


def _check_positive_int(field: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(field, f"an int >= {minimum}", value)


def _check_width(width: object) -> None:
    valid = (
        isinstance(width, numbers.Real)
        and not isinstance(width, bool)
        and math.isfinite(float(width))
        and float(width) > 0
    )
    if not valid:
        raise InputError("width", "a finite number > 0", width)


def build_model(
    arch: str, num_classes: int, in_channels: int, image_size: int, width: float = 1.0, init: str = "reference"
) -> nn.Module:
    """Build a freshly initialised ``arch`` classifier for ``in_channels`` x ``image_size``^2 inputs."""
    family, depth = parse_arch(arch)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("image_size", image_size, MIN_IMAGE_SIZE)
    _check_width(width)
    if init not in INITS:
        raise InputError("init", f"one of {', '.join(INITS)}", init)
    builder = _FAMILIES[family][0]
    return builder(depth, int(num_classes), int(in_channels), int(image_size), float(width), init)
