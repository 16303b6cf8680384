"""What a chain returns: one record per hop, with its accuracy and its cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from trainables.config import ChainConfig


@dataclass
class TestPredictions:
    """Per test sample, for the selected weights: predicted class and probability of the true class."""

    predicted: torch.Tensor  # int16
    true_prob: torch.Tensor  # float16


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
    train_flops: int  # FLOPs to train this hop from scratch: its passes and its teachers' (test evaluation excluded)
    train_seconds: float  # seconds it took when it was trained
    spent_flops: int  # FLOPs this run actually spent on it (less when it came from the store)
    spent_seconds: float
    upper_forward_samples: int  # samples pushed through upper models while training it
    kl_terms: int  # KL terms computed while training it
    reused: bool
    ensemble_weights: list[float] | None = None
    predictions: TestPredictions | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("predictions")
        return record



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
        return sum(h.train_flops for h in self.hops)

    @property
    def spent_flops(self) -> int:
        return sum(h.spent_flops for h in self.hops)

    @property
    def spent_seconds(self) -> float:
        return sum(h.spent_seconds for h in self.hops)

    def summary(self) -> dict[str, Any]:
        student = self.student
        return {
            "student_val_acc": student.val_acc,
            "student_test_acc": student.test_acc,
            "student_params": student.params,
            "student_flops": student.flops,
            "train_flops": self.train_flops,
            "spent_flops": self.spent_flops,
            "spent_seconds": self.spent_seconds,
            "ensemble_weights": student.ensemble_weights,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_flat(), **self.summary(), "hops": [h.to_dict() for h in self.hops]}
