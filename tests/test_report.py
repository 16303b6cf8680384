"""The report folder: files, non-blank figures, summary headings, a usable best config.

Controlled values (seed confirmation, an ERROR trial, exact counts) come from the fake run; one test writes
the report of the real tiny study and trains its best configuration again through the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.load import load_run, ordered_groups, successful
from analysis.ranking import best_config, best_per_method, confirmation_summary, rank_configurations
from analysis.report import EXTRA_SECTIONS, write_report
from analysis.tables import fmt_pct, fmt_sci, markdown_table
from study import schema
from study.cli import main
from tests.analysis_fixtures import assert_png_not_blank, write_fake_run
from trainables.config import ChainConfig

FIGURES = ["pareto.png", "pareto_seconds.png", "pareto_params.png", "methods.png"]
HEADINGS = ["## Best configuration", "## Pareto front", "## Method comparison", "## Seed confirmation",
            "## Trials by status"]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake run for the tests that only read it; tests that need another shape write their own."""
    return write_fake_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def report(fake_run: Path) -> Path:
    return write_report(fake_run)


def test_report_writes_every_file(report: Path) -> None:
    assert report.name == "report"
    for name in [*FIGURES, "summary.md", "best_config.json"]:
        assert (report / name).stat().st_size > 0, name


@pytest.mark.parametrize("name", FIGURES)
def test_figures_decode_and_are_not_blank(report: Path, name: str) -> None:
    assert_png_not_blank(report / name)


def test_report_without_predictions_skips_the_avalanche(report: Path) -> None:
    assert not (report.parent / "results" / "predictions.parquet").exists()
    assert "## Error avalanche" not in (report / "summary.md").read_text()
    assert not (report / "avalanche.png").exists()


def test_summary_has_its_sections_and_the_best_trial(report: Path) -> None:
    summary = (report / "summary.md").read_text()
    for heading in HEADINGS:
        assert heading in summary, heading
    best = rank_configurations(load_run(report.parent).trials).iloc[0]
    assert best["config_label"] in summary and best["trial_id"] in summary
    assert "| TERMINATED | 11 |" in summary and "| ERROR | 1 |" in summary


def test_best_config_json_is_a_valid_chain_config(report: Path) -> None:
    flat = json.loads((report / "best_config.json").read_text())
    assert [f.name for f in schema.config_fields()] == list(flat)
    config = ChainConfig.from_flat(flat)
    best = rank_configurations(load_run(report.parent).trials).iloc[0]
    assert config.method == best["method"] and list(config.ta_depths) == list(best["ta_depths"])


def test_best_config_has_python_types(fake_run: Path) -> None:
    flat = best_config(load_run(fake_run).trials)
    assert isinstance(flat["ta_depths"], list) and all(type(d) is int for d in flat["ta_depths"])
    assert flat["train_size"] is None and flat["data_dir"] is None
    assert type(flat["epochs"]) is int and type(flat["alpha"]) is float and type(flat["augment"]) is bool
    assert ChainConfig.from_flat(flat).to_flat() == flat


def test_rankings_use_validation_accuracy(fake_run: Path) -> None:
    trials = load_run(fake_run).trials
    ranked = rank_configurations(trials)
    assert len(ranked) == len(successful(trials))
    assert ranked["student_val_acc"].is_monotonic_decreasing
    groups = best_per_method(trials)["group"].tolist()
    assert groups == ["nokd", "kd", "takd", "dgkd", "ensemble-mean", "ensemble-learned", "ensemble-confidence"]


def test_confirmation_summary_counts_finished_seeds(fake_run: Path) -> None:
    summary = confirmation_summary(load_run(fake_run).confirm)
    assert len(summary) == 3
    assert sorted(summary["n_seeds"]) == [2, 3, 3]  # one seed of the best configuration failed
    assert (summary["test_acc_ci95"] > summary["test_acc_std"]).all()  # t(0.975, ≤2 dof) · s / √n > s


def test_run_with_only_error_trials_raises(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path, n_trials=1, with_confirm=False)
    with pytest.raises(ValueError, match=r"trials: no successful trial in .*"):
        write_report(run)


def test_extra_sections_are_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("analysis.report.EXTRA_SECTIONS", [*EXTRA_SECTIONS, lambda run, out: ("Extra", "hello"),
                                                           lambda run, out: None])
    summary = (write_report(write_fake_run(tmp_path, with_confirm=False)) / "summary.md").read_text()
    assert summary.rstrip().endswith("## Extra\n\nhello")
    assert "## Seed confirmation" not in summary


def test_load_run_with_only_trials(fake_run: Path, tmp_path: Path) -> None:
    (tmp_path / "early" / "results").mkdir(parents=True)
    table = pq.read_table(fake_run / "results" / "trials.parquet")
    pq.write_table(table, tmp_path / "early" / "results" / "trials.parquet")
    run = load_run(tmp_path / "early")
    assert len(run.trials) == len(table) and "config_label" in run.trials
    assert run.hops.empty and list(run.hops.columns) == schema.HOPS.names
    assert run.epochs.empty and list(run.epochs.columns) == schema.EPOCHS.names
    assert run.predictions is None and run.confirm is None


def test_load_run_before_anything_is_written(tmp_path: Path) -> None:
    run = load_run(tmp_path)
    assert run.trials.empty and {"config_label", "group", *schema.TRIALS.names} <= set(run.trials.columns)
    assert rank_configurations(run.trials).empty


def test_load_run_of_a_missing_folder_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_run(missing)


def test_config_labels(fake_run: Path) -> None:
    labels = dict(zip(*load_run(fake_run).trials[["method", "config_label"]].to_numpy().T))
    assert labels["nokd"] == "nokd 2"
    assert labels["dgkd"].startswith("dgkd 10→6→2 drop=0 T=")
    assert labels["ensemble"].startswith("ensemble[") and "α=" in labels["ensemble"]


def test_trials_parquet_matches_the_schema(fake_run: Path) -> None:
    results = fake_run / "results"
    for name, table_schema in [("trials", schema.TRIALS), ("hops", schema.HOPS), ("epochs", schema.EPOCHS),
                               ("confirm", schema.CONFIRM)]:
        assert pq.read_schema(results / f"{name}.parquet").equals(table_schema), name
    assert pa.types.is_list(schema.TRIALS.field("ta_depths").type)



def test_markdown_table_escapes_aligns_and_dashes_nulls() -> None:
    frame = pd.DataFrame({"name": ["a|b"], "share": [float("nan")], "flops": [1.5e9]})
    table = markdown_table(frame, {"name": ("x | y", str), "share": ("share", fmt_pct), "flops": ("FLOPs", fmt_sci)},
                           right=["share", "flops"])
    assert table.splitlines() == ["| x \\| y | share | FLOPs |", "|---|---:|---:|", "| a\\|b | – | 1.5e+09 |"]


def test_groups_sort_in_report_order_then_alphabetically() -> None:
    assert ordered_groups(["zeta", "dgkd", "ensemble-mean", "kd", "alpha", "kd"]) == \
        ["kd", "dgkd", "ensemble-mean", "alpha", "zeta"]

# ------------------------------------------------------------------------------------------- the real tiny study

# `kdstudy chain` flags that override best_config.json in the round trip, as the config field each one sets
CHAIN_OVERRIDES = {"epochs": 1, "train_size": 200, "val_size": 50}


@pytest.fixture(scope="module")
def real_report(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy of the results: the study fixture is shared by the session and its run folder stays as the study left it.
    run = tmp_path_factory.mktemp("real") / tiny_study.name
    shutil.copytree(tiny_study / "results", run / "results")
    return write_report(run)


@pytest.mark.ray
def test_report_of_the_tiny_study(real_report: Path) -> None:
    for name in [*FIGURES, "avalanche.png"]:
        assert_png_not_blank(real_report / name)
    summary = (real_report / "summary.md").read_text()
    for heading in [h for h in HEADINGS if h != "## Seed confirmation"] + ["## Error avalanche"]:
        assert heading in summary, heading
    assert "## Seed confirmation" not in summary  # the tiny study confirms nothing: no confirm.parquet
    assert "![Error avalanche](avalanche.png)" in summary


@pytest.mark.ray
def test_best_config_of_the_tiny_study_trains_through_the_cli(real_report: Path, tmp_path: Path) -> None:
    best = json.loads((real_report / "best_config.json").read_text())
    out = tmp_path / "c.json"
    flags = [text for key, value in CHAIN_OVERRIDES.items() for text in (f"--{key.replace('_', '-')}", str(value))]
    argv = ["chain", "--config", str(real_report / "best_config.json"), *flags, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    config = json.loads(out.read_text())["config"]
    assert {key: config[key] for key in CHAIN_OVERRIDES} == CHAIN_OVERRIDES
    assert {k: v for k, v in config.items() if k not in CHAIN_OVERRIDES} == \
        {k: v for k, v in best.items() if k not in CHAIN_OVERRIDES}
