"""A study's folder before a session: the checks that come before anything is written, and `study.json`, the
study's settings (and how its last session ran its trials) that every later session is held to.

`kdstudy run` and `study.run` both start a session through `start`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runstore.storage import Location, is_empty, locate, read_bytes, write_bytes
from study.spec import StudySpec
from trainables.typed import InputError

SETTINGS_FILE = "study.json"
# study.json's section of how the last session ran its trials: rewritten by each session, never compared (a rerun
# may change where and how it runs), read by `kdstudy confirm` for its defaults.
RUNTIME = "runtime"


def start(spec: StudySpec) -> int | None:
    """Checks the study's storage, its settings against those it was started with, and its resources, then records
    its settings: all before a session's first trial. Returns the trial count it grows from, if it grows."""
    check_storage(spec.storage)
    grown = check_settings(spec)
    from study import cluster  # imports Ray: only once the input is known to be good

    cluster.check_resources(spec.cpus_per_trial, spec.gpus_per_trial, spec.address)
    write_settings(spec)
    return grown


def check_storage(storage: str) -> None:
    """Fails before anything is created: a URI pyarrow can use, or a local path whose nearest existing folder is
    writable."""
    try:
        location = locate(storage)
    except ValueError as error:
        raise InputError("storage", problem=str(error)) from None
    if not location.is_local:
        return
    path = Path(location.path)
    while not path.exists():
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise InputError("storage", problem=f"{storage} is not writable ({path} is not a writable folder)")


def check_settings(spec: StudySpec) -> int | None:
    """An existing study may only grow (a larger `trials`); returns its old trial count when it grows. Any other
    changed setting is refused, listing the differences."""
    stored = read_settings(spec.run)
    if stored is None:
        if not is_empty(spec.run):
            raise InputError("name", problem=f"{spec.run} holds files but no {SETTINGS_FILE}; use another --name")
        return None
    stored = {name: value for name, value in stored.items() if name != RUNTIME}
    current = spec.settings()
    changed = [name for name in sorted(set(stored) | set(current))
               if name != "trials" and stored.get(name) != current.get(name)]
    if spec.trials < stored["trials"]:
        changed.insert(0, "trials")
    if changed:
        diffs = ", ".join(f"{name} {_show(stored.get(name))} → {_show(current.get(name))}" for name in changed)
        raise InputError("settings", problem=f"{spec.run} was started with other settings ({diffs}); a study can "
                                             "only grow (a larger --trials); use another --name for new settings")
    return stored["trials"] if spec.trials > stored["trials"] else None


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def read_settings(run: Location) -> dict[str, Any] | None:
    data = read_bytes(run / SETTINGS_FILE)
    return None if data is None else json.loads(data)


def write_settings(spec: StudySpec) -> None:
    document = {**spec.settings(), RUNTIME: spec.runtime()}
    write_bytes(spec.run / SETTINGS_FILE, (json.dumps(document, indent=2) + "\n").encode())


def recorded_runtime(run: Location) -> dict[str, Any]:
    """How the study's last session ran its trials; a study whose study.json predates the record, or a folder
    without one, ran with the defaults."""
    recorded = (read_settings(run) or {}).get(RUNTIME, {})
    return {name: recorded.get(name, default) for name, default in StudySpec().runtime().items()}
