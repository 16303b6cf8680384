"""StudySpec: where a study lives."""

from __future__ import annotations

import pytest

from study.spec import StudySpec


@pytest.mark.parametrize("storage, local", [("runs", True), ("file:///tmp/studies", True),
                                            ("s3://bucket/studies", False)])
def test_storage_paths(storage: str, local: bool) -> None:
    spec = StudySpec(storage=storage, name="x")
    assert spec.is_local == local
    assert spec.run_path.endswith("/x") and (spec.run_path.startswith("/") or not local)
