"""Dataset registry and ``load_dataset``, the single entry point to all datasets.

Loaders only produce raw train/test arrays; everything that must behave the
same across datasets (validation hold-out, train subsampling, normalisation
statistics, argument checking) lives here so it is written once.
"""

from __future__ import annotations

import hashlib
import numbers
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from trainables.typed import InputError

from .splits import DataBundle, Split, stratified_split


class RawDataset(NamedTuple):
    """What a loader returns: uint8 NCHW images and int64 labels, before any hold-out."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


Loader = Callable[[Path | None, bool], RawDataset]

class DatasetShape(NamedTuple):
    """What a dataset's name says about its data without loading it: hop keys need the training images on every
    plan (what a fractional `val_size` is a fraction of), a planned cost (`trainables.plan`) the images' shape and
    the classes too, to count its models' FLOPs."""

    train_images: int  # before the hold-outs
    channels: int
    image_size: int  # images are square
    num_classes: int


_REGISTRY: dict[str, Loader] = {}
_SHAPES: dict[str, DatasetShape] = {}
_STATS_CHUNK = 4096  # images per chunk when computing mean/std, bounds float64 memory


def register_dataset(name: str, shape: DatasetShape) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(data_dir, download) -> RawDataset`` under ``name``, whose data has ``shape``
    (the dataset as published: a name stands for its data, as it does in hop keys)."""

    def decorate(loader: Loader) -> Loader:
        if name in _REGISTRY and _REGISTRY[name] is not loader:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = loader
        _SHAPES[name] = shape
        return loader

    return decorate


def available_datasets() -> list[str]:
    """Sorted names accepted by ``load_dataset``."""
    return sorted(_REGISTRY)


def _get_loader(name: str) -> Loader:
    names = available_datasets()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InputError("dataset", f"one of {', '.join(names)}", name)
    return _REGISTRY[name]


def _as_tensor(a: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(dtype).contiguous()


def _check_raw(name: str, raw: RawDataset) -> RawDataset:
    """Catch loader bugs here with a clear message rather than deep inside a model."""
    train_x, test_x = (torch.as_tensor(raw.train_x), torch.as_tensor(raw.test_x))
    for label, x in (("train", train_x), ("test", test_x)):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[2] != x.shape[3]:
            raise ValueError(f"loader {name!r}: expected {label} images uint8 (N, C, S, S), "
                             f"got {x.dtype} {tuple(x.shape)}")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"loader {name!r}: expected train and test images of one shape, "
                         f"got {tuple(train_x.shape[1:])} and {tuple(test_x.shape[1:])}")
    registered = _SHAPES[name]
    got = (int(train_x.shape[1]), int(train_x.shape[2]), int(raw.num_classes))
    if got != (registered.channels, registered.image_size, registered.num_classes):
        raise ValueError(f"loader {name!r}: expected (channels, image size, classes) "
                         f"{registered[1:]} as registered, got {got}")
    train_y = _as_tensor(raw.train_y, torch.int64)
    test_y = _as_tensor(raw.test_y, torch.int64)
    return RawDataset(train_x.contiguous(), train_y, test_x.contiguous(), test_y, int(raw.num_classes))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_holdout_size(name: str, size: float | int, *, optional: bool = False) -> None:
    """The one rule for the size of a hold-out out of the training images (`val_size`, `fit_size`): a fraction in
    (0, 1), or a whole count >= 1; 0 (none) too where the hold-out is `optional`."""
    expected = "a fraction in (0, 1) or an integer count >= 1" + (", or 0 for none" if optional else "")
    if optional and _is_number(size) and size == 0:
        return
    if _is_int(size):
        if int(size) < 1:
            raise InputError(name, f"a count >= 1{' (or 0 for none)' if optional else ''}", size)
    elif _is_number(size):
        if not 0.0 < float(size) < 1.0:
            raise InputError(name, expected, size)
    else:
        raise InputError(name, expected, size)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def holdout_count(name: str, size: float | int) -> int:
    """The images a hold-out of ``size`` (`val_size` or `fit_size`) takes out of dataset ``name``'s training images,
    without loading it: a fraction and the count it rounds to are the same hold-out."""
    return _holdout_count(size, train_images(name))


def train_images(name: str) -> int:
    """How many training images (before the hold-outs) dataset ``name`` has, without loading it."""
    return dataset_shape(name).train_images


def dataset_shape(name: str) -> DatasetShape:
    """Dataset ``name``'s registered shape; an unknown name is an InputError."""
    _get_loader(name)
    return _SHAPES[name]


def split_sizes(name: str, val_size: float | int, fit_size: float | int, train_size: int | None
                ) -> tuple[int, int, int]:
    """The train, validation and fit splits' sizes `load_dataset` gives, without loading the data."""
    n_val, n_fit = holdout_count(name, val_size), holdout_count(name, fit_size)
    return (train_images(name) - n_val - n_fit if train_size is None else train_size), n_val, n_fit


def _holdout_count(size: float | int, n_train: int) -> int:
    return int(size) if _is_int(size) else round(float(size) * n_train)


def _resolve_holdout(name: str, size: float | int, n_train: int, *, optional: bool = False) -> int:
    """Turn a fraction or a count into a hold-out size; a fraction that rounds to no image is refused."""
    check_holdout_size(name, size, optional=optional)
    count = _holdout_count(size, n_train)
    if count < 1 and size != 0:
        raise InputError(name, f"a hold-out of at least one of the {n_train} training images", size)
    return count


def _resolve_holdouts(val_size: float | int, fit_size: float | int, n_train: int) -> tuple[int, int]:
    """The validation and fit hold-outs' sizes, which must leave training images."""
    n_val = _resolve_holdout("val_size", val_size, n_train)
    if n_val >= n_train:
        raise InputError("val_size", problem=f"{val_size} holds out {n_val} of {n_train} training images, "
                                             "leaving none to train on")
    n_fit = _resolve_holdout("fit_size", fit_size, n_train, optional=True)
    if n_val + n_fit >= n_train:
        raise InputError("fit_size", problem=f"{fit_size} holds out {n_fit} of {n_train} training images besides "
                                             f"the {n_val} validation ones, leaving none to train on")
    return n_val, n_fit


def _check_train_size(train_size: int | None, available: int) -> int | None:
    if train_size is None:
        return None
    if not _is_int(train_size) or int(train_size) < 1:
        raise InputError("train_size", "an integer >= 1 or None", train_size)
    if int(train_size) > available:
        raise InputError("train_size", f"at most the {available} training images left after the hold-outs",
                         train_size)
    return int(train_size)


def _derived_seed(seed: int, purpose: str) -> int:
    """Independent stream per purpose, so neither the fit hold-out nor the train subsample is correlated with the
    val draw."""
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


class SplitPositions(NamedTuple):
    """Where each split's images sit among a dataset's training images (sorted int64 positions, disjoint)."""

    train: torch.Tensor
    val: torch.Tensor
    fit: torch.Tensor


def split_positions(labels: torch.Tensor, n_val: int, n_fit: int, seed: int, train_size: int | None
                    ) -> SplitPositions:
    """The validation hold-out (stratified, seeded by ``seed``), then the fit hold-out out of the rest (its own
    stream, so the validation images do not depend on ``n_fit``), then the ``train_size`` subsample of what is left.
    With ``n_fit`` = 0 the splits are those of a loader without a fit hold-out."""
    keep, val = stratified_split(labels, n_val, seed)
    rest, fit = stratified_split(labels[keep], n_fit, _derived_seed(seed, "fit_size"))
    fit, keep = keep[fit], keep[rest]
    n_train = _check_train_size(train_size, len(keep))
    if n_train is not None and n_train < len(keep):
        # The subsample is the "hold-out" of a further stratified split over the kept rows.
        _, chosen = stratified_split(labels[keep], n_train, _derived_seed(seed, "train_size"))
        keep = keep[chosen]
    return SplitPositions(train=keep, val=val, fit=fit)


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    val_size: float | int = 0.1,
    fit_size: float | int = 0,
    seed: int = 0,
    train_size: int | None = None,
    download: bool = False,
) -> DataBundle:
    """Load ``name`` and split it into train/val/fit/test: val and fit are held out of train (each stratified and
    seeded), fit is empty when ``fit_size`` is 0."""
    loader = _get_loader(name)
    if not _is_int(seed):
        raise InputError("seed", "an integer", seed)
    raw = _check_raw(name, loader(_resolve_data_dir(data_dir), bool(download)))
    n_val, n_fit = _resolve_holdouts(val_size, fit_size, len(raw.train_y))
    positions = split_positions(raw.train_y, n_val, n_fit, int(seed), train_size)
    train = _subset(raw.train_x, raw.train_y, positions.train)
    mean, std = channel_stats(train.x)
    return DataBundle(
        name=name,
        train=train,
        val=_subset(raw.train_x, raw.train_y, positions.val),
        fit=_subset(raw.train_x, raw.train_y, positions.fit),
        test=Split(x=raw.test_x, y=raw.test_y),
        num_classes=raw.num_classes,
        in_channels=int(raw.train_x.shape[1]),
        image_size=int(raw.train_x.shape[2]),
        mean=mean,
        std=std,
    )
