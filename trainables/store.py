"""Where trained hops live, keyed by their content hash, so that a chain (or a resumed trial) can skip them; and
where a hop's training stands after its last epoch, so that a longer training of the same hop can resume it.

`train_chain` takes any `ModelStore`. `MemoryStore` keeps hops for one process; a study keeps them on its run's
storage (`study.hop_store`), shared by every trial of the cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any, ContextManager, Protocol

import torch
from torch import Tensor

from trainables.loop import Counters
from trainables.results import HopRecord


@dataclass(frozen=True)
class StoredHop:
    state_dict: dict[str, Tensor]
    record: HopRecord

    def to_bytes(self) -> bytes:
        state = {name: tensor.detach().cpu() for name, tensor in self.state_dict.items()}
        buffer = io.BytesIO()
        torch.save({"state_dict": state, "meta": self.record.to_json()}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredHop:
        """Raises on anything that is not a whole stored hop (a truncated upload, a foreign file, a record with
        other fields)."""
        # weights_only: a store may be shared, and unpickling arbitrary objects from it would run code.
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
            raise ValueError("not a stored hop")
        return cls(payload["state_dict"], HopRecord.from_json(payload["meta"]))


@dataclass(frozen=True)
class Divergence:
    """What a store keeps of a hop that diverged (never its weights): where and how, so that every later chain
    that needs the hop ends the same way at once instead of training it again to the same blow-up."""

    epoch: int
    reason: str
    # what training it to the blow-up cost: the study counts it in the run's total spent (`results/trained/`)
    train_flops: int = 0
    train_seconds: float = 0.0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Divergence:
        payload = json.loads(data)
        return cls(int(payload["epoch"]), str(payload["reason"]), int(payload.get("train_flops", 0)),
                   float(payload.get("train_seconds", 0.0)))


@dataclass(frozen=True)
class ResumeState:
    """Where a hop's training stands after its last epoch: what a longer training of the same hop (same
    `HopPlan.resume_key`) needs to go on as if it had never stopped — the last weights, the optimiser's state, the
    hop's random stream, the divergence guard's reference loss and the best epoch so far — and what it had cost.
    Only a constant lr makes a longer training continue a shorter one: under a cosine schedule the lr of every
    epoch depends on the total, so such hops keep no state and are trained again (`trainables.chain`)."""

    weights: dict[str, Tensor]  # after its last epoch
    optimizer: dict[str, Any]  # the optimiser's state_dict: its momentum buffers and param groups
    generator: Tensor  # the hop's torch.Generator state: the next epoch's batches and DGKD's drops
    guard_reference: float | None  # the divergence guard's first-window loss
    best_weights: dict[str, Tensor]
    best_acc: float
    best_epoch: int
    epochs_done: int
    stopped: bool  # patience ended it: a longer training of it ends here too
    counters: Counters  # what training it this far computed, from scratch (any training it resumed included)
    train_seconds: float  # likewise
    ensemble_weights: list[float] | None  # its method's learned weights, for its record

    def finished(self, epochs: int) -> bool:
        """Whether a training of `epochs` epochs has nothing left to train from here."""
        return self.stopped or self.epochs_done >= epochs

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"weights": _on_cpu(self.weights), "optimizer": _on_cpu(self.optimizer),
                    "generator": self.generator.cpu(), "best_weights": _on_cpu(self.best_weights),
                    "meta": json.dumps({"guard_reference": self.guard_reference, "best_acc": self.best_acc,
                                        "best_epoch": self.best_epoch, "epochs_done": self.epochs_done,
                                        "stopped": self.stopped, "counters": asdict(self.counters),
                                        "train_seconds": self.train_seconds,
                                        "ensemble_weights": self.ensemble_weights})}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ResumeState:
        """Raises on anything that is not a whole resume state (as `StoredHop.from_bytes`)."""
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.keys() != {"weights", "optimizer", "generator", "best_weights",
                                                                "meta"}:
            raise ValueError("not a resume state")
        meta = json.loads(payload["meta"])
        return cls(payload["weights"], payload["optimizer"], payload["generator"], meta["guard_reference"],
                   payload["best_weights"], float(meta["best_acc"]), int(meta["best_epoch"]),
                   int(meta["epochs_done"]), bool(meta["stopped"]), Counters(**meta["counters"]),
                   float(meta["train_seconds"]), meta["ensemble_weights"])


def _on_cpu(tree: Any) -> Any:
    """A copy of a state_dict (nested dicts and lists of tensors and plain values) with every tensor on the CPU."""
    if isinstance(tree, Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {key: _on_cpu(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_on_cpu(value) for value in tree)
    return tree


class ModelStore(Protocol):
    def get(self, key: str) -> StoredHop | None: ...

    def put(self, key: str, hop: StoredHop) -> None: ...

    def divergence(self, key: str) -> Divergence | None: ...

    def put_divergence(self, key: str, divergence: Divergence) -> None: ...

    def claim(self, key: str) -> ContextManager[None]:
        """Held while a hop is looked up, trained and put, so that concurrent users train it once."""
        ...

    def get_resume(self, resume_key: str) -> ResumeState | None:
        """The state a training of the hop stopped in, one the caller may change (nothing else holds it)."""
        ...

    def put_resume(self, resume_key: str, state: ResumeState) -> None:
        """Keeps `state` unless the store holds a state of more epochs: the latest is what longer trainings resume."""
        ...


class MemoryStore:
    """Keeps hops for the life of one process: the default, where nothing is shared."""

    def __init__(self) -> None:
        self._hops: dict[str, StoredHop] = {}
        self._divergences: dict[str, Divergence] = {}
        self._resume: dict[str, tuple[int, bytes]] = {}  # as a file holds it: no caller shares its tensors

    def get(self, key: str) -> StoredHop | None:
        return self._hops.get(key)

    def put(self, key: str, hop: StoredHop) -> None:
        # A live state_dict aliases the model's parameters; keep a snapshot, as a file would.
        snapshot = {name: tensor.detach().clone() for name, tensor in hop.state_dict.items()}
        self._hops[key] = StoredHop(snapshot, hop.record)

    def divergence(self, key: str) -> Divergence | None:
        return self._divergences.get(key)

    def put_divergence(self, key: str, divergence: Divergence) -> None:
        self._divergences[key] = divergence

    def claim(self, key: str) -> ContextManager[None]:
        return contextlib.nullcontext()

    def get_resume(self, resume_key: str) -> ResumeState | None:
        kept = self._resume.get(resume_key)
        return None if kept is None else ResumeState.from_bytes(kept[1])

    def put_resume(self, resume_key: str, state: ResumeState) -> None:
        kept = self._resume.get(resume_key)
        if kept is None or kept[0] <= state.epochs_done:
            self._resume[resume_key] = (state.epochs_done, state.to_bytes())
