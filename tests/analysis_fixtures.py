"""Helpers of the analysis tests: a fake study run, a "figure is not blank" check and a notebook runner.

The fake run has Parquet results in the study's own layout, built through the study's own row path
(`study.rows`), with controlled values: plausible rather than real, every method group appears, accuracies and
costs grow with the chain, one trial failed and three configurations were re-seeded. Tests of real output use
the session's `tiny_study` (tests/conftest.py) instead.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from runstore import schema
from study import rows
from trainables.config import ChainConfig

# (method, params, ta_depths): one per comparison group, then cycled.
_CHAINS: list[tuple[str, dict[str, Any], list[int]]] = [
    ("nokd", {}, []),
    ("kd", {}, []),
    ("takd", {}, [6]),
    ("dgkd", {"drop": 1}, [8, 4]),
    ("ensemble", {"weighting": "mean", "space": "prob"}, [6]),
    ("ensemble", {"weighting": "learned", "space": "logit"}, [8, 6, 4]),
    ("ensemble", {"weighting": "confidence", "space": "prob"}, [8, 4]),
    ("takd", {}, [8, 6, 4]),
    ("dgkd", {"drop": 0}, [6]),
]
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_KERNEL = "python3"

_SAMPLES = 4_500  # training images of mnist5k after the validation hold-out
_EPOCHS = 3


def write_fake_run(root: Path, n_trials: int = 12, seed: int = 0, with_confirm: bool = True) -> Path:
    """Writes `<root>/results/{trials,hops,epochs[,confirm]}/` and returns `root` (the run folder)."""
    rng = random.Random(seed)
    results = Path(root) / "results"
    trials = []
    for i in range(n_trials):
        trial_id = f"t{i:03d}"
        cfg = _config(i, rng)
        failed = i == n_trials - 1  # exactly one ERROR trial
        trial = _trial_row(trial_id, cfg, rng, failed)
        trials.append((trial, cfg))
        write_table(results / "trials" / f"{trial_id}.parquet", [trial], rows.trials_schema())
        if not failed:
            write_table(results / "hops" / f"{trial_id}.parquet", _hop_rows(trial_id, cfg, trial, rng), schema.HOPS)
            for key, epochs in _epoch_rows(trial_id, cfg, rng).items():
                write_table(results / "epochs" / f"{key}.parquet", epochs, rows.epochs_schema())
    if with_confirm:
        for row in _confirm_rows(trials, rng):
            write_table(results / "confirm" / f"{row['trial_id']}.parquet", [row], rows.trials_schema(confirm=True))
    return Path(root)


def _config(i: int, rng: random.Random) -> ChainConfig:
    method, params, tas = _CHAINS[i % len(_CHAINS)]
    if method != "nokd":
        params = {**params, "temperature": rng.choice([2.0, 4.0, 8.0]), "alpha": round(rng.uniform(0.1, 0.9), 2)}
    # every trial holds out the learned ensemble's fit split, as in a study that can draw one
    return ChainConfig(method=method, params=params, ta_depths=tuple(tas), epochs=_EPOCHS, seed=i, fit_size=0.05)


def _depths(cfg: ChainConfig) -> list[int]:
    return [int(arch.removeprefix("plain")) for arch in cfg.archs]


def _trial_row(trial_id: str, cfg: ChainConfig, rng: random.Random, failed: bool) -> dict[str, Any]:
    if failed:
        return rows.trial_row(trial_id, cfg, schema.ERROR, error="RuntimeError: CUDA out of memory")
    depths = _depths(cfg)
    train_flops = sum(_hop_train_flops(d) for d in depths)
    val = 0.80 + 0.02 * len(depths) + rng.uniform(-0.03, 0.03)
    summary = {
        "student_val_acc": round(val, 4),
        "student_test_acc": round(val + rng.uniform(-0.02, 0.01), 4),
        "train_flops": train_flops,
        "reference_flops": sum(_hop_reference_flops(depths, index) for index in range(len(depths))),
        "train_seconds": train_flops / 2e11,
        "spent_flops": train_flops - (reused := _hop_train_flops(10) if rng.random() < 0.5 and len(depths) > 1 else 0),
        "spent_seconds": (train_flops - reused) / 2e11,
        "wait_seconds": rng.uniform(0.0, 2.0) * (reused > 0),
        "student_params": 20_000,
        "student_flops": 1_000_000,
        "ensemble_weights": [1 / (len(depths) - 1)] * (len(depths) - 1) if cfg.method == "ensemble" else None,
    }
    return rows.trial_row(trial_id, cfg, schema.FINISHED, summary=summary)


def _hop_train_flops(depth: int) -> int:
    return 3 * depth * 500_000 * _SAMPLES * _EPOCHS


def _hop_reference_flops(depths: list[int], index: int) -> int:
    """Its training, plus every model above it forwarded on every image of every epoch (a third of its training)."""
    return _hop_train_flops(depths[index]) + sum(_hop_train_flops(d) // 3 for d in depths[:index])


def _hop_rows(trial_id: str, cfg: ChainConfig, trial: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    depths = _depths(cfg)
    hops = []
    for index, depth in enumerate(depths):
        role = "student" if index == len(depths) - 1 else "teacher" if index == 0 else "ta"
        is_student = role == "student"
        val = trial["student_val_acc"] if is_student else 0.9 + 0.005 * depth
        hops.append({
            "trial_id": trial_id, "index": index, "arch": f"plain{depth}", "role": role, "key": f"k{trial_id}{depth}",
            "teachers": list(range(index)), "best_epoch": _EPOCHS - 1, "val_acc": val,
            "test_acc": trial["student_test_acc"] if is_student else val - 0.01,
            "params": 10_000 * depth, "flops": 500_000 * depth, "train_flops": _hop_train_flops(depth),
            "reference_flops": _hop_reference_flops(depths, index),
            "train_seconds": _hop_train_flops(depth) / 2e11, "spent_flops": _hop_train_flops(depth),
            "spent_seconds": _hop_train_flops(depth) / 2e11, "wait_seconds": rng.uniform(0.0, 0.1),
            "upper_forward_samples": index * _SAMPLES * _EPOCHS, "kl_terms": index, "reused": False,
            "ensemble_weights": None,
        })
    return hops


def _epoch_rows(trial_id: str, cfg: ChainConfig, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    by_hop = {}
    depths = _depths(cfg)
    for hop, depth in enumerate(depths):
        key = f"k{trial_id}{depth}"
        by_hop[key] = [{
            "trial_id": trial_id, "key": key, "hop": hop, "role": "student" if hop == len(depths) - 1 else "teacher",
            "arch": f"plain{depth}", "epoch": epoch, "global_epoch": hop * _EPOCHS + epoch, "lr": 0.01,
            "train_loss": 1.5 / epoch, "loss_ce": 1.0 / epoch, "loss_kd": 0.5 / epoch if hop else None,
            "val_acc": 0.7 + 0.05 * epoch + rng.uniform(0, 0.02), "val_loss": 1.2 / epoch, "seconds": 1.0,
        } for epoch in range(1, _EPOCHS + 1)]
    return by_hop


def _confirm_rows(trials: list[tuple[dict[str, Any], ChainConfig]], rng: random.Random) -> list[dict[str, Any]]:
    """Three new seeds for each of the three best trials; one seed of the best fails."""
    ok = sorted((t for t in trials if t[0]["status"] == schema.FINISHED), key=lambda t: -t[0]["student_val_acc"])
    confirm = []
    for rank, (source, cfg) in enumerate(ok[:3]):
        for k in range(3):
            seeded = cfg.replace(seed=100 + k)
            if rank == 0 and k == 2:
                row = rows.trial_row(f"{source['trial_id']}-s{seeded.seed}", seeded, schema.ERROR,
                                     error="RuntimeError: NaN loss")
            else:
                summary = {name: source[name] for name in ("train_flops", "reference_flops", "train_seconds",
                                                           "spent_flops", "spent_seconds", "wait_seconds",
                                                           "student_params", "student_flops")}
                summary["student_val_acc"] = round(source["student_val_acc"] + rng.uniform(-0.01, 0.01), 4)
                summary["student_test_acc"] = round(source["student_test_acc"] + rng.uniform(-0.01, 0.01), 4)
                row = rows.trial_row(f"{source['trial_id']}-s{seeded.seed}", seeded, schema.FINISHED, summary=summary)
            confirm.append({"source_trial_id": source["trial_id"], **row})
    return confirm


def write_table(path: Path, table_rows: list[dict[str, Any]], table_schema: pa.Schema) -> None:
    """Rows as one Parquet file of `table_schema`; fields a row leaves out are null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(table_rows, schema=table_schema), path)


def assert_png_not_blank(path: Path, min_height: int = 200, min_width: int = 300, min_std: float = 0.03) -> None:
    """`path` decodes as a colour image of at least that size that is neither blank nor only black on white."""
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > min_height and pixels.shape[1] > min_width, pixels.shape
    rgb = pixels[..., :3]
    assert rgb.std() > min_std, f"{path.name} is (nearly) blank"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10, f"{path.name} has no colours"


def execute_notebook(path: Path, run: Path, cwd: Path) -> Any:
    """Executes the notebook at `path` against `run` in a fresh kernel started in `cwd`; returns it with outputs.

    The kernel gets this environment plus the run to read (KDSTUDY_RUN), the project on its path (so an
    uninstalled checkout works too) and a headless matplotlib backend. Raises CellExecutionError naming the
    failing cell.
    """
    import nbformat  # imported here: only the notebook tests pay for jupyter
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    env = {**os.environ, "KDSTUDY_RUN": str(run), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    client = NotebookClient(notebook, kernel_name=NOTEBOOK_KERNEL, timeout=120,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return notebook


def code_outputs(notebook: Any) -> list[Any]:
    """Every output of the notebook's code cells, in order."""
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
