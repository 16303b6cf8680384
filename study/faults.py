"""Fault injection for tests: named points in the driver and in the trials where a test can stop the world.

`KDSTUDY_FAULT="point[:action],…"` and `KDSTUDY_FAULT_DIR=<folder>` (markers go there). Actions (each fires once
per process, except `raise`, which fires every time):
- `block` (the default): write `<dir>/<point>.fired` (with this process's pid), then wait forever, so the test
  can `kill -9` the driver's process group at exactly this point;
- `mark`: write the marker and go on;
- `sigint`, `sigterm`: the process sends itself that signal (the driver's interruption, at a known point);
- `raise`: raise RuntimeError("injected fault at <point>").

Points: in the driver `after-ask` (a trial is in the journal, not yet running), `before-tell` and `after-tell`
(around telling Optuna a trial's outcome); in a trial `trial-start`, `epoch-<hop>-<epoch>` (after that epoch),
`claimed` (holding a hop's claim, before training it) and `results-written` (rows written, result not yet
reported). The driver passes its settings to the trials (`Faults.from_env()` travels with the trial context).
"""

from __future__ import annotations

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

    def point(self, name: str) -> None:
        action = self.actions().get(name)
        if action is None or (name in _fired and action != "raise"):
            return
        _fired.add(name)
        if action in ("block", "mark") and self.folder:
            Path(self.folder, f"{name}.fired").write_text(str(os.getpid()))
        if action == "block":
            threading.Event().wait()
        elif action in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if action == "sigint" else signal.SIGTERM)
        elif action == "raise":
            raise RuntimeError(f"injected fault at {name}")


NO_FAULTS = Faults()
