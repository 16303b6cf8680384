"""The model store of a study: `<run>/models/<key>.pt` on the run's storage (local, NFS or an object store),
shared by every trial on every node, with claims so that a hop is trained once per run; a hop that diverged
leaves `<key>.diverged.json` instead, so no other trial trains it again; and `<resume key>.resume.pt`, the state a
hop's latest training stopped in, which a longer training of the hop resumes (`trainables.store.ResumeState`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, ContextManager, Protocol, TypeVar

from runstore.storage import Location, read_bytes, write_bytes
from study.faults import NO_FAULTS, Faults
from trainables import StoredHop
from trainables.store import Divergence, ResumeState

log = logging.getLogger("kdstudy")
Entry = TypeVar("Entry")
DIVERGED_SUFFIX = ".diverged.json"  # beside `<key>.pt`: a hop that diverged, remembered instead of its weights
RESUME_SUFFIX = ".resume.pt"  # `<resume key>.resume.pt`: where a hop's latest training stopped


class Claims(Protocol):
    def hold(self, key: str) -> ContextManager[None]:
        """Blocks until this process holds `key`'s claim; released on exit (or when its holder dies)."""
        ...


class Ledger(Protocol):
    def __call__(self, key: str, train_flops: int, train_seconds: float, diverged: bool) -> None:
        """Records one hop training as it is stored: what the run spent on it (`results/trained/`) — of a hop that
        resumed a shorter training of it, only what this training added."""
        ...


class RunHopStore:
    """`ledger`, when given, records every hop put here (weights or divergence marker) the moment it is stored: a
    trial that dies later, or is retried and then reuses the hop, has still counted what training it cost."""

    def __init__(self, folder: Location, claims: Claims | None = None, faults: Faults = NO_FAULTS,
                 ledger: Ledger | None = None) -> None:
        self.folder, self.claims, self.faults, self.ledger = folder, claims, faults, ledger

    def get(self, key: str) -> StoredHop | None:
        return self._read(f"{key}.pt", StoredHop.from_bytes)

    def put(self, key: str, hop: StoredHop) -> None:
        write_bytes(self.folder / f"{key}.pt", hop.to_bytes())
        if self.ledger is not None:
            self.ledger(key, hop.record.spent_flops, hop.record.spent_seconds, diverged=False)
        self.faults.point("stored", key)

    def divergence(self, key: str) -> Divergence | None:
        return self._read(f"{key}{DIVERGED_SUFFIX}", Divergence.from_bytes)

    def put_divergence(self, key: str, divergence: Divergence) -> None:
        write_bytes(self.folder / f"{key}{DIVERGED_SUFFIX}", divergence.to_bytes())
        if self.ledger is not None:
            self.ledger(key, divergence.train_flops, divergence.train_seconds, diverged=True)
        self.faults.point("diverged-stored", key)

    def get_resume(self, resume_key: str) -> ResumeState | None:
        return self._read(f"{resume_key}{RESUME_SUFFIX}", ResumeState.from_bytes)

    def put_resume(self, resume_key: str, state: ResumeState) -> None:
        kept = self.get_resume(resume_key)
        if kept is None or kept.epochs_done <= state.epochs_done:
            write_bytes(self.folder / f"{resume_key}{RESUME_SUFFIX}", state.to_bytes())

    def _read(self, name: str, parse: Callable[[bytes], Entry]) -> Entry | None:
        """An entry, or None when there is none — or when it is unreadable (a truncated upload, a foreign file):
        then one warning, and the hop is trained again as if it were missing."""
        data = read_bytes(self.folder / name)
        if data is None:
            return None
        try:
            return parse(data)
        except Exception as error:
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            log.warning("store: %s/%s is unreadable (%s); training the hop again", self.folder, name, reason)
            return None

    def claim(self, key: str) -> ContextManager[None]:
        return self.claims.hold(key) if self.claims is not None else contextlib.nullcontext()
