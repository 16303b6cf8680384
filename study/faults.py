"""Fault injection for tests: named points in the driver and in the trials where a test can stop the world.

`KDSTUDY_FAULT="point[:action],…"` and `KDSTUDY_FAULT_DIR=<folder>` (markers go there). A point fires once: the
first process to reach it creates its marker, and the marker keeps every other process (a second trial, a retry)
from firing it again — except `raise`, which fires every time. Actions:
- `block` (the default): write `<dir>/<point>.fired` (JSON: this process's pid and Ray node), then wait
  forever, so the test can `kill -9` the driver's process group (or the node) at exactly this point;
- `mark`: write the marker and go on;
- `sigint`, `sigterm`: the process sends itself that signal (the driver's interruption, at a known point);
- `raise`: raise RuntimeError("injected fault at <point>");
- `count`: append one JSON line (pid, Ray node, the point's detail) to `<dir>/<point>.count`, every time, and go
  on: how a test counts what happened across processes (e.g. how often a hop was trained).

Points: in the driver `after-ask` (a trial is in the journal, not yet running), `before-tell` and `after-tell`
(around telling Optuna a trial's outcome); in a trial `trial-start`, `epoch-<hop>-<epoch>` (after that epoch),
`claimed` (holding a hop's claim, before training it), `stored` and `diverged-stored` (a trained hop, or the
marker of one that diverged, written to the model store; the detail is the hop's key) and `results-written` (rows
written, result not yet reported). The driver passes its settings to the trials (`Faults.from_env()` travels with
the trial context).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV, FAULT_DIR_ENV = "KDSTUDY_FAULT", "KDSTUDY_FAULT_DIR"
_fired: set[str] = set()


@dataclass(frozen=True)
class Faults:
    spec: str = ""
    folder: str | None = None

    @classmethod
    def from_env(cls) -> Faults:
        return cls(os.environ.get(FAULT_ENV, ""), os.environ.get(FAULT_DIR_ENV))

    def actions(self) -> dict[str, str]:
        items = [item.strip() for item in self.spec.split(",") if item.strip()]
        return dict((item.split(":", 1) + ["block"])[:2] for item in items)

    def point(self, name: str, detail: str = "") -> None:
        action = self.actions().get(name)
        if action == "count":
            self._count(name, detail)
            return
        if action is None or (action != "raise" and not self._first(name)):
            return
        if action == "block":
            threading.Event().wait()
        elif action in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if action == "sigint" else signal.SIGTERM)
        elif action == "raise":
            raise RuntimeError(f"injected fault at {name}")

    def _count(self, name: str, detail: str) -> None:
        if self.folder is None:
            return
        line = json.dumps({"pid": os.getpid(), "node": _node(), "detail": detail}) + "\n"
        with open(Path(self.folder, f"{name}.count"), "a") as log:  # one small append: whole lines, any process
            log.write(line)

    def _first(self, name: str) -> bool:
        """Claims the point for this process: True once across every process sharing the marker folder."""
        if self.folder is None:
            first = name not in _fired
            _fired.add(name)
            return first
        try:
            fd = os.open(Path(self.folder, f"{name}.fired"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as marker:
            json.dump({"pid": os.getpid(), "node": _node()}, marker)
        return True


NO_FAULTS = Faults()


def _node() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
