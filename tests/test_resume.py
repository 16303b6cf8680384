"""Successive halving's side of the trainer: a hop trained for more epochs resumes its shorter training (at a constant
lr), the hops below a changed teacher are trained again, patience ends a hop early, and a chain's planned cost is
what training it counts. Bit-for-bit comparisons are between two trainings in this process, on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from runstore.storage import locate
from study.hop_store import RESUME_SUFFIX, RunHopStore
from trainables import ChainConfig, MemoryStore, ModelStore, train_chain
from trainables.hops import plan_chain
from trainables.plan import planned_hops

TINY = {"dataset": "mnist5k", "train_size": 200, "val_size": 100, "width": 0.25, "lr": 0.05, "batch_size": 64,
        "device": "cpu"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Two trainings compare bit for bit at one thread count; one thread also keeps these tests' two cores free."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**settings: Any) -> ChainConfig:
    return ChainConfig.from_flat({**TINY, **settings})


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    theirs = b.state_dict()
    return all(torch.equal(tensor, theirs[name]) for name, tensor in a.state_dict().items())


def trained_epochs(events: list[dict[str, Any]], hop: int) -> list[int]:
    return [e["epoch"] for e in events if e["event"] == "epoch" and e["hop"] == hop]


def run_store(folder: Path, ledger: list[tuple[Any, ...]] | None = None) -> RunHopStore:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    record = None if ledger is None else (lambda *row, diverged: ledger.append((*row, diverged)))
    return RunHopStore(locate(str(folder / "models")), ledger=record)


KD = {"method": "kd", "teacher": "plain3", "student": "plain2", "epochs": 8}


@pytest.mark.parametrize("kind", ["memory", "run"])
def test_a_hop_trained_4_epochs_then_resumed_to_8_equals_it_trained_8_at_once(kind: str, tmp_path: Path) -> None:
    store: ModelStore = MemoryStore() if kind == "memory" else run_store(tmp_path)
    events: list[dict[str, Any]] = []
    train_chain(config(**KD, lower_epochs=4), store=store)
    resumed = train_chain(config(**KD, lower_epochs=8), report=events.append, store=store)
    at_once = train_chain(config(**KD, lower_epochs=8))  # a store of its own: every hop trained from scratch
    assert [h.reused for h in resumed.hops] == [True, False] and resumed.student.resumed_from == 4
    assert trained_epochs(events, 1) == [5, 6, 7, 8]
    # an epoch's place among the chain's: after the teacher's 8
    assert [e["global_epoch"] for e in events if e["event"] == "epoch"] == [13, 14, 15, 16]
    assert same_weights(resumed.models[1], at_once.models[1])
    ours, theirs = resumed.student, at_once.student
    assert (ours.best_epoch, ours.val_acc, ours.test_acc) == (theirs.best_epoch, theirs.val_acc, theirs.test_acc)
    assert torch.equal(ours.predictions.true_prob, theirs.predictions.true_prob)
    if kind == "run":
        plan = plan_chain(config(**KD, lower_epochs=8))[1]
        assert (tmp_path / "models" / f"{plan.resume_key}{RESUME_SUFFIX}").is_file()
        # the 4-epoch state; the hop trained in full (all of the chain's epochs) leaves none: nothing trains it longer
        assert store.get_resume(plan.resume_key).epochs_done == 4


@pytest.mark.parametrize("method", [{"method": "takd"}, {"method": "dgkd", "drop": 1}], ids=["takd", "dgkd"])
def test_a_promoted_chain_resumes_the_hop_below_the_teacher_and_retrains_the_hops_below_it(
        method: dict[str, Any], tmp_path: Path) -> None:
    chain = {**method, "teacher": "plain5", "ta_depths": [4, 3], "student": "plain2", "epochs": 4}
    ledger: list[tuple[Any, ...]] = []
    store = run_store(tmp_path, ledger)
    low = train_chain(config(**chain, lower_epochs=2), store=store)
    trained_low = len(ledger)
    high_cfg = config(**chain, lower_epochs=4)
    high = train_chain(high_cfg, store=store)
    assert [h.reused for h in high.hops] == [True, False, False, False]
    assert [h.resumed_from for h in high.hops] == [0, 2, 0, 0]
    assert high.hops[0].key == low.hops[0].key and high.hops[1].key != low.hops[1].key
    # what the second chain computed: the two epochs hop 1 lacked (and its teacher's outputs again), the rest anew
    planned = planned_hops(high_cfg)
    hop = high.hops[1]
    assert hop.spent_flops == 2 * planned[1].epoch_flops + planned[1].once_flops
    assert hop.train_flops == low.hops[1].train_flops + hop.spent_flops
    assert [h.spent_flops for h in high.hops[2:]] == [p.flops for p in planned[2:]]
    assert [h.spent_flops for h in high.hops[2:]] == [h.train_flops for h in high.hops[2:]]
    assert high.spent_flops == sum(h.spent_flops for h in high.hops[1:])
    assert high.hops[1].spent_seconds < high.hops[1].train_seconds
    # the run's ledger records what each training computed, as it is stored: the resumed hop's increment
    assert [(key, flops) for key, flops, _, _ in ledger[trained_low:]] == [(h.key, h.spent_flops)
                                                                           for h in high.hops[1:]]
    # and the promoted chain is the one trained at 4 epochs from scratch
    at_once = train_chain(high_cfg)
    assert all(same_weights(a, b) for a, b in zip(high.models, at_once.models))
    assert [h.best_epoch for h in high.hops] == [h.best_epoch for h in at_once.hops]


def test_under_a_cosine_schedule_a_hop_is_trained_again_and_keeps_no_state() -> None:
    store = MemoryStore()
    train_chain(config(**{**KD, "epochs": 4}, lower_epochs=2, lr_schedule="cosine"), store=store)
    cfg = config(**{**KD, "epochs": 4}, lr_schedule="cosine")
    again = train_chain(cfg, store=store)
    assert [h.reused for h in again.hops] == [True, False] and again.student.resumed_from == 0
    assert again.student.spent_flops == again.student.train_flops == planned_hops(cfg)[1].flops
    assert store.get_resume(plan_chain(cfg)[1].resume_key) is None


# One validation image: its accuracy is 0 or 1, so it improves strictly at most once after the first epoch, and at
# patience 1 every hop ends by its third epoch, whatever it learns.
STILL = {**KD, "val_size": 1, "patience": 1}


def test_patience_ends_a_hop_after_epochs_without_a_better_validation_accuracy() -> None:
    events: list[dict[str, Any]] = []
    result = train_chain(config(**STILL, lower_epochs=4), report=events.append)
    for hop in result.hops:
        epochs = trained_epochs(events, hop.index)
        accs = [e["val_acc"] for e in events if e["event"] == "epoch" and e["hop"] == hop.index]
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) <= 3
        assert hop.best_epoch == len(epochs) - 1 and accs[-1] <= max(accs[:-1]) == hop.val_acc


def test_a_hop_patience_ended_resumes_as_finished() -> None:
    store = MemoryStore()
    events: list[dict[str, Any]] = []
    first = train_chain(config(**STILL, lower_epochs=4), report=events.append, store=store)
    stopped_at = len(trained_epochs(events, 1))
    events.clear()
    longer = train_chain(config(**STILL, lower_epochs=8), report=events.append, store=store)
    hop = longer.student
    assert not hop.reused and hop.resumed_from == stopped_at < 4 and not trained_epochs(events, 1)
    assert (hop.spent_flops, hop.spent_seconds) == (0, 0.0)
    assert (hop.train_flops, hop.best_epoch, hop.val_acc) == (first.student.train_flops, first.student.best_epoch,
                                                              first.student.val_acc)
    assert same_weights(longer.models[1], first.models[1])


@pytest.mark.parametrize("chain", [
    {"method": "takd"},
    {"method": "dgkd", "drop": 1},
    {"method": "ensemble", "weighting": "learned", "fit_size": 50},
], ids=["takd", "dgkd", "ensemble-learned"])
def test_the_planned_cost_is_what_training_counts(chain: dict[str, Any]) -> None:
    cfg = config(**chain, teacher="plain4", ta_depths=[3], student="plain2", epochs=2, lower_epochs=1)
    result = train_chain(cfg)
    planned = planned_hops(cfg)
    assert [(p.arch, p.epochs) for p in planned] == [("plain4", 2), ("plain3", 1), ("plain2", 1)]
    assert [p.flops for p in planned] == [h.train_flops for h in result.hops]
    assert sum(p.flops for p in planned) == result.train_flops


def test_with_augmentation_the_plan_counts_the_teachers_per_batch_and_dgkds_drops_on_average() -> None:
    cfg = config(method="dgkd", drop=1, teacher="plain4", ta_depths=[3], student="plain2", epochs=1, augment=True)
    result = train_chain(cfg)
    plain, planned = planned_hops(cfg.replace(augment=False)), planned_hops(cfg)
    teachers = [hop.flops for hop in result.hops[:2]]
    # hop 1 forwards its one teacher on every batch of its one epoch: what the cached outputs cost once
    assert planned[1].flops == plain[1].flops == result.hops[1].train_flops
    # the student forwards one of its two teachers per batch: half of them on average, one or the other in fact
    own = plain[2].flops - 200 * sum(teachers)
    assert planned[2].flops == own + 100 * sum(teachers)
    assert own + 200 * min(teachers) <= result.student.train_flops <= own + 200 * max(teachers)
