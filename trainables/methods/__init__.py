"""KD methods by name. Every module of this package is imported here, so a method is one new file."""

from __future__ import annotations

import importlib
import pkgutil

from trainables.methods.base import (KDMethod, LabelsOnly, all_loss_terms, all_params, method_class, method_names,
                                     param_values, register_method, unregister_method)
from trainables.methods.params import Param

_SUPPORT_MODULES = {"base", "params"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT_MODULES:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["KDMethod", "LabelsOnly", "Param", "all_loss_terms", "all_params", "method_class", "method_names",
           "param_values", "register_method", "unregister_method"]
