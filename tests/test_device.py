"""Every branch of the device code (`trainables.device`), exercised on the CPU as far as the CPU allows, so that a
first GPU run meets no untested path: device choice, backend flags, the autocast rule, and the trainer's bf16
path (autocast on the CPU runs the same code CUDA runs by default)."""

from __future__ import annotations

import pytest
import torch

from trainables.data import iterate_batches, load_dataset
from trainables.device import autocast_for, configure_backends, resolve_device, uses_bf16


def test_auto_picks_the_gpu_when_there_is_one() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # taken as written, even without a GPU


def test_cudnn_autotuning_is_switched_on_for_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False  # CPU runs stay bit-exact
    configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize("device, precision, bf16", [
    ("cuda", "auto", True), ("cpu", "auto", False), ("cuda", "fp32", False), ("cpu", "fp32", False),
    ("cuda", "bf16", True), ("cpu", "bf16", True),
])
def test_the_autocast_rule(device: str, precision: str, bf16: bool) -> None:
    assert uses_bf16(torch.device(device), precision) is bf16


def test_bf16_autocast_really_computes_in_bf16_on_the_cpu() -> None:
    layer = torch.nn.Linear(8, 4)
    with autocast_for(torch.device("cpu"), "bf16"):
        assert layer(torch.randn(2, 8)).dtype == torch.bfloat16
    with autocast_for(torch.device("cpu"), "auto"):
        assert layer(torch.randn(2, 8)).dtype == torch.float32


def test_shuffled_batches_do_not_depend_on_the_datas_device() -> None:
    # the order is drawn on the CPU generator and then moved: the same seed gives the same batches anywhere
    data = load_dataset("digits", val_size=0.1)
    orders = []
    for split in (data.train, data.train.to("cpu")):
        generator = torch.Generator().manual_seed(3)
        batches = iterate_batches(data.images(split), split.y, 64, shuffle=True, generator=generator, augment=True)
        orders.append(torch.cat([idx for _, _, idx in batches]))
    assert torch.equal(orders[0], orders[1]) and orders[0].device.type == "cpu"
