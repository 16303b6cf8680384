"""The capturable training step (`trainables.step`), proved on the CPU.

- For every method, 20 steps of the step as the chain trains it equal, bit for bit in fp32, 20 steps of the step as
  it was written before it was made capturable (`eager_reference_steps`: each batch normalised on its own, the
  teachers' logits gathered and softened per step, DGKD's dropped teachers skipped in Python, the per-parameter
  SGD loop): normalising a whole split once and softening the teachers once per hop are the same elementwise and
  row-wise operations on the same numbers, and x + 0 = x makes a dropped teacher's zero term vanish exactly.
- For every method, the differentiable part of the step compiles with `torch.compile(fullgraph=True,
  backend="aot_eager")`, forward and backward (AOTAutograd traces the joint graph), and so does SGD's update: no
  graph breaks, hence no host syncs (a `.item()` or data-dependent branch would break the graph). What a CUDA graph
  captures is then the same step.
- On CUDA (KDSTUDY_TEST_DEVICE=cuda, as `bench/gpu_check.py` runs it), the graphed step trains like the eager one.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from trainables.config import ChainConfig
from trainables.data import DataBundle, load_chain_data
from trainables.losses import confidence_weights, distillation_term, ensemble_log_probs, kd_loss, soft_log_probs
from trainables.loop import HopTraining, TeacherOutputs, fit_teaching, train_epoch
from trainables.methods import KDMethod
from trainables.models import build_model
from trainables.step import TrainStep, sgd

DEVICE = torch.device(os.environ.get("KDSTUDY_TEST_DEVICE", "cpu"))
STEPS = 20
BATCH = 32
DATA = {"dataset": "mnist5k", "train_size": STEPS * BATCH, "val_size": 100, "width": 0.25, "fit_size": 64}
METHODS: dict[str, dict[str, Any]] = {
    "nokd": {"method": "nokd", "ta_depths": []},
    "takd": {"method": "takd", "temperature": 4.0, "alpha": 0.7},
    "dgkd": {"method": "dgkd", "drop": 1, "temperature": 3.0, "alpha": 0.6},
    "ensemble-mean": {"method": "ensemble", "weighting": "mean", "space": "prob", "temperature": 3.0, "alpha": 0.7},
    "ensemble-learned": {"method": "ensemble", "weighting": "learned", "space": "logit", "temperature": 2.0,
                         "alpha": 0.5},
    "ensemble-confidence": {"method": "ensemble", "weighting": "confidence", "temperature": 3.0, "alpha": 0.7},
}
TEACHERS = ("plain4", "plain3", "plain3")  # the student's three teachers (its hop in a plain6 → 4 → 3 chain)


def config(name: str) -> ChainConfig:
    return ChainConfig.from_flat({**DATA, "teacher": "plain6", "ta_depths": [4, 3], "student": "plain2",
                                  "batch_size": BATCH, "lr": 0.05, "device": DEVICE.type, **METHODS[name]})


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return load_chain_data(config("takd")).to(DEVICE)


def model(arch: str, data: DataBundle, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, data.num_classes, data.in_channels, data.image_size, 0.25).to(DEVICE)


def student_hop(name: str, data: DataBundle, graphs: bool = False) -> HopTraining:
    """The student's hop as the chain builds it (fitted where its method fits), on a fresh student."""
    cfg = config(name)
    teachers = [model(arch, data, seed).eval() for seed, arch in enumerate(TEACHERS)]
    teachers = teachers[:1] if cfg.method_class.teachers == "previous" else teachers
    teachers = [] if cfg.method_class.teachers == "none" else teachers
    method = cfg.method_class.teaching(cfg, len(teachers))
    outputs = TeacherOutputs(teachers, [1] * len(teachers), data, per_batch=False, precision="fp32")
    student = model("plain2", data, 7)
    hop = HopTraining(student, sgd(student.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, DEVICE), method,
                      outputs, torch.Generator().manual_seed(5), 1, BATCH, False, "fp32", graphs=graphs)
    if method.fits_on_fit_split(cfg.params):
        fit_teaching(hop, data.fit)
    return hop


def eager_reference_steps(hop: HopTraining, data: DataBundle) -> None:
    """One epoch as the step was before it was made capturable, on the hop's own model, method and draws."""
    model, method, cfg = hop.model, hop.method, hop.method.cfg
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                foreach=False)
    logits_cache = hop.teachers.for_split(data.train) if hop.teachers.teachers else None
    mean = torch.tensor(data.mean, device=DEVICE).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=DEVICE).view(1, -1, 1, 1).clamp_min(1e-6)
    order = torch.randperm(len(data.train), generator=hop.generator).to(DEVICE)
    model.train()
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        x = (data.train.x[idx].to(torch.float32).div_(255.0) - mean).div_(std)
        y = data.train.y[idx]
        active = method.active_teachers(hop.generator)
        teacher_logits = logits_cache.index_select(1, idx)[active] if active else None
        terms = reference_loss(method, model(x), teacher_logits, y)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def reference_loss(method: KDMethod, student: torch.Tensor, teacher_logits: torch.Tensor | None,
                   y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each method's loss as it was computed from the active teachers' logits of one batch."""
    if teacher_logits is None:
        return {"ce": F.cross_entropy(student.float(), y)}
    cfg = method.cfg
    t, alpha, reduction = cfg.param("temperature"), cfg.param("alpha"), cfg.kl_reduction
    if method.name == "dgkd":
        kl = sum(distillation_term(student, soft_log_probs(z, t), t, reduction) for z in teacher_logits)
        return {"ce": (1 - alpha) * F.cross_entropy(student.float(), y), "kd": alpha * kl}
    if method.name == "ensemble":
        weights = confidence_weights(teacher_logits, y) if cfg.param("weighting") == "confidence" else method._weights
        teacher = ensemble_log_probs(teacher_logits, weights.to(teacher_logits.device), t, cfg.param("space"))
        return kd_loss(student, teacher, y, alpha, t, reduction)
    return kd_loss(student, soft_log_probs(teacher_logits[0], t), y, alpha, t, reduction)


def weights(hop: HopTraining) -> list[torch.Tensor]:
    return [tensor.detach().clone() for tensor in hop.model.state_dict().values()]


@pytest.mark.skipif(DEVICE.type != "cpu", reason="bit-identity is promised on the CPU")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_capturable_step_trains_bit_for_bit_as_before(name: str, data: DataBundle) -> None:
    ours, before = student_hop(name, data), student_hop(name, data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order for both
    try:
        train_epoch(ours, data)
        eager_reference_steps(before, data)
    finally:
        torch.set_num_threads(threads)
    assert ours.generator.get_state().equal(before.generator.get_state())  # the same draws, as many
    changed = [not torch.equal(a, b) for a, b in zip(weights(ours), weights(student_hop(name, data)))]
    assert any(changed)  # it trained
    assert all(torch.equal(a, b) for a, b in zip(weights(ours), weights(before)))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_step_compiles_whole_without_graph_breaks(name: str, data: DataBundle) -> None:
    hop = student_hop(name, data)
    step = hop.step
    assert isinstance(step, TrainStep)
    x, y = data.images(data.train)[:BATCH], data.train.y[:BATCH]
    teachers = (hop.teacher_targets(data)[:, :BATCH] if hop.method.num_teachers
                else x.new_empty(0))
    active = torch.ones(hop.method.num_teachers, device=DEVICE)
    torch._dynamo.reset()
    losses = torch.compile(step.losses, fullgraph=True, backend="aot_eager")(x, y, teachers, active)
    assert list(losses) == list(hop.method.loss_terms)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in hop.model.parameters())

    update = type(hop.optimizer).step
    while hasattr(update, "__wrapped__"):  # past the hooks' and no_grad wrappers, which break graphs on purpose
        update = update.__wrapped__

    def sgd_update() -> None:
        with torch.no_grad():
            update(hop.optimizer)

    before = weights(hop)
    torch.compile(sgd_update, fullgraph=True, backend="aot_eager")()
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(hop)))


def test_a_loss_with_other_terms_than_declared_is_refused(data: DataBundle) -> None:
    hop = student_hop("takd", data)
    hop.method.loss_terms = ("kd", "ce")  # an instance attribute: the class keeps its own
    x, y = data.images(data.train)[:BATCH], data.train.y[:BATCH]
    with pytest.raises(ValueError, match="kd: loss returned the terms ce, kd, but loss_terms declares kd, ce"):
        hop.step(x, y, hop.teacher_targets(data)[:, :BATCH], torch.ones(1))


@pytest.mark.skipif(DEVICE.type != "cuda", reason="CUDA graphs need CUDA")
@pytest.mark.parametrize("name", ["dgkd", "ensemble-mean"])
def test_the_graphed_step_trains_as_the_eager_one(name: str, data: DataBundle) -> None:
    eager, graphed = student_hop(name, data), student_hop(name, data, graphs=True)
    eager_stats, graphed_stats = train_epoch(eager, data), train_epoch(graphed, data)
    assert graphed_stats.terms == pytest.approx(eager_stats.terms, rel=1e-3)
    for a, b in zip(weights(eager), weights(graphed)):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-3, atol=1e-4)
