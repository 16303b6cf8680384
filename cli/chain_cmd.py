"""`kdstudy chain`: one chain, trained in this process without Ray, with a progress bar and a JSON record."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cli.flags import add_flags, flag_values
from trainables import ChainConfig, ChainResult, HopDiverged, train_chain
from trainables.config import CHAIN_SETTINGS
from trainables.data import DataBundle, load_chain_data
from trainables.methods import Param, all_params
from trainables.typed import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chain", help="train one KD chain without Ray and write its result as JSON")
    parser.add_argument("--config", type=Path, help="JSON file with a flat chain config (flags override it)")
    parser.add_argument("--download", action="store_true", help="fetch CIFAR into --data-dir if missing")
    add_flags(parser, _settings())
    parser.add_argument("--out", type=Path, help="write the result as JSON to this file")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(handler=run)


def _settings() -> list[Param]:
    """Every chain setting, then every KD method's (those of a method added later too)."""
    return [*CHAIN_SETTINGS.values(), *all_params().values()]


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    _check_writable("out", args.out)
    data = load_chain_data(cfg, download=args.download)
    try:
        result = _train_with_progress(cfg, data, args.progress)
    except HopDiverged as diverged:
        print(f"kdstudy chain: diverged: {diverged}", file=sys.stderr)
        return 1
    print(hop_table(result))
    if args.out:
        write_json_atomic(args.out, result_record(result))
        print(f"wrote {args.out}")
    return 0


def config_from_args(args: argparse.Namespace) -> ChainConfig:
    flat = read_config_file(args.config) if args.config else {}
    flat.update(flag_values(args, _settings()))
    return ChainConfig.from_flat(flat)


def read_config_file(path: Path) -> dict[str, Any]:
    """A flat config, or any JSON we write that holds one under "config" (chain results, best_config.json)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError("config", problem=f"cannot read {path} as JSON ({error})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise InputError("config", problem=f"expected a JSON object in {path}")
    return data


def _check_writable(name: str, path: Path | None) -> None:
    if path is not None and not os.access(path.parent.resolve(), os.W_OK):
        raise InputError(name, problem=f"cannot write to {path.parent} (missing or not writable)")


def _train_with_progress(cfg: ChainConfig, data: DataBundle, progress: bool) -> ChainResult:
    planned = [cfg.hop_epochs(index) for index in range(len(cfg.archs))]
    with tqdm(total=sum(planned), disable=not progress, unit="epoch", dynamic_ncols=True) as bar:
        def report(event: dict[str, Any]) -> None:
            if event["event"] == "epoch":
                bar.set_description(f"{event['role']} {event['arch']}")
                bar.set_postfix(val_acc=f"{event['val_acc']:.3f}", loss=f"{event['train_loss']:.3f}")
                bar.update(1)
            else:  # the epochs a hop did not train here (stored, resumed, ended by patience) count as done
                bar.update(sum(planned[:event["index"] + 1]) - bar.n)

        return train_chain(cfg, report=report, data=data)


def hop_table(result: ChainResult) -> str:
    header = f"{'hop':>3}  {'role':<7} {'arch':<9} {'val_acc':>7} {'test_acc':>8} {'params':>9} {'MFLOPs':>8} " \
             f"{'train_TFLOPs':>12} {'seconds':>7}"
    rows = [header]
    for h in result.hops:
        rows.append(f"{h.index:>3}  {h.role:<7} {h.arch:<9} {h.val_acc:>7.4f} {h.test_acc:>8.4f} {h.params:>9,} "
                    f"{h.flops / 1e6:>8.2f} {h.train_flops / 1e12:>12.4f} {h.train_seconds:>7.1f}")
    return "\n".join(rows)


def result_record(result: ChainResult) -> dict[str, Any]:
    """The chain's JSON: config, summary, hops — each hop with a summary of its test predictions measured
    against the teacher's (how much of the teacher's error it repeats: the error avalanche)."""
    record = result.to_dict()
    if result.test_targets is None:
        return record
    from analysis.avalanche import pair_metrics

    target = result.test_targets.numpy()
    top = result.hops[0].predictions
    for hop_record, hop in zip(record["hops"], result.hops):
        if hop.predictions is None or top is None:
            continue
        metrics = pair_metrics(top.predicted.numpy(), hop.predictions.predicted.numpy(), target)
        hop_record["test_predictions"] = {
            "errors": metrics.lower_errors,
            "mean_true_prob": float(hop.predictions.true_prob.float().mean()),
            "top_model_errors_repeated": _finite(metrics.p_lower_wrong_given_upper_wrong),
            "wrong_given_top_model_right": _finite(metrics.p_lower_wrong_given_upper_right),
            "same_wrong_class_as_top_model": _finite(metrics.inherited_error_rate),
        }
    return record


def _finite(value: float) -> float | None:
    return None if value != value else value  # NaN → JSON null


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2)
    os.replace(tmp, path)
