"""The study's Optuna journal, for every storage, beside the results (`optuna-dashboard <file>` opens it).

On local storage (and NFS) the journal file is written in place: Optuna appends each change with an fsync. An
object store cannot append, so the driver writes a local copy and uploads it beside the results — after a trial
ends, at most once per `UPLOAD_EVERY_S`, and always when the session ends. A rerun on any machine starts from
the uploaded copy (or from the local one, when it extends it). Should a driver die between uploads, the copy
misses the last trials' outcomes: the next session adds them back from the results, which the trials wrote.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import optuna

from runstore.storage import Location, read_bytes, write_bytes

JOURNAL_NAME = "optuna_journal.log"
UPLOAD_EVERY_S = 30.0


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdstudy" / "journals"


class Journal:
    def __init__(self, run: Location) -> None:
        self.remote = run / "results" / JOURNAL_NAME
        self.local = Path(self.remote.path) if self.remote.is_local else \
            cache_folder() / f"{hashlib.sha256(run.uri.encode()).hexdigest()[:16]}-{run.name}.log"
        self._uploaded = 0.0

    def open(self) -> optuna.storages.JournalStorage:
        self.local.parent.mkdir(parents=True, exist_ok=True)
        if not self.remote.is_local:
            self._download()
        backend = optuna.storages.journal.JournalFileBackend(str(self.local))
        return optuna.storages.JournalStorage(backend)

    def sync(self, force: bool = False) -> None:
        """Uploads the local copy (object stores only), unless one went up less than UPLOAD_EVERY_S ago."""
        if self.remote.is_local or not self.local.exists():
            return
        if force or time.monotonic() - self._uploaded >= UPLOAD_EVERY_S:
            write_bytes(self.remote, self.local.read_bytes())
            self._uploaded = time.monotonic()

    def _download(self) -> None:
        remote = read_bytes(self.remote) or b""
        local = self.local.read_bytes() if self.local.exists() else b""
        # Journals only grow: a local copy that extends the uploaded one holds this machine's unsent lines.
        if not local.startswith(remote) or not local:
            self.local.write_bytes(remote)
