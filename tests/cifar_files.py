"""Small CIFAR folders written in CIFAR's own pickle format (the data sets cannot be downloaded here)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar100(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """`root/cifar-100-python/{train,test}` with 100 classes; each class's images share a colour, so a model can
    learn something in an epoch. Returns `root`, the folder `--data-dir` takes."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(100, 3, 1), dtype=np.int64)
    for name, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(100), per_class)
        noise = rng.integers(-40, 41, size=(len(labels), 3, 1024))
        images = np.clip(colours[labels] + noise, 0, 255).astype(np.uint8).reshape(len(labels), 3072)
        path = root / "cifar-100-python" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            pickle.dump({b"data": images, b"fine_labels": labels.tolist()}, handle)
    return root
