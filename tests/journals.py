"""Opening a study's Optuna journal file in a test, as `optuna-dashboard FILE` opens it."""

from __future__ import annotations

from pathlib import Path

import optuna


def load_journal(file: Path, name: str) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(file))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def run_journal(run: Path) -> optuna.Study:
    """The journal a local study keeps beside its results."""
    return load_journal(run / "results" / "optuna_journal.log", run.name)
