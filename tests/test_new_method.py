"""A KD method is one file: a method defined here, in this test module alone, is accepted by a spec, suggested by
the space, trained in a real study, gets hop keys of its own, and shows up labelled in the report with its extra
loss term in the epochs table — with no other file edited."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import optuna
import pyarrow.parquet as pq
import pytest
import ray
import torch
from torch import Tensor

from analysis.report import write_report
from study.runner import run_study
from study.space import suggest
from study.spec import load_spec
from study.trainable import TrialContext, chain_trainable
from trainables import ChainConfig
from trainables.hops import plan_chain
from trainables.losses import ensemble_log_probs, kd_loss, uniform_weights
from trainables.methods import KDMethod, Param, method_names, register_method, unregister_method
from trainables.methods.params import KD_PARAMS

SHARPNESS = Param("sharpness", float, 0.1, "weight of the student's entropy penalty", low=0.0, high=1.0,
                  search=(0.05, 0.5), label="s={:.2f}")


class SharpKD(KDMethod):
    """Mean-ensemble KD from all models above, plus a penalty on the student's entropy (a sharper student)."""

    name = "sharpkd"
    teachers = "all_above"
    uses_tas = True
    params = (*KD_PARAMS, SHARPNESS)
    loss_terms = ("ce", "kd", "entropy")

    @classmethod
    def teaching(cls, cfg: ChainConfig, num_teachers: int) -> KDMethod:
        # unlike KD variants that reduce to plain KD, this one differs from KD even with a single teacher
        return super().teaching(cfg, 0) if num_teachers == 0 else cls(cfg, num_teachers)

    def teacher_targets(self, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        t = self.cfg.param("temperature")
        return ensemble_log_probs(teacher_logits, uniform_weights(len(teacher_logits)), t, "prob").unsqueeze(0)

    def loss(self, student_logits: Tensor, teachers: Tensor, targets: Tensor, active: Tensor) -> dict[str, Tensor]:
        t = self.cfg.param("temperature")
        terms = kd_loss(student_logits, teachers[0], targets, self.cfg.param("alpha"), t, self.cfg.kl_reduction)
        probs = torch.softmax(student_logits.float(), 1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1).mean()
        return {**terms, "entropy": self.cfg.param("sharpness") * entropy}


@pytest.fixture()
def sharpkd() -> Iterator[type[KDMethod]]:
    register_method(SharpKD)
    yield SharpKD
    unregister_method(SharpKD.name)  # other tests' default method list stays the built-in one


# Ray workers import trainables, not this module: the trainable ships by value and registers the method there.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def sharpkd_trainable(config: dict[str, Any], context: TrialContext) -> None:
    register_method(SharpKD)
    chain_trainable(config, context)


SPEC = """
teacher = "plain6"
student = "plain2"
ta_candidates = [4]
methods = ["sharpkd"]
epochs = 1
trials = 2
max_concurrent = 2
max_failures = 0

[search]
sharpness = [0.2, 0.4]

[chain]
width = 0.25
train_size = 300
val_size = 100
lr = 0.05
"""


def test_a_method_defined_in_one_file_runs_through_the_whole_system(sharpkd: type[KDMethod], ray_cluster: str,
                                                                    tmp_path: Path) -> None:
    assert "sharpkd" in method_names()
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    spec = load_spec(spec_file, {"storage": str(tmp_path), "name": "plugin"})  # a spec accepts it and its setting

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"method": "sharpkd"})
    trial = study.ask()
    suggest(trial, spec)
    assert 0.2 <= trial.params["sharpness"] <= 0.4 and trial.params["ta_depths"] == "4"  # the space suggests it

    cfg = ChainConfig.from_flat({**spec.base_config(), "method": "sharpkd", "ta_depths": [4], "sharpness": 0.3})
    others = {p.key for m in ("takd", "dgkd", "ensemble") for p in plan_chain(cfg.replace(method=m))}
    others |= {p.key for p in plan_chain(cfg.replace(method="kd", ta_depths=[]))}
    taught = [p for p in plan_chain(cfg) if p.teachers]
    assert taught and not {p.key for p in taught} & others  # its hops have keys of their own

    outcome = run_study(spec, trainable=sharpkd_trainable)
    assert outcome.errors == []
    run = tmp_path / "plugin"
    mine = pq.read_table(run / "results" / "trials").to_pylist()
    assert len(mine) == 2 and all(r["status"] == "TERMINATED" and 0.2 <= r["sharpness"] <= 0.4 for r in mine)
    epochs = pq.read_table(run / "results" / "epochs").to_pylist()
    taught = [e for e in epochs if e["role"] != "teacher"]
    assert taught and all(e["loss_entropy"] > 0 and e["loss_kd"] >= 0 for e in taught)  # its extra loss column
    assert all(e["loss_entropy"] is None for e in epochs if e["role"] == "teacher")  # labels only

    summary = Path(write_report(str(run)).path, "summary.md").read_text()
    labels = [r["config_label"] for r in mine]
    assert all(label.startswith("sharpkd 6→4→2 T=") and " s=0." in label for label in labels)
    assert any(label in summary for label in labels)  # its best trial, labelled
    assert "| sharpkd |" in summary  # compared as a group of its own
