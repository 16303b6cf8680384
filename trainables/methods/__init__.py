"""KD methods by name. Every module of this package is imported here, so a method is one new file."""

from __future__ import annotations

from trainables.methods.base import (KDMethod, LabelsOnly, all_loss_terms, all_params, method_class, method_names,
                                     param_values, register_method, unregister_method)
from trainables.methods.params import Param
from trainables.plugins import import_all

import_all(__name__, __path__)  # each method module registers its method

__all__ = ["KDMethod", "LabelsOnly", "Param", "all_loss_terms", "all_params", "method_class", "method_names",
           "param_values", "register_method", "unregister_method"]
