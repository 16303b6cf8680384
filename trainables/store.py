"""Where trained hops live, keyed by their content hash, so that a chain (or a resumed trial) can skip them.

`train_chain` takes any `ModelStore`. `MemoryStore` keeps hops for one process; a study keeps them on its run's
storage (`study.hop_store`), shared by every trial of the cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass
from typing import ContextManager, Protocol

import torch
from torch import Tensor

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


class ModelStore(Protocol):
    def get(self, key: str) -> StoredHop | None: ...

    def put(self, key: str, hop: StoredHop) -> None: ...

    def divergence(self, key: str) -> Divergence | None: ...

    def put_divergence(self, key: str, divergence: Divergence) -> None: ...

    def claim(self, key: str) -> ContextManager[None]:
        """Held while a hop is looked up, trained and put, so that concurrent users train it once."""
        ...


class MemoryStore:
    """Keeps hops for the life of one process: the default, where nothing is shared."""

    def __init__(self) -> None:
        self._hops: dict[str, StoredHop] = {}
        self._divergences: dict[str, Divergence] = {}

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
