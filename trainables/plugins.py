"""How the three registries (model families, datasets, KD methods) find their entries, one way: the package imports
every module it holds, and each entry registers itself on import (`register_family`, `register_dataset`,
`register_method`), so a new model family, dataset or KD method is one new file and no list to edit."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable


def import_all(package: str, path: Iterable[str]) -> None:
    """Import every module of `package` (its `__name__` and `__path__`), in name order."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
