"""A stored hop: its weights and its typed record, in the form hops were stored before the record had a type (and
before it said what a resumed training carried), and entries whose record has other fields treated as unreadable
(one warning; the hop is trained again); and a hop's resume state on the run's storage."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from runstore.storage import locate
from study.hop_store import RESUME_SUFFIX, RunHopStore
from trainables import StoredHop
from trainables.loop import Counters
from trainables.results import HopRecord, HopResult
from trainables.store import ResumeState

RECORD = HopRecord(best_epoch=2, val_acc=0.8125, upper_forward_samples=600, kl_terms=12,
                   ensemble_weights=[0.25, 0.75], train_flops=123_456_789, reference_flops=234_567_890,
                   train_seconds=1.5)
# The record as the untyped trainer wrote it, key for key in its order: entries already on a run's storage.
UNTYPED = ('{"best_epoch": 2, "val_acc": 0.8125, "upper_forward_samples": 600, "kl_terms": 12, '
           '"ensemble_weights": [0.25, 0.75], "train_flops": 123456789, "reference_flops": 234567890, '
           '"train_seconds": 1.5}')
# trained on from a 2-epoch training of it, which had cost a third of it
RESUMED = replace(RECORD, resumed_epochs=2, resumed_flops=41_152_263, resumed_seconds=0.5)
WEIGHTS = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def stored_bytes(meta: str) -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": WEIGHTS, "meta": meta}, buffer)
    return buffer.getvalue()


def test_a_record_written_before_the_resumed_fields_reads_back_as_trained_in_one_go() -> None:
    assert HopRecord.from_json(UNTYPED) == RECORD  # resumed_epochs, resumed_flops, resumed_seconds: 0
    written = json.loads(RECORD.to_json())
    assert list(written)[:len(json.loads(UNTYPED))] == list(json.loads(UNTYPED))  # the old fields in their order
    assert written == {**json.loads(UNTYPED), "resumed_epochs": 0, "resumed_flops": 0, "resumed_seconds": 0.0}
    hop = StoredHop.from_bytes(stored_bytes(UNTYPED))
    assert hop.record == RECORD and torch.equal(hop.state_dict["layer.weight"], WEIGHTS["layer.weight"])
    assert StoredHop.from_bytes(StoredHop(WEIGHTS, RESUMED).to_bytes()).record == RESUMED


@pytest.mark.parametrize("meta", [
    {k: v for k, v in json.loads(UNTYPED).items() if k != "reference_flops"},  # stored before that column
    {**json.loads(UNTYPED), "patience": 3},  # a field this version does not know
    [1, 2, 3],
])
def test_an_entry_whose_record_has_other_fields_is_unreadable(meta: object, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "k.pt").write_bytes(stored_bytes(json.dumps(meta)))
    with caplog.at_level("WARNING", logger="kdstudy"):
        assert RunHopStore(locate(str(tmp_path / "models"))).get("k") is None
    assert len(caplog.records) == 1 and "hop record: expected the fields" in caplog.records[0].getMessage()


def test_a_hop_result_carries_its_record_and_spends_only_what_it_trained() -> None:
    evaluated = dict(index=1, arch="plain3", role="ta", key="k", teachers=[0], test_acc=0.75, params=10, flops=99,
                     wait_seconds=0.25)
    trained, reused = HopResult.of(RECORD, False, **evaluated), HopResult.of(RECORD, True, **evaluated)
    carried = {name: value for name, value in asdict(RECORD).items() if not name.startswith("resumed_")}
    for hop in (trained, reused):
        assert {name: getattr(hop, name) for name in carried} == carried and hop.resumed_from == 0
    assert (trained.spent_flops, trained.spent_seconds) == (RECORD.train_flops, RECORD.train_seconds)
    assert (reused.spent_flops, reused.spent_seconds) == (0, 0.0)
    resumed, reused = HopResult.of(RESUMED, False, **evaluated), HopResult.of(RESUMED, True, **evaluated)
    assert (resumed.resumed_from, resumed.spent_flops, resumed.spent_seconds) == (2, 123_456_789 - 41_152_263, 1.0)
    assert (reused.resumed_from, reused.spent_flops, reused.spent_seconds) == (0, 0, 0.0)
    assert resumed.train_flops == reused.train_flops == RECORD.train_flops


def test_the_run_store_keeps_the_latest_resume_state_and_counts_only_what_a_resumed_training_added(
        tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    ledger: list[tuple[object, ...]] = []
    store = RunHopStore(locate(str(tmp_path / "models")),
                        ledger=lambda *row, diverged: ledger.append((*row, diverged)))
    assert store.get_resume("r") is None
    store.put_resume("r", resume_state(4))
    store.put_resume("r", resume_state(2))  # a shorter training of the hop, finished later: the longer one stays
    kept = store.get_resume("r")
    assert (kept.epochs_done, kept.counters, kept.best_epoch) == (4, Counters(400, 20, 8), 3)
    assert torch.equal(kept.optimizer["state"][0]["momentum_buffer"], torch.full((2, 3), 4.0))
    assert torch.equal(kept.generator, torch.Generator().manual_seed(4).get_state())
    store.put("k", StoredHop(WEIGHTS, RESUMED))
    assert ledger == [("k", 123_456_789 - 41_152_263, 1.0, False)]
    (tmp_path / "models" / f"bad{RESUME_SUFFIX}").write_bytes(b"truncated")
    assert store.get_resume("bad") is None


def resume_state(epochs: int) -> ResumeState:
    weights = {name: tensor + epochs for name, tensor in WEIGHTS.items()}
    optimizer = {"state": {0: {"momentum_buffer": torch.full((2, 3), float(epochs))}},
                 "param_groups": [{"lr": 0.01, "momentum": 0.9, "nesterov": False, "foreach": None, "params": [0]}]}
    return ResumeState(weights, optimizer, torch.Generator().manual_seed(epochs).get_state(), 2.25, WEIGHTS, 0.5,
                       epochs - 1, epochs, False, Counters(100 * epochs, 5 * epochs, 2 * epochs), 0.1 * epochs,
                       [0.25, 0.75])
