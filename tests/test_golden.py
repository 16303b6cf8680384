"""Results that must not move by accident: four small chains (DGKD with dropping, a learned logit ensemble, TAKD and
nokd) trained on CPU give exactly the numbers recorded in `tests/data/golden_chains.json`.

Record them again (`python tests/test_golden.py`) only with a change that is meant to alter training — and bump
`trainables.hops.TRAINING_CODE_VERSION` with it. (Recorded before the method-registry refactor, the same chains gave
the same numbers after it; re-recorded when the plain CNNs took the reference code's initialisation.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from trainables import ChainConfig, train_chain

GOLDEN = Path(__file__).parent / "data" / "golden_chains.json"
BASE = {"dataset": "mnist5k", "train_size": 300, "val_size": 100, "width": 0.25, "epochs": 2, "lr": 0.05,
        "batch_size": 64, "teacher": "plain6", "ta_depths": [4], "student": "plain2", "seed": 3}
CHAINS = {
    "dgkd": {"method": "dgkd", "drop": 1, "temperature": 3.0, "alpha": 0.7},
    "ensemble": {"method": "ensemble", "weighting": "learned", "space": "logit", "temperature": 3.0, "alpha": 0.7},
    "takd": {"method": "takd", "temperature": 3.0, "alpha": 0.7},
    "nokd": {"method": "nokd", "ta_depths": []},
}
HOP_FIELDS = ("arch", "role", "teachers", "best_epoch", "val_acc", "test_acc", "params", "flops", "train_flops",
              "upper_forward_samples", "kl_terms", "ensemble_weights")
EPOCH_FIELDS = ("hop", "epoch", "train_loss", "loss_ce", "loss_kd", "val_acc", "val_loss")


def record(name: str) -> dict[str, Any]:
    torch.set_num_threads(1)  # the reductions' order, and so the last bits, depend on the thread count
    events: list[dict[str, Any]] = []
    result = train_chain(ChainConfig.from_flat({**BASE, **CHAINS[name]}), report=events.append)
    return {"hops": [{k: h.to_dict()[k] for k in HOP_FIELDS} for h in result.hops],
            "epochs": [{k: e.get(k) for k in EPOCH_FIELDS} for e in events if e["event"] == "epoch"],
            "true_prob_sums": [float(h.predictions.true_prob.float().sum()) for h in result.hops]}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_small_chains_train_exactly_as_recorded(name: str) -> None:
    threads = torch.get_num_threads()
    try:
        assert record(name) == json.loads(GOLDEN.read_text())[name]
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({name: record(name) for name in sorted(CHAINS)}, indent=1) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
