"""Every row a study writes, built through one typed path: `ChainConfig` (+ the trial's outcome) → row.

Whoever writes — the trial for its finished or diverged chain, the driver for an errored or stopped one — a
column means the same: the configuration columns come from the same `ChainConfig`, so a `nokd` row has no
temperature whatever its status, and a `takd` row always has one.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any

import pyarrow as pa
import torch

from runstore import schema
from trainables import ChainConfig, ChainResult, HopResult
from trainables.methods import all_loss_terms, all_params


_ARROW: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(hint: Any) -> pa.DataType:
    """Python annotation → Arrow type: scalars, optionals, and tuple[int, ...] as Arrow lists."""
    if type(None) in typing.get_args(hint):  # Optional[X]: the column is nullable anyway
        hint = next(o for o in typing.get_args(hint) if o is not type(None))
    if typing.get_origin(hint) is tuple:
        return pa.list_(_ARROW[typing.get_args(hint)[0]])
    return _ARROW[hint]


def config_fields() -> list[pa.Field]:
    """One typed column per chain setting: `ChainConfig`'s fields, with every registered method's settings in
    place of `params` (null where a row's method has no such setting)."""
    hints = typing.get_type_hints(ChainConfig)
    columns: list[pa.Field] = []
    for f in fields(ChainConfig):
        if f.name == "params":
            columns.extend(pa.field(p.name, _ARROW[p.kind]) for p in all_params().values())
        else:
            columns.append(pa.field(f.name, _arrow_type(hints[f.name])))
    return columns


def trials_schema(confirm: bool = False) -> pa.Schema:
    return schema.trials_schema(config_fields(), confirm)


def epochs_schema() -> pa.Schema:
    return schema.epochs_schema(all_loss_terms())


def trial_row(trial_id: str, cfg: ChainConfig, status: str, error: str | None = None,
              summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """`summary` holds outcome columns (`ChainResult.summary()`, or what a stopped trial reached)."""
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "error": error, "group": cfg.group,
                           "config_label": cfg.label, **cfg.to_flat(), "num_tas": len(cfg.ta_depths)}
    row.update(dict.fromkeys(f.name for f in schema.TRIAL_TAIL[1:]))
    row.update(summary or {})
    return row


def trained_row(trial_id: str, key: str, train_flops: int, train_seconds: float, diverged: bool) -> dict[str, Any]:
    return {"trial_id": trial_id, "key": key, "train_flops": train_flops, "train_seconds": train_seconds,
            "diverged": diverged}


def hop_rows(trial_id: str, hops: list[HopResult]) -> list[dict[str, Any]]:
    return [{"trial_id": trial_id, **hop.to_dict()} for hop in hops]


def epoch_rows(trial_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch events of `train_chain` as rows; a loss term the hop's method lacks stays null."""
    return [{"trial_id": trial_id, **{k: v for k, v in event.items() if k != "event"}} for event in events]


def prediction_rows(trial_id: str, result: ChainResult) -> list[dict[str, Any]]:
    target = None if result.test_targets is None else result.test_targets.to(torch.int16).numpy()
    return [{"trial_id": trial_id, "hop": h.index, "arch": h.arch, "role": h.role,
             "predicted": h.predictions.predicted.numpy(), "true_prob": h.predictions.true_prob.numpy(),
             "target": target}
            for h in result.hops if h.predictions is not None]
