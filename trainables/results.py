"""What a chain returns: one record per hop, with its accuracy and its cost."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from trainables.config import ChainConfig


@dataclass
class TestPredictions:
    """Per test sample, for the selected weights: predicted class and probability of the true class."""

    predicted: torch.Tensor  # int16
    true_prob: torch.Tensor  # float16


@dataclass(frozen=True)
class HopRecord:
    """What training a hop produced, whichever run later reuses its weights: kept with them in a store, and carried
    into the hop's `HopResult` under the same names. Its fields' order is the stored JSON's (unchanged since
    it was a dict), so hops stored before it are read back as they were written; the fields added since
    (`RESUMED_FIELDS`) read as 0 from a record written before them.

    A hop resumed from a shorter training of it (`trainables.store.ResumeState`) counts in `train_*` what reaching
    its weights cost from scratch: the trainings it resumed from (`resumed_*`, `resumed_epochs` of them) and its
    own, which computed its teachers' cached outputs (and a learned ensemble's fit) again."""

    best_epoch: int
    val_acc: float  # of the best epoch
    upper_forward_samples: int
    kl_terms: int
    ensemble_weights: list[float] | None
    train_flops: int
    reference_flops: int
    train_seconds: float
    resumed_epochs: int = 0  # the epochs of the training it resumed from; 0: trained from scratch in one go
    resumed_flops: int = 0  # the part of train_flops that training had cost
    resumed_seconds: float = 0.0  # likewise, of train_seconds

    @property
    def spent_flops(self) -> int:
        """What the training that produced it computed: train_flops, less the training it resumed."""
        return self.train_flops - self.resumed_flops

    @property
    def spent_seconds(self) -> float:
        return self.train_seconds - self.resumed_seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> HopRecord:
        """Raises ValueError on a record with other fields than these (another version's, or not a record); the
        fields added since records were first stored may be missing."""
        payload = json.loads(text)
        names = {f.name for f in fields(cls)}
        if not isinstance(payload, dict) or not names - RESUMED_FIELDS <= payload.keys() <= names:
            got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"hop record: expected the fields {sorted(names)}, got {got}")
        return cls(**payload)


RESUMED_FIELDS = frozenset({"resumed_epochs", "resumed_flops", "resumed_seconds"})


@dataclass
class HopResult:
    index: int
    arch: str
    role: str
    key: str
    teachers: list[int]
    best_epoch: int
    val_acc: float
    test_acc: float
    params: int
    flops: int  # inference FLOPs per sample
    # What training this hop from scratch cost, whichever run trained it (a reused hop brings its trainer's): its
    # steps, its per-epoch validation, its teachers' forward passes as kdstudy runs them (once per split, or per
    # batch with augmentation) and a learned ensemble's fitting. Test evaluation is reporting: in no cost column.
    train_flops: int
    reference_flops: int  # train_flops had every teacher been forwarded on every training batch of every epoch
    train_seconds: float  # from the start of its training (its claim held) to its best weights, validation included
    # FLOPs this run computed for it: train_flops when it trained it here (less what the training it resumed from
    # had cost), 0 when it was reused
    spent_flops: int
    spent_seconds: float  # likewise, of train_seconds
    wait_seconds: float  # this run's time getting to it: store lookups, waiting for its claim, loading its weights
    upper_forward_samples: int  # samples pushed through upper models while training it
    kl_terms: int  # KL terms computed while training it
    reused: bool
    resumed_from: int = 0  # the epochs of a shorter training of it that this run resumed; 0 = none
    ensemble_weights: list[float] | None = None
    predictions: TestPredictions | None = field(default=None, repr=False)

    @classmethod
    def of(cls, record: HopRecord, reused: bool, **evaluated: Any) -> HopResult:
        """`record`'s fields under their own names; what this run spent on it follows from whether it was reused:
        nothing when it loaded it; when it trained it, the same work as `train_*` less the training it resumed."""
        carried = asdict(record)
        resumed = {name: carried.pop(name) for name in sorted(RESUMED_FIELDS)}
        return cls(**carried, reused=reused, resumed_from=0 if reused else resumed["resumed_epochs"],
                   spent_flops=0 if reused else record.spent_flops,
                   spent_seconds=0.0 if reused else record.spent_seconds, **evaluated)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("predictions")
        return record


COST_COLUMNS = ("train_flops", "reference_flops", "train_seconds", "spent_flops", "spent_seconds", "wait_seconds")


def cost_summary(hops: list[HopResult]) -> dict[str, Any]:
    """A chain's cost columns, each the sum over its hops: `train_*` is what the chain costs from scratch (every
    hop at its trainer's cost), `spent_*` what this run computed, `wait_seconds` what it waited on other runs."""
    return {column: sum(getattr(hop, column) for hop in hops) for column in COST_COLUMNS}


@dataclass
class ChainResult:
    config: ChainConfig
    hops: list[HopResult]
    test_targets: torch.Tensor | None = field(default=None, repr=False)
    models: list[torch.nn.Module] = field(default_factory=list, repr=False)  # frozen, top first

    @property
    def student(self) -> HopResult:
        return self.hops[-1]

    @property
    def train_flops(self) -> int:
        return cost_summary(self.hops)["train_flops"]

    @property
    def spent_flops(self) -> int:
        return cost_summary(self.hops)["spent_flops"]

    @property
    def spent_seconds(self) -> float:
        return cost_summary(self.hops)["spent_seconds"]

    def summary(self) -> dict[str, Any]:
        student = self.student
        return {
            "student_val_acc": student.val_acc,
            "student_test_acc": student.test_acc,
            "student_params": student.params,
            "student_flops": student.flops,
            **cost_summary(self.hops),
            "ensemble_weights": student.ensemble_weights,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_flat(), **self.summary(), "hops": [h.to_dict() for h in self.hops]}
