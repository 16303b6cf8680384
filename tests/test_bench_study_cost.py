"""bench/study_cost.py at its toy size (`--quick`): the last line's form, the replays' costing held to what the
table's trainings spent, and a rerun on the cached table that trains nothing and finds the same."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "study_cost.py"
LAST_LINE = re.compile(r"study_cost: \S+ P=[01]\.\d\d \(naive [01]\.\d\d\) spent/naive=\d+\.\d\d over 2 replays")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("study_cost", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_quick_run_then_a_cached_rerun_trains_nothing(bench: ModuleType, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bench.main(["--quick", "--cache", str(tmp_path)])
    first = capsys.readouterr().out.splitlines()
    assert LAST_LINE.fullmatch(first[-1]), first[-1]
    assert "this run trained 1 seed(s)" in _line(first, "table: 2 configurations")
    checked = re.search(r"matches the table's (\d+) hop trainings", _line(first, "costing:"))
    assert checked and int(checked[1]) > 0
    assert len(_policy_rows(first, bench)) == len(bench.POLICIES)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached table trained a chain")

    monkeypatch.setattr(bench, "train_chain", no_training)
    bench.main(["--quick", "--cache", str(tmp_path)])
    again = capsys.readouterr().out.splitlines()
    assert "this run trained 0 seed(s)" in _line(again, "table: 2 configurations")
    after_table = slice(first.index(_line(first, "costing:")), None)
    assert again[again.index(_line(again, "costing:")):] == first[after_table]  # the same table, the same replays


def test_a_replay_store_counts_what_the_trainer_spends(bench: ModuleType) -> None:
    """Held hops cost nothing, a longer training resumes the longest one kept, a shorter one starts over."""
    def hop(epochs: int) -> object:
        return bench.Hop(key=f"k{epochs}", resume_key="r", role="ta", epochs=epochs, epoch_flops=10, once_flops=3,
                         train_flops=0, spent_flops=0, resumed_from=0, patience=0)

    store = bench.ReplayStore()
    assert store.train(hop(1)) == 13
    assert store.train(hop(1)) == 0
    assert store.train(hop(4)) == 3 * 10 + 3
    assert store.train(hop(16)) == 12 * 10 + 3
    assert store.train(hop(2)) == 2 * 10 + 3  # the store keeps the 16-epoch state: nothing shorter to resume


def _line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def _policy_rows(lines: list[str], bench: ModuleType) -> list[str]:
    names = {policy.name for policy in bench.POLICIES}
    return [line for line in lines if line.split(" ", 1)[0] in names]
