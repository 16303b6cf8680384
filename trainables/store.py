"""Where trained hops live, keyed by their content hash, so that a chain (or a retried trial) can skip them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator, Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class StoredHop:
    state_dict: dict[str, Tensor]
    meta: dict[str, Any]  # model shape (to rebuild it) and the hop's result, JSON-serialisable


class ModelStore(Protocol):
    def get(self, key: str) -> StoredHop | None: ...

    def put(self, key: str, hop: StoredHop) -> None: ...

    def claim(self, key: str) -> ContextManager[None]:
        """Held while a hop is looked up, trained and put, so that concurrent users train it once."""
        ...


class MemoryStore:
    """Keeps hops for the life of one process: the default, where nothing is shared."""

    def __init__(self) -> None:
        self._hops: dict[str, StoredHop] = {}

    def get(self, key: str) -> StoredHop | None:
        return self._hops.get(key)

    def put(self, key: str, hop: StoredHop) -> None:
        # A live state_dict aliases the model's parameters; keep a snapshot, as a file would.
        snapshot = {name: tensor.detach().clone() for name, tensor in hop.state_dict.items()}
        self._hops[key] = StoredHop(snapshot, dict(hop.meta))

    def claim(self, key: str) -> ContextManager[None]:
        return contextlib.nullcontext()


class FolderStore:
    """One `<key>.pt` file per hop in a local folder; writes are atomic so concurrent trials never read halves."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def get(self, key: str) -> StoredHop | None:
        path = self.path(key)
        if not path.exists():
            return None
        # weights_only: a store may be shared, and unpickling arbitrary objects from it would run code.
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return StoredHop(payload["state_dict"], json.loads(payload["meta"]))

    def put(self, key: str, hop: StoredHop) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu() for name, tensor in hop.state_dict.items()}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"state_dict": state, "meta": json.dumps(hop.meta)}, tmp)
            os.replace(tmp, self.path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """An advisory file lock: trials sharing this folder wait for one another instead of training the same
        hop (typically the teacher, identical in every trial) twice."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.pt"))
