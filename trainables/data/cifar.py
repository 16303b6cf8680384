"""CIFAR-10/100 from torchvision's on-disk layout, read by our own pickle reader.

Files are always read by the same code whether torchvision downloaded them or a
test wrote them; torchvision is used only to fetch, and only when asked.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.typed import InputError

from .datasets import DatasetShape, RawDataset, register_dataset

_IMAGE_SHAPE = (3, 32, 32)
_ROW_LENGTH = 3 * 32 * 32


@dataclass(frozen=True)
class _CifarLayout:
    title: str  # as written in messages, e.g. "CIFAR-10"
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: bytes
    num_classes: int
    expected: str  # human description of the files, for the "missing" message


_CIFAR10 = _CifarLayout(
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    label_key=b"labels",
    num_classes=10,
    expected="cifar-10-batches-py/data_batch_1..5 and test_batch",
)
_CIFAR100 = _CifarLayout(
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    label_key=b"fine_labels",
    num_classes=100,
    expected="cifar-100-python/train and test",
)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def read_cifar_file(path: Path, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one CIFAR pickle into uint8 (N, 3, 32, 32) images and int64 labels."""
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="bytes")
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise InputError("data_dir", problem=f"cannot read CIFAR file {path}: {_one_line(error)}") from error
    if data.ndim != 2 or data.shape[1] != _ROW_LENGTH or labels.shape != (data.shape[0],):
        raise InputError("data_dir", problem=f"malformed CIFAR file {path}: data {data.shape}, labels {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError("data_dir", problem=f"CIFAR file {path} has labels outside 0..{num_classes - 1}")
    # Rows are channel-major (1024 red, 1024 green, 1024 blue), which is exactly NCHW.
    images = torch.from_numpy(data.reshape(-1, *_IMAGE_SHAPE).copy())
    return images, torch.from_numpy(labels)


def _missing_files(root: Path, layout: _CifarLayout) -> list[Path]:
    paths = [root / layout.folder / name for name in (*layout.train_files, layout.test_file)]
    return [path for path in paths if not path.is_file()]


def _download(root: Path, layout: _CifarLayout) -> None:
    import torchvision

    dataset_cls = torchvision.datasets.CIFAR10 if layout is _CIFAR10 else torchvision.datasets.CIFAR100
    try:
        dataset_cls(root=str(root), train=True, download=True)
    except Exception as error:  # network/extraction failures surface as many types
        raise InputError("data_dir",
                         problem=f"downloading {layout.title} into {root} failed: {_one_line(error)}") from error


def _locate(data_dir: Path | None, download: bool, layout: _CifarLayout, name: str) -> Path:
    """Return the root holding the files, fetching them first if allowed and needed."""
    if data_dir is None:
        raise InputError(
            "data_dir", problem=f"{name} needs a data directory (the folder that holds {layout.folder}/); "
            "set data_dir, and pass --download to fetch the files"
        )
    if not _missing_files(data_dir, layout):
        return data_dir  # present: never touch the network, even with download=True
    if not download:
        if not data_dir.exists():
            raise InputError("data_dir",
                             problem=f"{data_dir} does not exist; pass --download to fetch {layout.title} into it")
        if not data_dir.is_dir():
            raise InputError("data_dir", problem=f"{data_dir} is not a directory")
        raise InputError(
            "data_dir", problem=f"no {layout.title} files in {data_dir} (expected {layout.expected}); "
            "pass --download to fetch them"
        )
    _download(data_dir, layout)
    missing = _missing_files(data_dir, layout)
    if missing:
        raise InputError("data_dir", problem=f"{layout.title} download into {data_dir} did not produce {missing[0]}")
    return data_dir


def _load(data_dir: Path | None, download: bool, layout: _CifarLayout, name: str) -> RawDataset:
    root = _locate(data_dir, download, layout, name) / layout.folder
    parts = [read_cifar_file(root / f, layout.label_key, layout.num_classes) for f in layout.train_files]
    test_x, test_y = read_cifar_file(root / layout.test_file, layout.label_key, layout.num_classes)
    train_x = torch.cat([x for x, _ in parts])
    train_y = torch.cat([y for _, y in parts])
    return RawDataset(train_x, train_y, test_x, test_y, layout.num_classes)


@register_dataset("cifar10", DatasetShape(50_000, *_IMAGE_SHAPE[:2], 10))
def load_cifar10(data_dir: Path | None, download: bool) -> RawDataset:
    """CIFAR-10: 50,000 train (data_batch_1..5) and 10,000 test images, 10 classes."""
    return _load(data_dir, download, _CIFAR10, "cifar10")


@register_dataset("cifar100", DatasetShape(50_000, *_IMAGE_SHAPE[:2], 100))
def load_cifar100(data_dir: Path | None, download: bool) -> RawDataset:
    """CIFAR-100 with fine labels: 50,000 train and 10,000 test images, 100 classes."""
    return _load(data_dir, download, _CIFAR100, "cifar100")
