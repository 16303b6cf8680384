"""Dataset registry and ``load_dataset``, the single entry point to all datasets.

Loaders only produce raw train/test arrays; everything that must behave the
same across datasets (validation hold-out, train subsampling, normalisation
statistics, argument checking) lives here so it is written once.
"""

from __future__ import annotations

import hashlib
import importlib
import numbers
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from .splits import DataBundle, DataError, Split, stratified_split


class RawDataset(NamedTuple):
    """What a loader returns: uint8 NCHW images and int64 labels, before any hold-out."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


Loader = Callable[[Path | None, bool], RawDataset]

_REGISTRY: dict[str, Loader] = {}
# Images each dataset's loader returns for training, before the hold-out: what a fractional `val_size` is a
# fraction of, known without loading anything (hop keys need it on every plan).
_TRAIN_IMAGES: dict[str, int] = {}
# Imported lazily so that importing registry alone still sees every built-in dataset.
_BUILTIN_MODULES = ("trainables.data.embedded", "trainables.data.cifar")
_STATS_CHUNK = 4096  # images per chunk when computing mean/std, bounds float64 memory


def register_dataset(name: str, *, train_images: int) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(data_dir, download) -> RawDataset`` under ``name``, whose training images number
    ``train_images`` (the dataset as published: a name stands for its data, as it does in hop keys)."""

    def decorate(loader: Loader) -> Loader:
        if name in _REGISTRY and _REGISTRY[name] is not loader:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = loader
        _TRAIN_IMAGES[name] = train_images
        return loader

    return decorate


def _ensure_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available_datasets() -> list[str]:
    """Sorted names accepted by ``load_dataset``."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def _get_loader(name: str) -> Loader:
    names = available_datasets()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise DataError(f"dataset: unknown dataset {name!r}; expected one of {', '.join(names)}")
    return _REGISTRY[name]


def _as_tensor(a: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(dtype).contiguous()


def _check_raw(name: str, raw: RawDataset) -> RawDataset:
    """Catch loader bugs here with a clear message rather than deep inside a model."""
    train_x, test_x = (torch.as_tensor(raw.train_x), torch.as_tensor(raw.test_x))
    for label, x in (("train", train_x), ("test", test_x)):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[2] != x.shape[3]:
            raise ValueError(f"loader {name!r}: {label} images must be uint8 (N, C, S, S), "
                             f"got {x.dtype} {tuple(x.shape)}")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"loader {name!r}: train and test image shapes differ")
    train_y = _as_tensor(raw.train_y, torch.int64)
    test_y = _as_tensor(raw.test_y, torch.int64)
    return RawDataset(train_x.contiguous(), train_y, test_x.contiguous(), test_y, int(raw.num_classes))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_val_size(val_size: float | int) -> None:
    """The one rule for a validation hold-out's size: a fraction in (0, 1), or a whole count >= 1."""
    if _is_int(val_size):
        if int(val_size) < 1:
            raise DataError(f"val_size: a count must be >= 1, got {val_size}")
    elif isinstance(val_size, numbers.Real) and not isinstance(val_size, bool):
        if not 0.0 < float(val_size) < 1.0:
            raise DataError(f"val_size: must be a fraction in (0, 1) or an integer count >= 1, got {val_size}")
    else:
        raise DataError(f"val_size: must be a fraction in (0, 1) or an integer count >= 1, got {val_size!r}")


def holdout_count(name: str, val_size: float | int) -> int:
    """The validation images ``val_size`` holds out of dataset ``name``, without loading it: a fraction and the
    count it rounds to are the same hold-out."""
    return _val_count(val_size, train_images(name))


def train_images(name: str) -> int:
    """How many training images (before the hold-out) dataset ``name`` has, without loading it."""
    _get_loader(name)
    return _TRAIN_IMAGES[name]


def _val_count(val_size: float | int, n_train: int) -> int:
    return int(val_size) if _is_int(val_size) else round(float(val_size) * n_train)


def _resolve_val_count(val_size: float | int, n_train: int) -> int:
    """Turn a fraction or a count into a hold-out size that leaves training images."""
    check_val_size(val_size)
    count = _val_count(val_size, n_train)
    if count < 1:
        raise DataError(f"val_size: {val_size} of {n_train} training images rounds to 0; use a larger value")
    if count >= n_train:
        raise DataError(f"val_size: {val_size} holds out {count} of {n_train} training images, "
                        "leaving none to train on")
    return count


def _check_train_size(train_size: int | None, available: int) -> int | None:
    if train_size is None:
        return None
    if not _is_int(train_size) or int(train_size) < 1:
        raise DataError(f"train_size: must be an integer >= 1 or None, got {train_size!r}")
    if int(train_size) > available:
        raise DataError(f"train_size: {train_size} exceeds the {available} training images left after the "
                        "validation hold-out")
    return int(train_size)


def _derived_seed(seed: int, purpose: str) -> int:
    """Independent stream per purpose, so the train subsample is not correlated with the val draw."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # >> 1 keeps it a valid non-negative int64 seed


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images in [0, 1] pixel units."""
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, x.shape[0], _STATS_CHUNK):
        chunk = x[start : start + _STATS_CHUNK].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _subset(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> Split:
    return Split(x=x[idx].contiguous(), y=y[idx].contiguous())


def _resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    return None if data_dir is None else Path(data_dir).expanduser()


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    val_size: float | int = 0.1,
    seed: int = 0,
    train_size: int | None = None,
    download: bool = False,
) -> DataBundle:
    """Load ``name`` and split it into train/val/test (val held out from train, stratified, seeded)."""
    loader = _get_loader(name)
    if not _is_int(seed):
        raise DataError(f"seed: must be an integer, got {seed!r}")
    raw = _check_raw(name, loader(_resolve_data_dir(data_dir), bool(download)))
    n_val = _resolve_val_count(val_size, len(raw.train_y))
    keep, val_idx = stratified_split(raw.train_y, n_val, int(seed))
    n_train = _check_train_size(train_size, len(keep))
    if n_train is not None and n_train < len(keep):
        # The subsample is the "hold-out" of a second stratified split over the kept rows.
        _, chosen = stratified_split(raw.train_y[keep], n_train, _derived_seed(int(seed), "train_size"))
        keep = keep[chosen]
    train = _subset(raw.train_x, raw.train_y, keep)
    mean, std = channel_stats(train.x)
    return DataBundle(
        name=name,
        train=train,
        val=_subset(raw.train_x, raw.train_y, val_idx),
        test=Split(x=raw.test_x, y=raw.test_y),
        num_classes=raw.num_classes,
        in_channels=int(raw.train_x.shape[1]),
        image_size=int(raw.train_x.shape[2]),
        mean=mean,
        std=std,
    )
