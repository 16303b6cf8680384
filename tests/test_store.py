"""A stored hop: its weights and its typed record, in the form hops were stored before the record had a type, and
entries whose record has other fields treated as unreadable (one warning; the hop is trained again)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from runstore.storage import locate
from study.hop_store import RunHopStore
from trainables import StoredHop
from trainables.results import HopRecord, HopResult

RECORD = HopRecord(best_epoch=2, val_acc=0.8125, upper_forward_samples=600, kl_terms=12,
                   ensemble_weights=[0.25, 0.75], train_flops=123_456_789, reference_flops=234_567_890,
                   train_seconds=1.5)
# The record as the untyped trainer wrote it, key for key in its order: entries already on a run's storage.
UNTYPED = ('{"best_epoch": 2, "val_acc": 0.8125, "upper_forward_samples": 600, "kl_terms": 12, '
           '"ensemble_weights": [0.25, 0.75], "train_flops": 123456789, "reference_flops": 234567890, '
           '"train_seconds": 1.5}')
WEIGHTS = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def stored_bytes(meta: str) -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": WEIGHTS, "meta": meta}, buffer)
    return buffer.getvalue()


def test_the_record_is_stored_in_the_untyped_form_and_read_back_from_it() -> None:
    assert json.loads(HopRecord.from_json(UNTYPED).to_json()) == json.loads(UNTYPED)
    assert RECORD.to_json() == UNTYPED  # byte for byte: no training-code version bump needed
    hop = StoredHop.from_bytes(stored_bytes(UNTYPED))
    assert hop.record == RECORD and torch.equal(hop.state_dict["layer.weight"], WEIGHTS["layer.weight"])
    assert StoredHop.from_bytes(StoredHop(WEIGHTS, RECORD).to_bytes()).record == RECORD


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
    for hop in (trained, reused):
        assert {name: getattr(hop, name) for name in asdict(RECORD)} == asdict(RECORD)
    assert (trained.spent_flops, trained.spent_seconds) == (RECORD.train_flops, RECORD.train_seconds)
    assert (reused.spent_flops, reused.spent_seconds) == (0, 0.0)
