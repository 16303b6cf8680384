"""A study's planned cost against hand counts: plain4 → (TA plain3) → plain2 by kd or takd, 10 trials, 16 epochs
per hop, halving at 1, 4 and 16 epochs (factor 4: all trials reach rung 1, a quarter rung 4, a sixteenth rung 16).

A kd trial trains its student; a takd trial its TA and its student. At a promotion the first hop below the teacher
resumes (only the epochs it lacks), the student under a TA is trained again; the teacher is trained once per study.
The space's one warm start (takd through the TA) comes first and is taken through every rung; the 9 other trials
are kd or takd, half and half. Each hop's FLOPs are `planned_hops`' at the epochs it trains, read here per hop: the
plan's arithmetic is what these tests check."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.plan import plan_study, si_flops
from study.spec import StudySpec
from trainables import ChainConfig
from trainables.hops import plan_chain
from trainables.methods import all_params
from trainables.plan import PlannedHop, planned_hops

CHAIN = {"width": 0.25, "train_size": 200, "val_size": 100, "lr_schedule": "constant", "device": "cpu"}
TRIALS, EPOCHS = 10, 16


def _spec(tmp_path: Path, **changes: object) -> StudySpec:
    settings: dict = dict(teacher="plain4", student="plain2", ta_candidates=(3,), methods=("kd", "takd"),
                          epochs=EPOCHS, trials=TRIALS, scheduler="halving", halving_min=1 / 16, halving_factor=4,
                          chain=CHAIN, storage=str(tmp_path), name="planned")
    return StudySpec(**{**settings, **changes})


def _hop(method: str, hop: int, epochs: int) -> PlannedHop:
    """Hop `hop` of the method's chain with `epochs` epochs per hop below the teacher."""
    cfg = ChainConfig.from_flat({**CHAIN, "teacher": "plain4", "student": "plain2", "method": method,
                                 "ta_depths": [3] if method == "takd" else [], "epochs": EPOCHS,
                                 "lower_epochs": epochs})
    return planned_hops(cfg)[hop]


def _flops(method: str, hop: int, epochs: int) -> int:
    return _hop(method, hop, epochs).flops


def _never_stored(key: str) -> bool:
    return False


def test_halving_plans_each_rung_for_the_share_that_reaches_it_and_the_teacher_once(tmp_path: Path) -> None:
    plan = plan_study(_spec(tmp_path), stored=_never_stored)
    # hop-epochs of a drawn trial: kd's student 1 + (4 - 1)/4 + (16 - 4)/16 = 2.5 (it resumes); takd's TA 2.5
    # likewise, its student retrained 1 + 4/4 + 16/16 = 3: 5.5; the mean of the two methods, 4.
    # The warm start skips the rungs: its TA and its student 16 each
    assert plan.planned.hop_epochs == pytest.approx(32 + 9 * (2.5 + 5.5) / 2 + EPOCHS)
    # naive: kd 2 hops and takd 3 hops, all at 16 epochs: 32 and 48 hop-epochs a trial
    assert plan.naive.hop_epochs == pytest.approx(48 + 9 * (32 + 48) / 2)
    assert plan.hops == pytest.approx((3 + 9 * 2.5) / 10)

    def resumed(method: str, hop: int, shares: tuple[float, float] = (1 / 4, 1 / 16)) -> float:
        """Trained 1 epoch, then the 3 and the 12 it lacks, its teachers' outputs computed again each time."""
        per_epoch, once = _hop(method, hop, 1).epoch_flops, _hop(method, hop, 1).once_flops
        return _flops(method, hop, 1) + (3 * per_epoch + once) * shares[0] + (12 * per_epoch + once) * shares[1]

    def retrained(method: str, hop: int, shares: tuple[float, float] = (1 / 4, 1 / 16)) -> float:
        return _flops(method, hop, 1) + _flops(method, hop, 4) * shares[0] + _flops(method, hop, 16) * shares[1]

    teacher = _flops("kd", 0, 16)
    warm = _flops("takd", 1, 16) + _flops("takd", 2, 16)
    kd, takd = resumed("kd", 1), resumed("takd", 1) + retrained("takd", 2)
    assert plan.planned.flops == pytest.approx(warm + 9 * (kd + takd) / 2 + teacher)
    naive_kd = teacher + _flops("kd", 1, 16)
    naive_takd = teacher + _flops("takd", 1, 16) + _flops("takd", 2, 16)
    assert plan.naive.flops == pytest.approx(naive_takd + 9 * (naive_kd + naive_takd) / 2)
    assert plan.line().startswith("plan: 10 trials × ") and " hops; naive 408 hop-epochs (" in plan.line()
    assert "; planned 84 hop-epochs (0.21×), " in plan.line()
    assert plan.line().endswith(" with halving at 1, 4, 16 epochs and the teacher trained once (before TA hops "
                                "shared on a grid)")


def test_without_warm_starts_every_trial_is_drawn_from_the_space(tmp_path: Path) -> None:
    plan = plan_study(_spec(tmp_path, methods=("kd",)), stored=_never_stored)
    assert (plan.planned.hop_epochs, plan.naive.hop_epochs) == (pytest.approx(TRIALS * 2.5 + EPOCHS), TRIALS * 32)


def test_a_cosine_schedule_retrains_every_hop_at_every_rung(tmp_path: Path) -> None:
    plan = plan_study(_spec(tmp_path, chain={**CHAIN, "lr_schedule": "cosine"}), stored=_never_stored)
    # kd's student 1 + 4/4 + 16/16 = 3; takd's TA and student 3 each: a mean of 4.5 a trial; the warm start 16 + 16
    assert plan.planned.hop_epochs == pytest.approx(32 + 9 * (3 + 6) / 2 + EPOCHS)


def test_without_halving_every_trial_trains_its_hops_below_the_teacher_in_full(tmp_path: Path) -> None:
    plan = plan_study(_spec(tmp_path, scheduler="none"), stored=_never_stored)
    assert plan.planned.hop_epochs == pytest.approx(32 + 9 * (16 + 32) / 2 + EPOCHS)
    assert plan.line().endswith(" with every chain in full and the teacher trained once (before TA hops shared on "
                                "a grid)")


def test_a_teacher_the_runs_store_holds_is_not_planned_again(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cfg = ChainConfig.from_flat({**spec.base_config(), "method": "kd"})
    teacher = plan_chain(cfg)[0]
    assert teacher.role == "teacher"
    models = tmp_path / "planned" / "models"
    models.mkdir(parents=True)
    (models / f"{teacher.key}.pt").write_bytes(b"weights")  # only looked up, never read
    plan = plan_study(spec)
    assert plan.planned.hop_epochs == pytest.approx(32 + 9 * (2.5 + 5.5) / 2)
    assert plan.teacher_stored and "and the teacher already stored" in plan.line()


def test_only_the_trials_still_to_run_are_planned(tmp_path: Path) -> None:
    plan = plan_study(_spec(tmp_path), ended=8, stored=_never_stored)
    assert plan.trials == 2
    assert plan.naive.hop_epochs == 2 * (32 + 48) / 2  # the warm start, drawn first, has ended
    # a space of two configurations (kd, and takd through the one TA) at one T and α: at most 2 trials to plan
    search = {name: all_params()[name].check_search([value, value]) for name, value in (("temperature", 4.0),
                                                                                       ("alpha", 0.5))}
    assert plan_study(_spec(tmp_path, search=search), stored=_never_stored).trials == 2


def test_a_space_without_a_teacher_plans_its_one_hop(tmp_path: Path) -> None:
    plan = plan_study(_spec(tmp_path, methods=("nokd",)), stored=_never_stored)
    # one configuration in the space, the nokd warm start: one trial, its student trained in full
    assert (plan.trials, plan.planned.hop_epochs, plan.naive.hop_epochs) == (1, 16, 16)
    assert plan.teacher_stored is None
    assert plan.line().endswith(" with halving at 1, 4, 16 epochs (before TA hops shared on a grid)")


def test_no_trial_left_is_one_line(tmp_path: Path) -> None:
    assert plan_study(_spec(tmp_path), ended=TRIALS, stored=_never_stored).line() == "plan: no trial left to train"


@pytest.mark.parametrize("flops, text", [(833e15, "833 PFLOP"), (1.5e3, "1.5 kFLOP"), (12, "12 FLOP"),
                                         (999.7e9, "1 TFLOP")])
def test_flops_are_written_with_si_prefixes(flops: float, text: str) -> None:
    assert si_flops(flops) == text
