"""Claims on hops across a Ray cluster: a trial about to train a hop holds its claim, so concurrent trials that need
the same hop wait for it instead of training it again.

Why a Ray actor and not claim files on the storage: one actor serialises every claim, so a claim is atomic on any
storage (object stores have no portable create-if-absent), and waiting is one blocking call instead of polling.
The board is started by the study's driver on the driver's own node, so it lives exactly as long as the study:
when the driver dies, Ray ends every trial of the study with it and a rerun starts a fresh board.

A claim is a lease: its holder renews it every third of the lease from a background thread, and a claim not
renewed in time expires, so a trial on a dead node (or a killed worker) blocks nobody for longer than one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.faults import NO_FAULTS, Faults

LEASE_ENV = "KDSTUDY_CLAIM_LEASE_S"
DEFAULT_LEASE_S = 60.0


@dataclass
class _Lease:
    holder: str
    expires: float


class ClaimBoard:
    """The actor: who holds which hop, until when."""

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self.leases: dict[str, _Lease] = {}
        self.changed = asyncio.Condition()

    async def acquire(self, key: str, holder: str) -> float:
        """Waits until `key` is free (released, or its lease expired), claims it for `holder`; returns the lease."""
        async with self.changed:
            while True:
                lease = self.leases.get(key)
                now = time.monotonic()
                if lease is None or lease.holder == holder or lease.expires <= now:
                    self.leases[key] = _Lease(holder, now + self.lease_s)
                    return self.lease_s
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), timeout=lease.expires - now)

    async def renew(self, key: str, holder: str) -> bool:
        lease = self.leases.get(key)
        if lease is None or lease.holder != holder:
            return False  # it expired and someone else took it
        lease.expires = time.monotonic() + self.lease_s
        return True

    async def release(self, key: str, holder: str) -> None:
        async with self.changed:
            if self.leases.get(key, _Lease("", 0)).holder == holder:
                del self.leases[key]
            self.changed.notify_all()


@contextlib.contextmanager
def claim_board() -> Iterator[str]:
    """A new board for one session, pinned to the driver's node (num_cpus=0: it takes no trial's place), ended with
    the session; yields its name, which trials look it up by."""
    name = f"kdstudy-claims-{uuid.uuid4().hex[:12]}"
    lease_s = float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))
    actor = ray.remote(num_cpus=0, max_concurrency=10_000)(ClaimBoard)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    board = actor.options(name=name, scheduling_strategy=here).remote(lease_s)  # held: the board lives while it does
    try:
        yield name
    finally:
        ray.kill(board)


class RayClaims:
    """What a trial uses: picklable (the board's name), the handle is looked up where it is used."""

    def __init__(self, board: str, faults: Faults = NO_FAULTS) -> None:
        self.board, self.faults = board, faults

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        board = ray.get_actor(self.board)
        holder = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        lease_s = ray.get(board.acquire.remote(key, holder))
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(board, key, holder, lease_s / 3, stop), daemon=True)
        renewer.start()
        try:
            self.faults.point("claimed")
            yield
        finally:
            stop.set()
            renewer.join()
            ray.get(board.release.remote(key, holder))


def _renew(board: ray.actor.ActorHandle, key: str, holder: str, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        if not ray.get(board.renew.remote(key, holder)):
            return  # lost the claim (this process was unreachable for a whole lease): the store stays consistent,
            # at worst the hop is trained twice and written twice with the same content
