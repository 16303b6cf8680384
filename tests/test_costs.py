"""The cost columns of a chain (reference FLOPs against a hand count, spent against train with a reused hop) and
the report's cost section.

Every chain here trains on 192 images, validates on 64, for 2 epochs: in the hand counts below, E = 2, N = 192,
V = 64, and fK is the inference FLOPs per image of hop K (teacher 0, TA 1, student 2). A step costs 3 forwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.costs import cost_section
from analysis.load import load_run
from runstore import schema
from runstore.storage import locate
from study import rows
from study.results_folder import ResultsFolder
from tests.analysis_fixtures import write_table
from tests.conftest import DEVICE
from trainables import ChainConfig, ChainResult, MemoryStore, train_chain

SMALL = dict(dataset="mnist5k", train_size=192, val_size=64, width=0.25, epochs=2, lr=0.05, batch_size=64,
             teacher="plain4", ta_depths=(3,), student="plain2", device=DEVICE)
E, N, V = 2, 192, 64


@pytest.fixture(scope="module")
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(scope="module")
def takd(store: MemoryStore) -> ChainResult:
    return train_chain(ChainConfig(method="takd", **SMALL), store=store)


def test_takd_reference_flops_forward_each_teacher_every_epoch_where_training_forwards_it_once(
        takd: ChainResult) -> None:
    f0, f1, f2 = (hop.flops for hop in takd.hops)
    assert [hop.reference_flops for hop in takd.hops] == [
        E * N * 3 * f0 + E * V * f0,  # the teacher: its steps and its validation, no teacher to forward
        E * N * (3 * f1 + f0) + E * V * f1,  # the TA: its teacher forwarded on every batch of every epoch
        E * N * (3 * f2 + f1) + E * V * f2,  # the student: likewise, the TA
    ]
    assert [hop.train_flops for hop in takd.hops] == [
        E * N * 3 * f0 + E * V * f0,
        E * N * 3 * f1 + E * V * f1 + N * f0,  # the teacher's outputs computed once and cached
        E * N * 3 * f2 + E * V * f2 + N * f1,
    ]


def test_dgkd_reference_flops_forward_the_dropped_teachers_too() -> None:
    # With augmentation the teachers run per batch, and DGKD (drop 1) forwards only the one it keeps; the
    # reference code forwards both and leaves one out of the loss.
    result = train_chain(ChainConfig.from_flat({**SMALL, "method": "dgkd", "drop": 1, "augment": True}))
    f0, f1, f2 = (hop.flops for hop in result.hops)
    ta, student = result.hops[1], result.hops[2]
    assert ta.reference_flops == E * N * (3 * f1 + f0) + E * V * f1 == ta.train_flops  # one teacher, none dropped
    assert student.reference_flops == E * N * (3 * f2 + f0 + f1) + E * V * f2
    assert student.upper_forward_samples == E * N  # one of its two teachers per image
    assert student.train_flops < student.reference_flops


def test_learned_ensemble_reference_flops_add_the_fitting_forwards_once() -> None:
    fit = 32  # training images held out for the stacking weights
    cfg = ChainConfig.from_flat({**SMALL, "method": "ensemble", "weighting": "learned", "fit_size": fit})
    result = train_chain(cfg)
    f0, f1, f2 = (hop.flops for hop in result.hops)
    student = result.student
    assert student.reference_flops == E * N * (3 * f2 + f0 + f1) + E * V * f2 + fit * (f0 + f1)
    assert student.train_flops == E * N * 3 * f2 + E * V * f2 + N * (f0 + f1) + fit * (f0 + f1)


def test_spent_is_what_the_chain_trained_itself_and_never_more_than_train(takd: ChainResult,
                                                                         store: MemoryStore) -> None:
    again = train_chain(ChainConfig.from_flat({**SMALL, "method": "ensemble", "weighting": "mean"}), store=store)
    assert [hop.reused for hop in again.hops] == [True, True, False]
    for reused, trainer in zip(again.hops[:2], takd.hops):  # the trainer's costs travel with the weights
        assert (reused.train_flops, reused.reference_flops, reused.train_seconds) == \
               (trainer.train_flops, trainer.reference_flops, trainer.train_seconds)
        assert reused.spent_flops == 0 and reused.spent_seconds == 0 and reused.wait_seconds >= 0
    student = again.student
    assert (student.spent_flops, student.spent_seconds) == (student.train_flops, student.train_seconds)
    summary = again.summary()
    assert summary["spent_flops"] == student.train_flops < summary["train_flops"] == again.train_flops
    assert summary["spent_seconds"] == student.train_seconds < summary["train_seconds"]
    assert summary["train_seconds"] == pytest.approx(sum(hop.train_seconds for hop in again.hops))
    assert summary["train_flops"] < summary["reference_flops"]


def test_the_cost_section_counts_every_training_once_against_the_trials_from_scratch(tmp_path: Path) -> None:
    cfg = ChainConfig(method="takd", ta_depths=(4,))
    for trial_id, train, reference, wait in (("t1", 3e9, 5e9, 0.0), ("t2", 3e9, 6e9, 1.5)):
        row = rows.trial_row(trial_id, cfg, schema.FINISHED, summary={
            "student_val_acc": 0.9, "train_flops": int(train), "reference_flops": int(reference), "wait_seconds": wait})
        write_table(tmp_path / "results" / "trials" / f"{trial_id}.parquet", [row], rows.trials_schema())
    results = ResultsFolder(locate(str(tmp_path / "results")))
    for trial_id, key, flops, seconds, diverged in (
            ("t1", "k0", 10**9, 1.0, False), ("t1", "k1", 10**9, 1.0, False), ("t1", "k2", 10**9, 1.0, False),
            ("t2", "k3", 10**9, 2.0, False),  # by an attempt of t2 that died: its row reuses k3
            ("t2", "k4", 5 * 10**8, 0.5, True),
            ("t1-s100", "k9", 5 * 10**9, 9.0, False)):  # a confirmation's: not one of the search's trials
        results.write_trained(trial_id, key, flops, seconds, diverged)
    results.write_confirmation("t1", cfg.replace(seed=100), schema.FINISHED, summary={"student_val_acc": 0.9})
    heading, body = cost_section(load_run(tmp_path))
    assert heading == "Cost"
    # spent: 1e9 · 4 + 5e8 = 4.5e9 FLOPs and 5.5 s in 5 trainings; from scratch: 3e9 + 3e9; 4.5 / 6 = 0.75
    assert "Spent by the study: 4.5e+09 FLOPs and 5.5 s of training in 5 hop trainings, 1 of them to a blow-up" in body
    assert "would cost 6e+09 FLOPs" in body and "the study spent 0.75× that" in body
    assert "- Seed confirmation spent 5e+09 FLOPs and 9.0 s more in 1 hop training." in body
    assert "Trials waited 1.5 s in all" in body and "trial `t2`" in body
    # caching saves 1 − 3/5 = 40 % and 1 − 3/6 = 50 %: a median of 45 %
    assert "- **takd**: caching the upper models' outputs saves a median 45 % of the reference code's training " \
           "FLOPs (from 40 % to 50 %), over 2 finished trials." in body
