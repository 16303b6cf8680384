"""A hop key names what determines the hop's weights: what computes the same weights shares a key (and a stored
hop), what computes other weights does not. Keys are checked on plans; that equal keys really are equal weights,
and that DGKD's `drop` really changes them, is checked by training (two runs on this machine, bit for bit)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import torch

from trainables import ChainConfig, train_chain
from trainables.data import (DataBundle, dataset_shape, holdout_count, load_chain_data, load_dataset, split_sizes,
                              train_images)
from trainables.hops import HopPlan, plan_chain
from trainables.loop import HopTraining, TeacherOutputs, train_epoch
from trainables.models import build_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# Device "cpu" throughout: what `auto` precision means depends on where a chain runs.
BASE = {"dataset": "mnist5k", "method": "takd", "teacher": "plain4", "ta_depths": [3], "student": "plain2",
        "device": "cpu"}


def keys(runs_on: torch.device | None = None, /, **settings: Any) -> list[str]:
    return [plan.key for plan in plan_chain(ChainConfig.from_flat({**BASE, **settings}), runs_on)]


def test_auto_precision_is_keyed_as_what_it_computes_in() -> None:
    assert keys(precision="auto") == keys(precision="fp32") != keys(precision="bf16")
    assert keys(CUDA, precision="auto") == keys(CUDA, precision="bf16") != keys(CUDA, precision="fp32")
    assert keys(CPU, device="auto", precision="auto") == keys(precision="fp32")


def test_the_device_the_chain_runs_on_resolves_auto() -> None:
    # What train_chain does: plan on the device cfg.device resolves to.
    assert keys(device="cuda", precision="auto") == keys(CUDA, precision="auto")
    assert keys(device="cuda", precision="auto") != keys(device="cpu", precision="auto")


@pytest.mark.parametrize("method", ["takd", "dgkd", "ensemble"])
def test_at_alpha_zero_the_temperature_does_not_split_a_hop(method: str) -> None:
    assert keys(method=method, alpha=0.0, temperature=2.0) == keys(method=method, alpha=0.0, temperature=8.0)
    assert keys(method=method, alpha=0.0, kl_reduction="mean") == keys(method=method, alpha=0.0)
    hot, cold = keys(method=method, alpha=0.3, temperature=2.0), keys(method=method, alpha=0.3, temperature=8.0)
    assert hot[0] == cold[0] and not set(hot[1:]) & set(cold[1:])  # the teacher learns from labels alone


def test_at_alpha_zero_the_ensembles_weighting_and_space_do_not_split_a_hop() -> None:
    plain = keys(method="ensemble", alpha=0.0, fit_size=0.05)
    assert keys(method="ensemble", alpha=0.0, weighting="learned", space="logit", fit_size=0.05) == plain
    learned = keys(method="ensemble", alpha=0.5, weighting="learned", space="logit", fit_size=0.05)
    assert learned[2] != keys(method="ensemble", fit_size=0.05)[2]


def test_dgkds_drop_splits_a_hop_even_at_alpha_zero() -> None:
    # Dropping draws from the hop's random stream, which also orders the next epoch's batches.
    kept, dropped = keys(method="dgkd", alpha=0.0), keys(method="dgkd", alpha=0.0, drop=1)
    assert kept[:2] == dropped[:2] and kept[2] != dropped[2]  # only the student has two teachers to drop from


def plans(**settings: Any) -> list[HopPlan]:
    return plan_chain(ChainConfig.from_flat({**BASE, "epochs": 8, **settings}), CPU)


def test_a_hops_seed_does_not_depend_on_its_epochs_but_its_key_does() -> None:
    full, low, shorter = plans(), plans(lower_epochs=2), plans(epochs=4)
    assert [p.epochs for p in full] == [8, 8, 8] and [p.epochs for p in low] == [8, 2, 2]
    assert [p.seed for p in full] == [p.seed for p in low] == [p.seed for p in shorter]
    assert full[0].key == low[0].key != shorter[0].key  # the teacher always trains `epochs`
    assert all(a.key != b.key for a, b in zip(full[1:], low[1:]))
    assert plans(lower_epochs=8) == full  # the epochs a hop trains are its identity, not how they were asked for
    # a shorter training of a hop is resumable by a longer one: one resume key, as long as its teachers are the same
    assert full[1].resume_key == low[1].resume_key and full[2].resume_key != low[2].resume_key
    assert full[0].resume_key == shorter[0].resume_key


def test_nokds_only_hop_is_below_the_teacher_it_does_not_have() -> None:
    assert [p.epochs for p in plans(method="nokd", ta_depths=[], lower_epochs=2)] == [2]


def test_patience_is_in_the_key_when_it_is_on_and_never_in_the_seed() -> None:
    off, on, longer = plans(), plans(patience=2), plans(patience=3)
    assert plans(patience=0) == off
    assert [p.seed for p in off] == [p.seed for p in on] == [p.seed for p in longer]
    assert not {p.key for p in off} & {p.key for p in on} and not {p.key for p in on} & {p.key for p in longer}
    assert not {p.resume_key for p in off} & {p.resume_key for p in on}


def test_a_hold_out_fraction_is_keyed_as_the_count_it_holds_out() -> None:
    count = holdout_count("mnist5k", 0.1)
    assert count == 400
    assert keys(val_size=0.1) == keys(val_size=count) == keys(val_size=float(count))
    assert keys(val_size=0.1) != keys(val_size=count + 1)
    assert keys(val_size=0.1) != keys(val_size=0.1, dataset="digits")


def test_a_fit_hold_out_is_keyed_as_the_count_it_holds_out() -> None:
    count = holdout_count("mnist5k", 0.05)
    assert count == 200
    learned = {"method": "ensemble", "weighting": "learned"}
    assert keys(**learned, fit_size=0.05) == keys(**learned, fit_size=count) == keys(**learned, fit_size=float(count))
    assert keys(**learned, fit_size=0.05) != keys(**learned, fit_size=count + 1)
    # every hop trains on other images once some are held out for fitting, the teacher included
    assert not set(keys(fit_size=0.05)) & set(keys())


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_the_registered_shape_is_what_the_loader_returns(name: str) -> None:
    data = load_dataset(name, val_size=0.1)
    assert len(data.val) == holdout_count(name, 0.1)
    assert len(data.train) + len(data.val) == train_images(name)
    shape = dataset_shape(name)
    assert (data.in_channels, data.image_size, data.num_classes) == (shape.channels, shape.image_size,
                                                                     shape.num_classes)
    held_out = load_dataset(name, val_size=0.1, fit_size=0.05, train_size=300)
    assert split_sizes(name, 0.1, 0.05, 300) == (len(held_out.train), len(held_out.val), len(held_out.fit))
    assert split_sizes(name, 0.1, 0.05, None) == (len(load_dataset(name, val_size=0.1, fit_size=0.05).train),
                                                  len(held_out.val), len(held_out.fit))


def test_a_fraction_and_its_count_hold_out_the_same_images() -> None:
    by_fraction = load_dataset("mnist5k", val_size=0.1, seed=2)
    by_count = load_dataset("mnist5k", val_size=holdout_count("mnist5k", 0.1), seed=2)
    assert torch.equal(by_fraction.val.y, by_count.val.y) and torch.equal(by_fraction.val.x, by_count.val.x)
    assert torch.equal(by_fraction.train.x, by_count.train.x)
    fit_fraction = load_dataset("mnist5k", val_size=0.1, fit_size=0.05, seed=2)
    fit_count = load_dataset("mnist5k", val_size=0.1, fit_size=holdout_count("mnist5k", 0.05), seed=2)
    assert torch.equal(fit_fraction.fit.x, fit_count.fit.x) and torch.equal(fit_fraction.train.x, fit_count.train.x)


TRAINED = {**BASE, "train_size": 200, "val_size": 100, "width": 0.25, "epochs": 2, "lr": 0.05, "batch_size": 64,
           "alpha": 0.0}


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Two trainings compare bit for bit only at the same thread count (on the same machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def student_weights(**settings: Any) -> dict[str, torch.Tensor]:
    result = train_chain(ChainConfig.from_flat({**TRAINED, **settings}))  # its own store: nothing is shared
    return result.models[-1].state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


def test_hops_with_equal_keys_train_equal_weights(one_thread: None) -> None:
    ensemble = student_weights(method="ensemble", temperature=2.0, weighting="mean", space="prob", fit_size=50)
    other = student_weights(method="ensemble", temperature=9.0, weighting="learned", space="logit",
                            kl_reduction="mean", fit_size=50)
    assert same_weights(ensemble, other)


def test_dgkds_drop_changes_the_weights_at_alpha_zero(one_thread: None) -> None:
    # Its key differs, and so does its seed; here the seed is the same, so only the drawing can tell them apart.
    assert not same_weights(trained_with_one_seed(drop=0), trained_with_one_seed(drop=1))
    assert same_weights(trained_with_one_seed(drop=0, temperature=2.0), trained_with_one_seed(drop=0))


def trained_with_one_seed(**settings: Any) -> dict[str, torch.Tensor]:
    """A DGKD student at α = 0 trained for two epochs from two fixed teachers, always from the same seed."""
    cfg = ChainConfig.from_flat({**TRAINED, "method": "dgkd", **settings})
    data = load_chain_data(cfg)
    teachers = [_model(arch, data, seed).eval() for seed, arch in enumerate(("plain4", "plain3"))]
    student = _model("plain2", data, 2)
    hop = HopTraining(student, torch.optim.SGD(student.parameters(), lr=cfg.lr, momentum=cfg.momentum),
                      cfg.method_class.teaching(cfg, 2),
                      TeacherOutputs(teachers, [0, 0], data, per_batch=False, precision="fp32"),
                      torch.Generator().manual_seed(3), 0, cfg.batch_size, False, "fp32")
    for _ in range(cfg.epochs):
        train_epoch(hop, data)
    return student.state_dict()


def _model(arch: str, data: DataBundle, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, data.num_classes, data.in_channels, data.image_size, 0.25)
