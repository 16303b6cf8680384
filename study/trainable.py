"""The Ray Tune entry point: a thin wrapper that runs `train_chain` for one trial's config."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from study.space import flat_from_params
from trainables import ChainConfig, ChainResult, FolderStore, train_chain

STORE_IN_CHECKPOINT = "hops"


def chain_trainable(config: dict[str, Any], base: dict[str, Any], shared_store: str | None = None) -> None:
    """Trains the trial's chain and reports every epoch; checkpoints after each hop, so a retried trial resumes
    at its last finished hop. `shared_store` (a local folder) lets trials reuse each other's hops."""
    _use_assigned_cpus()
    cfg = ChainConfig.from_flat({**base, **flat_from_params(config)})
    with tempfile.TemporaryDirectory(prefix="kdstudy-hops-") as own:
        store = FolderStore(shared_store or own)
        _restore_hops(store)
        reporter = TuneReporter(cfg, store)
        result = train_chain(cfg, report=reporter, store=store)
        tune.report(reporter.final(result))


def _use_assigned_cpus() -> None:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def _restore_hops(store: FolderStore) -> None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        for path in Path(folder, STORE_IN_CHECKPOINT).glob("*.pt"):
            if not store.path(path.stem).exists():
                store.root.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, store.path(path.stem))


class TuneReporter:
    """Turns the chain's events into Tune results. Every result carries the objectives (0 until known) so
    searchers and schedulers always find their metric; `student_epoch` is ASHA's clock."""

    def __init__(self, cfg: ChainConfig, store: FolderStore) -> None:
        self.cfg, self.store = cfg, store
        self.student_hop = len(cfg.archs) - 1
        self.hops: list[dict[str, Any]] = []
        self.train_flops = 0

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "epoch":
            tune.report(self._epoch_metrics(event))
        else:
            self.hops.append(event)
            self.train_flops += event["train_flops"]
            self._report_with_checkpoint(self._hop_metrics(event))

    def _common(self, student_val_acc: float, student_epoch: int) -> dict[str, Any]:
        return {"student_val_acc": student_val_acc, "student_epoch": student_epoch, "train_flops": self.train_flops}

    def _epoch_metrics(self, event: dict[str, Any]) -> dict[str, Any]:
        is_student = event["hop"] == self.student_hop
        metrics = self._common(event["val_acc"] if is_student else 0.0, event["epoch"] if is_student else 0)
        return {**metrics, "epoch_record": json.dumps(event)}

    def _hop_metrics(self, event: dict[str, Any]) -> dict[str, Any]:
        is_student = event["index"] == self.student_hop
        metrics = self._common(event["val_acc"] if is_student else 0.0, self.cfg.epochs if is_student else 0)
        return {**metrics, "hop_done": event["index"]}

    def _report_with_checkpoint(self, metrics: dict[str, Any]) -> None:
        """Every finished hop's weights go into the checkpoint: with remote storage the trial's own store is
        lost with its worker, and a retried trial must find them in the checkpoint."""
        with tempfile.TemporaryDirectory(prefix="kdstudy-ckpt-") as folder:
            hops_folder = Path(folder, STORE_IN_CHECKPOINT)
            hops_folder.mkdir()
            for hop in self.hops:
                shutil.copy(self.store.path(hop["key"]), hops_folder / f"{hop['key']}.pt")
            # report() persists the checkpoint before returning, so the folder may go afterwards
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    def final(self, result: ChainResult) -> dict[str, Any]:
        """The last result: the whole chain's record, which the results writer turns into Parquet rows."""
        predictions = [
            {"hop": h.index, "arch": h.arch, "role": h.role, "predicted": h.predictions.predicted.tolist(),
             "true_prob": h.predictions.true_prob.float().tolist()}
            for h in result.hops if h.predictions is not None
        ]
        record = {**result.to_dict(), "predictions": predictions,
                  "target": result.test_targets.tolist() if result.test_targets is not None else []}
        return {**self._common(result.student.val_acc, self.cfg.epochs), "train_flops": result.train_flops,
                "chain_record": json.dumps(record), "done": True}
