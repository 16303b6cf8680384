"""Claims on hops, kept on the run's storage (`<run>/claims/<key>.json`): a process about to train a hop holds its
claim, so every other process that needs the same hop waits for it and then loads it instead of training it again.

Why on the storage: every command that trains hops of a run — the study's trials, `kdstudy confirm`, a second
session — shares the run's storage and nothing else. Each may run on a Ray cluster of its own (a command without
`--address` starts a private one), so a Ray actor could not be the one board of a run.

A claim is a lease, `{holder, machine, pid, beat}`: its holder rewrites it with the next beat every third of the
lease from a background thread. A waiter that reads the same lease, unchanged, for a whole lease by its own clock
takes it over (its holder died: a killed worker, a lost node); no two machines' clocks are ever compared. A waiter
on the holder's own machine need not wait that long: when the holder's process is gone (a driver killed with its
trials, a session stopped), the claim is free at once.

Object stores have no create-if-absent, so a claim is taken by writing it, waiting `settle` and reading it back:
the last writer wins, and of two processes that took a free claim at once only one reads back its own lease. That
holds on any storage whose writes reach readers within `settle` (local disks and NFS rename atomically; S3 reads
after writes consistently). A waiter holds no place in any queue: a waiter stopped or killed leaves nothing behind.
At worst — a holder unreachable for a whole lease — a hop is trained twice and stored twice with the same content.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runstore.storage import Location, read_bytes, write_bytes
from study.faults import NO_FAULTS, Faults

LEASE_ENV = "KDSTUDY_CLAIM_LEASE_S"
DEFAULT_LEASE_S = 60.0
# How long a written claim is left to reach every reader before it is read back: a local rename is visible at
# once; an object store's upload is visible once the request returns, plus the way back of a slow reader.
SETTLE_LOCAL_S, SETTLE_REMOTE_S = 0.05, 1.0
POLL_S = 1.0  # a waiter's reads: one small GET a second on an object store
UNREADABLE: dict[str, Any] = {}  # what `_read` gives when the storage did not answer (compared by identity)


@dataclass
class _Watch:
    """A waiter's view of someone else's lease: what it last read, and since when (its own clock) unchanged."""

    seen: Any = None
    since: float = 0.0

    def unchanged_for(self, lease: dict[str, Any]) -> float:
        now = time.monotonic()
        if lease != self.seen:
            self.seen, self.since = lease, now
        return now - self.since


def lease_seconds() -> float:
    """The lease, as the command's environment sets it (read where the command starts, not in its workers)."""
    return float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))


class StorageClaims:
    def __init__(self, folder: Location, faults: Faults = NO_FAULTS, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.folder, self.faults, self.lease_s = folder, faults, lease_s
        self.settle_s = SETTLE_LOCAL_S if folder.is_local else SETTLE_REMOTE_S
        self.poll_s = min(POLL_S, self.lease_s / 6)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Blocks until this process holds `key`'s claim; renews it while held, releases it on exit."""
        holder = uuid.uuid4().hex
        self._acquire(key, holder)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(key, holder, stop), daemon=True)
        renewer.start()
        try:
            self.faults.point("claimed")
            yield
        finally:
            stop.set()
            renewer.join()
            self._release(key, holder)

    def _acquire(self, key: str, holder: str) -> None:
        watch = _Watch()
        while True:
            lease = self._read(key)
            free = lease is None or (lease is not UNREADABLE and (
                _died_here(lease) or watch.unchanged_for(lease) >= self.lease_s))
            if free and self._take(key, holder):
                return
            time.sleep(self.poll_s)

    def _take(self, key: str, holder: str) -> bool:
        try:
            self._write(key, holder, beat=0)
        except OSError:
            return False  # a storage hiccup: try again at the next poll
        time.sleep(self.settle_s)
        return self._holder(key) == holder

    def _holder(self, key: str) -> str | None:
        lease = self._read(key)
        return None if lease is None or lease is UNREADABLE else lease.get("holder")

    def _renew(self, key: str, holder: str, stop: threading.Event) -> None:
        beat = 0
        while not stop.wait(self.lease_s / 3):
            if self._holder(key) not in (None, holder):
                return  # taken over (this process was unreachable for a whole lease): let the new holder be
            beat += 1
            with contextlib.suppress(OSError):  # a missed beat is made up by the next; three in a row lose it
                self._write(key, holder, beat)

    def _release(self, key: str, holder: str) -> None:
        if self._holder(key) == holder:
            location = self._location(key)
            with contextlib.suppress(OSError):  # gone already, or unreachable: it expires in one lease
                location.fs.delete_file(location.path)

    def _read(self, key: str) -> dict[str, Any] | None:
        """The lease, or None when there is none (or it is not a lease: a torn or foreign file is no claim)."""
        try:
            data = read_bytes(self._location(key))
        except OSError:
            return UNREADABLE  # a storage hiccup: no claim is taken on it, the next poll reads again
        try:
            lease = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return lease if isinstance(lease, dict) else None

    def _write(self, key: str, holder: str, beat: int) -> None:
        lease = {"holder": holder, "machine": MACHINE, "pid": os.getpid(), "beat": beat,
                 "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_bytes(self._location(key), json.dumps(lease).encode())

    def _location(self, key: str) -> Location:
        return self.folder / f"{key}.json"


def _machine() -> str:
    """This machine among those sharing a run: the host name (distinct for containers on one host, whose process
    ids are their own) and the kernel's boot id (distinct for machines that share a host name)."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot.read_text().strip() if boot.exists() else ''}"


MACHINE = _machine()


def _died_here(lease: dict[str, Any]) -> bool:
    """The lease's holder ran on this machine, and its process is gone."""
    if lease.get("machine") != MACHINE or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
