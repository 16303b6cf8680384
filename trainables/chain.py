"""`train_chain`: the teacher from labels, then each TA, then the student — every upper model frozen."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from trainables.config import ChainConfig
from trainables.data import DataBundle, load_chain_data
from trainables.device import configure_backends, resolve_device
from trainables.hops import HopPlan, plan_chain
from trainables.divergence import Diverged, HopDiverged
from trainables.loop import (Counters, HopTraining, TeacherOutputs, accuracy_and_loss, fit_teaching, predict_logits,
                             train_epoch, validate)
from trainables.models import build_model, count_params, inference_flops
from trainables.results import ChainResult, HopRecord, HopResult, TestPredictions
from trainables.step import sgd
from trainables.store import Divergence, MemoryStore, ModelStore, ResumeState, StoredHop

Report = Callable[[dict[str, Any]], None]


def train_chain(cfg: ChainConfig, report: Report | None = None, store: ModelStore | None = None,
                data: DataBundle | None = None) -> ChainResult:
    """Trains every hop of `cfg`'s chain top-down and returns per-hop accuracy and cost.

    `report` receives one dict per epoch (event="epoch") and per hop (event="hop"). Hops already in `store`
    (same content hash) are loaded instead of trained; every hop trained here is put into it, and at a constant lr
    so is the state its training stopped in: a later chain that trains the same hop for more epochs (a higher
    `lower_epochs`) resumes it instead of training it from scratch.
    """
    device = resolve_device(cfg.device)
    configure_backends(device)
    data = (data or load_chain_data(cfg)).to(device)
    trainer = ChainTrainer(cfg, data, store if store is not None else MemoryStore(), report or (lambda event: None))
    for plan in plan_chain(cfg):
        try:
            hop = trainer.run_hop(plan)
        except HopDiverged as diverged:
            diverged.completed = list(trainer.hops)
            raise
        trainer.emit({"event": "hop", **hop.to_dict()})
    return ChainResult(cfg, trainer.hops, test_targets=data.test.y.cpu(), models=trainer.models)


class ChainTrainer:
    """The state a chain builds up hop by hop: the frozen upper models and their results."""

    def __init__(self, cfg: ChainConfig, data: DataBundle, store: ModelStore, emit: Report) -> None:
        self.cfg, self.data, self.store, self.emit = cfg, data, store, emit
        self.models: list[nn.Module] = []
        self.hops: list[HopResult] = []

    def run_hop(self, plan: HopPlan) -> HopResult:
        """Loads the hop from the store, or trains and stores it; then evaluates it on the test split."""
        model = self._build(plan)
        flops = inference_flops(model, self.data.in_channels, self.data.image_size)
        record, reused, waited = self._load_or_train(plan, model, flops)
        test_logits = predict_logits(model, self.data.test, self.data, self.cfg.precision)
        hop = HopResult.of(
            record, reused, index=plan.index, arch=plan.arch, role=plan.role, key=plan.key,
            teachers=list(plan.teachers), test_acc=accuracy_and_loss(test_logits, self.data.test.y)[0],
            params=count_params(model), flops=flops, wait_seconds=waited,
            predictions=_predictions(test_logits, self.data.test.y),
        )
        self.models.append(_freeze(model))
        self.hops.append(hop)
        return hop

    def _build(self, plan: HopPlan) -> nn.Module:
        torch.manual_seed(plan.seed)
        model = build_model(plan.arch, self.data.num_classes, self.data.in_channels, self.data.image_size,
                            self.cfg.width, self.cfg.init)
        return model.to(self.data.train.x.device)

    def _load_or_train(self, plan: HopPlan, model: nn.Module, flops: int) -> tuple[HopRecord, bool, float]:
        """The hop's record, whether it came from the store, and the seconds it took to get to it (the wait: lookups,
        the claim, loading). A stored hop is loaded without its claim: stored hops never change, and a claim costs a
        round of writes and reads on the run's storage. A missing one is looked up again once its claim is held, as
        the claim's last holder may just have stored it; then it is trained, on from where a shorter training of it
        stopped when the store keeps that (`_resumable`)."""
        started = time.perf_counter()
        stored = self.store.get(plan.key)
        if stored is None:
            with self.store.claim(plan.key):
                stored = self.store.get(plan.key)
                if stored is None:
                    self._raise_if_it_diverged_before(plan)
                    resumed = self._resumable(plan)
                    waited = time.perf_counter() - started
                    record = self._train_and_count(plan, model, flops, resumed)
                    self.store.put(plan.key, StoredHop(model.state_dict(), record))
                    return record, False, waited
        model.load_state_dict(stored.state_dict)
        return stored.record, True, time.perf_counter() - started

    def _raise_if_it_diverged_before(self, plan: HopPlan) -> None:
        """A hop the store remembers as diverged ends the same way at once, without training it again."""
        remembered = self.store.divergence(plan.key)
        if remembered is not None:
            raise HopDiverged(plan.index, plan.role, plan.arch, plan.key, remembered.epoch, remembered.reason)

    def _resumable(self, plan: HopPlan) -> ResumeState | None:
        """The state a training of the hop of at most `plan.epochs` epochs stopped in, which training it continues
        (the hop's seed does not depend on its epochs: `trainables.hops`). At a constant lr only: a cosine
        schedule's lr at every epoch depends on the total, so a shorter training is no prefix of a longer one, and
        such a hop is trained again from scratch."""
        if self.cfg.lr_schedule != "constant":
            return None
        state = self.store.get_resume(plan.resume_key)
        return state if state is not None and state.epochs_done <= plan.epochs else None

    def _train_and_count(self, plan: HopPlan, model: nn.Module, flops: int, resumed: ResumeState | None
                         ) -> HopRecord:
        """Trains the hop, from scratch or on from `resumed`, and leaves its best weights in `model`; its record
        holds what training it from scratch cost, for every later reuse of its weights. At a constant lr, a hop
        trained for fewer epochs than the chain's `epochs` (a rung of successive halving) also stores the state its
        training stopped in, for a longer training of it to resume; a hop trained in full stores none (nothing
        trains it longer, and a state is its weights and momentum again, on the run's storage). A resumed state that patience
        ended (or that has all the epochs) is the hop, finished: nothing is trained. A hop that diverges is
        remembered by the store, with what this training cost up to the blow-up."""
        if resumed is not None and resumed.finished(plan.epochs):
            model.load_state_dict(resumed.best_weights)
            return self._record(plan, flops, resumed, resumed)
        started = time.perf_counter()
        hop = self._hop_training(plan, model, flops, resumed)
        progress = Progress.of(resumed)
        try:
            self._train(plan, hop, progress)
        except HopDiverged as diverged:
            cost = Divergence(diverged.epoch, diverged.reason, hop.counters.flops, time.perf_counter() - started)
            self.store.put_divergence(plan.key, cost)
            raise
        carried_counters, carried_seconds = (resumed.counters, resumed.train_seconds) if resumed else (Counters(), 0.0)
        state = ResumeState(copy.deepcopy(model.state_dict()), copy.deepcopy(hop.optimizer.state_dict()),
                            hop.generator.get_state(), hop.guard.reference, progress.best_weights, progress.best_acc,
                            progress.best_epoch, progress.epochs_done, progress.stopped,
                            carried_counters + hop.counters, carried_seconds + time.perf_counter() - started,
                            hop.method.learned_weights())
        if self.cfg.lr_schedule == "constant" and plan.epochs < self.cfg.epochs:
            self.store.put_resume(plan.resume_key, state)
        model.load_state_dict(progress.best_weights)
        return self._record(plan, flops, state, resumed)

    def _record(self, plan: HopPlan, flops: int, state: ResumeState, resumed: ResumeState | None) -> HopRecord:
        """The record of the hop whose training ended in `state`, having resumed `resumed` (or not)."""
        teacher_flops = [self.hops[t].flops for t in plan.teachers]
        fit_flops = len(self.data.fit) * sum(teacher_flops) if self._fits(plan) else 0
        reference = reference_flops(state.epochs_done, len(self.data.train), len(self.data.val), flops, teacher_flops,
                                    fit_flops)
        counters = state.counters
        return HopRecord(best_epoch=state.best_epoch, val_acc=state.best_acc,
                         upper_forward_samples=counters.upper_forward_samples, kl_terms=counters.kl_terms,
                         ensemble_weights=state.ensemble_weights, train_flops=counters.flops,
                         reference_flops=reference, train_seconds=state.train_seconds,
                         resumed_epochs=resumed.epochs_done if resumed else 0,
                         resumed_flops=resumed.counters.flops if resumed else 0,
                         resumed_seconds=resumed.train_seconds if resumed else 0.0)

    def _train(self, plan: HopPlan, hop: HopTraining, progress: Progress) -> None:
        """Trains one hop on from `progress` to its last epoch, or until `patience` epochs in a row bring no better
        validation accuracy; `progress` keeps the best epoch and its weights."""
        cfg, data, model = self.cfg, self.data, hop.model
        schedule = _schedule(hop.optimizer, cfg, plan.epochs)
        # global_epoch: the epoch's place among the epochs the chain plans, whatever patience ends early
        epochs_above = sum(cfg.hop_epochs(index) for index in range(plan.index))
        for epoch in range(progress.epochs_done + 1, plan.epochs + 1):
            epoch_started = time.perf_counter()
            lr = hop.optimizer.param_groups[0]["lr"]
            try:
                stats = train_epoch(hop, data)
            except Diverged as error:
                raise HopDiverged(plan.index, plan.role, plan.arch, plan.key, epoch, str(error)) from None
            schedule.step()
            val_acc, val_loss = validate(hop, data)
            progress.after_epoch(epoch, val_acc, model, cfg.patience)
            self.emit({"event": "epoch", "hop": plan.index, "key": plan.key, "role": plan.role, "arch": plan.arch,
                       "epoch": epoch, "global_epoch": epochs_above + epoch, "lr": lr,
                       "train_loss": stats.loss, **{f"loss_{name}": value for name, value in stats.terms.items()},
                       "val_acc": val_acc, "val_loss": val_loss, "seconds": time.perf_counter() - epoch_started})
            if progress.stopped:
                break

    def _hop_training(self, plan: HopPlan, model: nn.Module, flops: int, resumed: ResumeState | None
                      ) -> HopTraining:
        """The hop ready for its next epoch: its method fitted where it fits before training, and where it resumes a
        shorter training, that training's state restored (its teachers' cached outputs are computed again)."""
        cfg, data = self.cfg, self.data
        teachers = [self.models[t] for t in plan.teachers]
        method = cfg.method_class.teaching(cfg, len(teachers))
        outputs = TeacherOutputs(teachers, [self.hops[t].flops for t in plan.teachers], data,
                                 per_batch=cfg.augment, precision=cfg.precision)
        device = data.train.x.device
        optimizer = sgd(model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, device)
        on_cuda = device.type == "cuda"
        hop = HopTraining(model, optimizer, method, outputs, torch.Generator().manual_seed(plan.seed), flops,
                          cfg.batch_size, cfg.augment, cfg.precision, graphs=on_cuda and cfg.cuda_graphs,
                          channels_last=on_cuda)
        if self._fits(plan):
            fit_teaching(hop, data.fit)
        if resumed is not None:
            model.load_state_dict(resumed.weights)
            optimizer.load_state_dict(resumed.optimizer)
            hop.generator.set_state(resumed.generator)
            hop.guard.reference = resumed.guard_reference
        return hop

    def _fits(self, plan: HopPlan) -> bool:
        """Whether the hop's method fits on its teachers' outputs on the fit split before it trains."""
        method = self.cfg.method_class.teaching(self.cfg, len(plan.teachers))
        return bool(plan.teachers) and method.fits_on_fit_split(self.cfg.params)


@dataclass
class Progress:
    """How far a hop's training has come: its epochs, the best one so far and its weights, and whether patience
    has ended it."""

    best_acc: float = -1.0
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    epochs_done: int = 0
    stopped: bool = False

    @classmethod
    def of(cls, resumed: ResumeState | None) -> Progress:
        if resumed is None:
            return cls()
        return cls(resumed.best_acc, resumed.best_epoch, resumed.best_weights, resumed.epochs_done, resumed.stopped)

    def after_epoch(self, epoch: int, val_acc: float, model: nn.Module, patience: int) -> None:
        if val_acc > self.best_acc:  # strict: ties keep the earlier, cheaper-to-reach epoch
            self.best_acc, self.best_epoch, self.best_weights = val_acc, epoch, copy.deepcopy(model.state_dict())
        self.epochs_done = epoch
        self.stopped = 0 < patience <= epoch - self.best_epoch


def reference_flops(epochs: int, train_samples: int, val_samples: int, flops: int, teacher_flops: list[int],
                    fit_flops: int) -> int:
    """A hop's training FLOPs had every teacher been forwarded on every training batch of every epoch it trained,
    as the TAKD and DGKD reference code does (augmented or not, and DGKD's dropped teachers too, which it forwards
    and then leaves out of the loss), in one go from scratch; all else as `train_flops` counts it:

        epochs · train_samples · (3·flops + Σ teacher_flops)   the steps (forward + backward ≈ 3 forwards) and the
                                                               teachers' forwards on every batch
      + epochs · val_samples · flops                           the validation after every epoch
      + fit_flops                                              the teachers' one-off forwards a method fits on
                                                               (the learned ensemble's stacking weights)
    """
    return epochs * train_samples * (3 * flops + sum(teacher_flops)) + epochs * val_samples * flops + fit_flops


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None  # its own last step's gradients: dead weight from now on
    return model


def _schedule(optimizer: torch.optim.Optimizer, cfg: ChainConfig, epochs: int
              ) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def _predictions(logits: torch.Tensor, targets: torch.Tensor) -> TestPredictions:
    probs = torch.softmax(logits, 1)
    true_prob = probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    return TestPredictions(logits.argmax(1).to(torch.int16).cpu(), true_prob.to(torch.float16).cpu())
