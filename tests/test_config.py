"""ChainConfig: round trip, and every malformed config rejected with one line naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from trainables.config import ChainConfig
from trainables.hops import plan_chain
from trainables.typed import InputError


def test_flat_round_trip_and_defaults() -> None:
    cfg = ChainConfig.from_flat({"method": "takd", "ta_depths": [8, 6, 4], "alpha": 1})
    assert cfg.param("alpha") == 1.0 and isinstance(cfg.param("alpha"), float)
    assert cfg.params == {"temperature": 4.0, "alpha": 1.0}  # the method's settings, defaults filled in
    assert cfg.ta_archs == ("plain8", "plain6", "plain4")
    assert ChainConfig.from_flat(cfg.to_flat()) == cfg
    assert cfg.archs == ("plain10", "plain8", "plain6", "plain4", "plain2")


def test_settings_of_other_methods_may_be_null_but_not_set() -> None:
    row = {"method": "takd", "ta_depths": [6], "weighting": None, "drop": None}  # a Parquet row's nulls
    assert ChainConfig.from_flat(row).params == {"temperature": 4.0, "alpha": 0.5}
    with pytest.raises(InputError, match="^weighting: not a setting of method 'takd'"):
        ChainConfig.from_flat({**row, "weighting": "mean"})


def test_replacing_the_method_drops_the_old_methods_settings() -> None:
    cfg = ChainConfig.from_flat({"method": "ensemble", "ta_depths": [6], "weighting": "learned", "fit_size": 0.05})
    assert cfg.replace(method="takd").params == {"temperature": 4.0, "alpha": 0.5}
    assert cfg.replace(method="dgkd", drop=1).param("drop") == 1


def test_labels_and_groups_come_from_the_method() -> None:
    ensemble = ChainConfig.from_flat({"method": "ensemble", "ta_depths": [8, 6], "weighting": "learned",
                                      "fit_size": 100, "space": "logit", "temperature": 5, "alpha": 0.5, "width": 0.5})
    assert ensemble.label == "ensemble[learned/logit] 10→8→6→2 T=5.0 α=0.50 w=0.5"
    assert ensemble.group == "ensemble-learned"
    dgkd = ChainConfig.from_flat({"method": "dgkd", "ta_depths": [6], "drop": 1})
    assert dgkd.label == "dgkd 10→6→2 T=4.0 α=0.50 drop=1" and dgkd.group == "dgkd"
    assert ChainConfig(method="nokd").label == "nokd 2"
    resnets = ChainConfig.from_flat({"method": "takd", "teacher": "resnet56", "ta_depths": [20],
                                     "student": "resnet8"})
    assert resnets.chain_label == "resnet56→20→8"


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"colour": "red"}, "colour"),
    ({"temperature": 0}, "temperature"),
    ({"temperature": -2.0}, "temperature"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": "high"}, "alpha"),
    ({"method": "fitnet"}, "method"),
    ({"method": "ensemble", "ta_depths": [6], "weighting": "median"}, "weighting"),
    ({"method": "ensemble", "ta_depths": [6], "space": "rank"}, "space"),
    ({"method": "takd", "ta_depths": [4, 6]}, "ta_depths"),
    ({"method": "takd", "ta_depths": [6, 6]}, "ta_depths"),
    ({"method": "takd", "ta_depths": [12]}, "ta_depths"),
    ({"method": "takd", "ta_depths": [2]}, "ta_depths"),
    ({"method": "takd", "ta_depths": "6,4"}, "ta_depths"),
    ({"method": "kd", "ta_depths": [6]}, "ta_depths"),
    ({"method": "dgkd", "ta_depths": [6], "drop": 2}, "drop"),
    ({"method": "dgkd", "ta_depths": [6], "drop": -1}, "drop"),
    ({"method": "kd", "drop": 0}, "drop"),
    ({"width": 1e9}, "width"),
    ({"batch_size": 10**7}, "batch_size"),
    ({"kl_reduction": "sum"}, "kl_reduction"),
    ({"init": "xavier"}, "init"),
    ({"precision": "fp16"}, "precision"),
    ({"temperature": float("nan")}, "temperature"),
    ({"method": "takd", "ta_depths": [6], "drop": 1}, "drop"),
    ({"method": "takd", "ta_depths": [6], "weighting": "learned"}, "weighting"),
    ({"teacher": "vgg16"}, "teacher"),
    ({"student": "plain12"}, "student"),
    ({"teacher": "plain2", "student": "plain4"}, "teacher"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"lower_epochs": -1}, "lower_epochs"),
    ({"patience": -1}, "patience"),
    ({"patience": 1.5}, "patience"),
    ({"batch_size": True}, "batch_size"),
    ({"lr": 0}, "lr"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"momentum": 1.0}, "momentum"),
    ({"val_size": 0}, "val_size"),
    ({"val_size": 1.5}, "val_size"),
    ({"fit_size": -1}, "fit_size"),
    ({"fit_size": 1.5}, "fit_size"),
    # the learned ensemble fits its weights on the fit hold-out: none is refused
    ({"method": "ensemble", "ta_depths": [6], "weighting": "learned"}, "fit_size"),
    ({"method": "ensemble", "ta_depths": [6], "weighting": "learned", "fit_size": 0}, "fit_size"),
    ({"train_size": 0}, "train_size"),
    ({"width": 0}, "width"),
    ({"device": "tpu"}, "device"),
    ({"seed": -1}, "seed"),
]


@pytest.mark.parametrize("flat, field", MALFORMED, ids=[f"{f}-{i}" for i, (_, f) in enumerate(MALFORMED)])
def test_malformed_config_is_rejected_naming_the_field(flat: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as error:
        ChainConfig.from_flat(flat)
    message = str(error.value)
    assert error.value.field == field and message.startswith(f"{field}: ")
    assert "\n" not in message


def test_hops_share_keys_where_training_is_the_same() -> None:
    takd = plan_chain(ChainConfig(method="takd", ta_depths=(6,)))
    dgkd = plan_chain(ChainConfig(method="dgkd", ta_depths=(6,)))
    ensemble = plan_chain(ChainConfig(method="ensemble", ta_depths=(6,), params={"weighting": "confidence"}))
    kd = plan_chain(ChainConfig(method="kd", student="plain6"))
    # teacher from labels, and the first TA (plain KD from the teacher) are the same hops in every method
    assert takd[0].key == dgkd[0].key == ensemble[0].key == kd[0].key
    assert takd[1].key == dgkd[1].key == ensemble[1].key == kd[1].key
    # the students differ: one teacher vs the sum of KLs vs an ensemble
    assert len({takd[2].key, dgkd[2].key, ensemble[2].key}) == 3
    assert [p.teachers for p in dgkd] == [(), (0,), (0, 1)]
    assert [p.teachers for p in takd] == [(), (0,), (1,)]
    assert plan_chain(ChainConfig(method="takd", ta_depths=(6,), seed=1))[0].key != takd[0].key


@pytest.mark.parametrize("change", [{"init": "he"}, {"kl_reduction": "mean"}, {"precision": "bf16"}])
def test_recipe_settings_change_every_hop_they_shape(change: dict[str, Any]) -> None:
    base = plan_chain(ChainConfig(method="takd", ta_depths=(6,)))
    other = plan_chain(ChainConfig.from_flat({"method": "takd", "ta_depths": [6], **change}))
    labels_only = "kl_reduction" in change  # the teacher learns from labels: no KL term to reduce
    assert (base[0].key == other[0].key) == labels_only
    assert base[1].key != other[1].key and base[2].key != other[2].key


def test_the_code_version_changes_keys_but_not_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables import hops

    before = plan_chain(ChainConfig(method="takd", ta_depths=(6,)))
    monkeypatch.setattr(hops, "TRAINING_CODE_VERSION", hops.TRAINING_CODE_VERSION + 1)
    after = plan_chain(ChainConfig(method="takd", ta_depths=(6,)))
    assert all(a.key != b.key and a.seed == b.seed for a, b in zip(before, after))


def test_the_teacher_trains_epochs_and_the_hops_below_it_lower_epochs() -> None:
    cfg = ChainConfig(method="takd", ta_depths=(6,), epochs=16)
    assert [cfg.hop_epochs(i) for i in range(3)] == [16, 16, 16]
    assert [cfg.replace(lower_epochs=4).hop_epochs(i) for i in range(3)] == [16, 4, 4]
    assert ChainConfig(method="nokd", epochs=16, lower_epochs=4).hop_epochs(0) == 4  # its only hop is a student


def test_nokd_trains_the_student_alone() -> None:
    plans = plan_chain(ChainConfig(method="nokd"))
    assert [(p.arch, p.role, p.teachers) for p in plans] == [("plain2", "student", ())]


def test_numbers_are_normalised_so_equal_configs_hash_equal() -> None:
    direct = ChainConfig(val_size=200, params={"alpha": 1})
    assert direct == ChainConfig.from_flat({"val_size": 200.0, "alpha": 1.0})
    assert plan_chain(direct)[0].key == plan_chain(direct.replace(seed=0))[0].key
