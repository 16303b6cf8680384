"""The report folder: files, non-blank figures, summary headings, a usable best config; and the loading and
ranking it rests on.

Controlled values (seed confirmation, an ERROR trial, exact counts) come from the fake run; one test writes
the report of the real tiny study and trains its best configuration again through the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.load import load_run, ordered_groups, successful
from analysis.plots import GROUP_COLOURS, group_colour
from analysis.ranking import (best_config, best_per_method, chain_settings, confirmation_summary,
                              rank_configurations, ranked)
from analysis.report import write_report
from analysis.tables import fmt_pct, fmt_sci, markdown_table
from cli.main import main
from runstore import schema
from runstore.storage import Location
from study import rows
from tests.analysis_fixtures import assert_png_not_blank, write_fake_run, write_table
from trainables.config import ChainConfig

FIGURES = ["pareto.png", "pareto_reference.png", "pareto_seconds.png", "pareto_params.png", "methods.png"]
HEADINGS = ["## Best configuration", "## Pareto front", "## Method comparison", "## Seed confirmation",
            "## Trials by status"]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake run for the tests that only read it; tests that need another shape write their own."""
    return write_fake_run(tmp_path_factory.mktemp("run"))


def report_folder(run: Path) -> Path:
    """Writes the report of the local run `run` and returns its folder."""
    location = write_report(run)
    assert isinstance(location, Location) and location.is_local
    return Path(location.path)


@pytest.fixture(scope="module")
def report(fake_run: Path) -> Path:
    return report_folder(fake_run)


def _add_trial(run: Path, trial_id: str, cfg: ChainConfig, status: str, error: str | None = None,
               **summary: Any) -> dict[str, Any]:
    """Writes one more trials file into `run`, as the study writes it; returns the row."""
    row = rows.trial_row(trial_id, cfg, status, error=error, summary=summary)
    write_table(run / "results" / "trials" / f"{trial_id}.parquet", [row], rows.trials_schema())
    return row


def test_report_writes_every_file(fake_run: Path, report: Path) -> None:
    assert report == fake_run.resolve() / "report"
    # exactly these: no predictions, so no avalanche figure; confirmations, so differences; nothing of the
    # temporary folder left behind
    files = [*FIGURES, "summary.md", "best_config.json", "differences.csv"]
    assert sorted(p.name for p in report.iterdir()) == sorted(files)
    for name in files:
        assert (report / name).stat().st_size > 0, name


@pytest.mark.parametrize("name", FIGURES)
def test_figures_decode_and_are_not_blank(report: Path, name: str) -> None:
    assert_png_not_blank(report / name)


def test_report_without_predictions_skips_the_avalanche(report: Path) -> None:
    assert not (report.parent / "results" / "predictions").exists()
    assert "## Error avalanche" not in (report / "summary.md").read_text()
    assert not (report / "avalanche.png").exists()


def test_report_with_predictions_has_the_avalanche(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path, with_confirm=False)
    hops = load_run(run).hops
    rng = np.random.default_rng(0)
    target = rng.integers(0, 10, 200).astype(np.int16)
    for trial_id, chain in hops.groupby("trial_id"):
        predictions = [{"trial_id": trial_id, "hop": hop["index"], "arch": hop["arch"], "role": hop["role"],
                        "predicted": np.where(rng.random(target.size) < 0.8, target, (target + 1) % 10)
                        .astype(np.int16),
                        "true_prob": rng.random(target.size).astype(np.float16), "target": target}
                       for hop in chain.sort_values("index").to_dict("records")]
        write_table(run / "results" / "predictions" / f"{trial_id}.parquet", predictions, schema.PREDICTIONS)
    report = report_folder(run)
    assert sorted(p.name for p in report.iterdir()) == \
        sorted([*FIGURES, "avalanche.png", "summary.md", "best_config.json"])
    assert_png_not_blank(report / "avalanche.png")
    summary = (report / "summary.md").read_text()
    section = summary.split("## Error avalanche\n")[1].split("\n## ")[0]
    assert "![Error avalanche](avalanche.png)" in section
    table = [line for line in section.splitlines() if line.startswith("|")]
    # every group with a teacher, in report order; nokd trains no teacher, so it has no avalanche
    assert [line.split(" | ")[0] for line in table[2:]] == \
        ["| kd", "| takd", "| dgkd", "| ensemble-mean", "| ensemble-learned", "| ensemble-confidence"]


def test_summary_has_its_sections_and_the_best_trial(report: Path) -> None:
    summary = (report / "summary.md").read_text()
    for heading in HEADINGS:
        assert heading in summary, heading
    assert summary.index("## Best configuration") < summary.index("## Pareto front") < \
        summary.index("## Method comparison") < summary.index("## Seed confirmation") < \
        summary.index("## Trials by status") < summary.index("## Figures")
    best = rank_configurations(load_run(report.parent).trials).iloc[0]
    assert best["config_label"] in summary and best["trial_id"] in summary
    assert "| TERMINATED | 11 |" in summary and "| ERROR | 1 |" in summary
    assert "diverged" not in summary  # the fake run has no DIVERGED trial: no listing


def test_status_section_lists_the_diverged_trials(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path, with_confirm=False)
    # a diverged trial keeps its label and where it blew up; its high score must not make it the best
    cfg = ChainConfig(method="dgkd", params={"temperature": 4.0, "alpha": 0.5, "drop": 1}, ta_depths=(6,))
    where = "hop 2 (plain2): loss nan at epoch 3"
    _add_trial(run, "t900", cfg, schema.DIVERGED, error=where, student_val_acc=0.999)
    _add_trial(run, "t901", cfg.replace(seed=1), schema.DIVERGED, error="hop 1 (plain6): loss inf at epoch 1")
    report = report_folder(run)
    summary = (report / "summary.md").read_text()
    status = summary.split("## Trials by status")[1].split("\n## ")[0]
    assert "| DIVERGED | 2 |" in status and "| ERROR | 1 |" in status
    assert "2 trials diverged" in status
    assert f"| {cfg.label} | {where} | `t900` |" in status
    assert status.index("`t900`") < status.index("`t901`")  # listed by trial id
    assert "t900" not in summary.split("## Trials by status")[0]  # not the best, on no front, in no ranking
    assert "t900" not in rank_configurations(load_run(run).trials)["trial_id"].tolist()


def test_best_config_json_is_a_valid_chain_config(report: Path) -> None:
    flat = json.loads((report / "best_config.json").read_text())
    assert [f.name for f in rows.config_fields()] == list(flat)
    config = ChainConfig.from_flat(flat)
    best = rank_configurations(load_run(report.parent).trials).iloc[0]
    assert config.method == best["method"] and list(config.ta_depths) == list(best["ta_depths"])
    assert config.label == best["config_label"] and config.group == best["group"]


def test_best_config_has_python_types(fake_run: Path) -> None:
    flat = best_config(load_run(fake_run).trials)
    assert isinstance(flat["ta_depths"], list) and all(type(d) is int for d in flat["ta_depths"])
    assert flat["train_size"] is None and flat["data_dir"] is None
    assert type(flat["epochs"]) is int and type(flat["alpha"]) is float and type(flat["augment"]) is bool
    config = ChainConfig.from_flat(flat)
    own = config.to_flat()
    # every column comes back; the settings of other methods than the best's own are null, the rest round-trips
    others = {key: value for key, value in flat.items() if key not in own}
    assert others and all(value is None for value in others.values()), others
    assert {key: value for key, value in flat.items() if key in own} == own


def test_integer_settings_with_nulls_stay_integers(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path, with_confirm=False)
    _add_trial(run, "t900", ChainConfig(method="kd", params={"temperature": 4.0, "alpha": 0.5}, train_size=1000),
               schema.FINISHED, student_val_acc=0.999, train_flops=10)
    trials = load_run(run).trials
    # null for the other trials (and drop null for every non-dgkd one), yet integers, not 1000.0
    assert trials["train_size"].dtype == "Int64" and trials["drop"].dtype == "Int64"
    assert trials["train_size"].isna().sum() == len(trials) - 1
    flat = best_config(trials)
    assert flat["train_size"] == 1000 and type(flat["train_size"]) is int
    assert ChainConfig.from_flat(flat).train_size == 1000


def test_rankings_use_validation_accuracy(fake_run: Path) -> None:
    trials = load_run(fake_run).trials
    ranked_ = rank_configurations(trials)
    assert len(ranked_) == len(successful(trials))
    assert ranked_["student_val_acc"].is_monotonic_decreasing
    groups = best_per_method(trials)["group"].tolist()
    assert groups == ["nokd", "kd", "takd", "dgkd", "ensemble-mean", "ensemble-learned", "ensemble-confidence"]


def test_ties_rank_the_cheaper_chain_then_the_trial_id_first() -> None:
    cfg = ChainConfig(method="takd", ta_depths=(6,))

    def row(trial_id: str, status: str, val: float | None, flops: int | None) -> dict[str, Any]:
        return rows.trial_row(trial_id, cfg, status, summary={"student_val_acc": val, "train_flops": flops})

    trials = pd.DataFrame([row("e", schema.FINISHED, 0.9, 300), row("d", schema.FINISHED, 0.9, 100),
                           row("a", schema.FINISHED, None, 1), row("c", schema.FINISHED, 0.9, 100),
                           row("b", schema.DIVERGED, 0.99, 1), row("f", schema.FINISHED, 0.8, 1)])
    assert ranked(trials)["trial_id"].tolist() == ["c", "d", "e", "f", "a"]
    assert rank_configurations(trials)["trial_id"].tolist() == ["c", "d", "e", "f", "a"]
    # the order of the rows as they were read changes nothing
    assert ranked(trials.iloc[::-1])["trial_id"].tolist() == ["c", "d", "e", "f", "a"]


def test_confirmation_summary_counts_finished_seeds(fake_run: Path) -> None:
    summary = confirmation_summary(load_run(fake_run).confirm)
    assert len(summary) == 3
    assert sorted(summary["n_seeds"]) == [2, 3, 3]  # one seed of the best configuration failed
    assert (summary["test_acc_ci95"] > summary["test_acc_std"]).all()  # t(0.975, ≤2 dof) · s / √n > s


def test_run_with_only_error_trials_raises(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path, n_trials=1, with_confirm=False)
    with pytest.raises(ValueError, match=r"trials: no successful trial in .*"):
        write_report(run)
    assert not (run / "report").exists()


def test_report_without_confirmation_skips_its_section(tmp_path: Path) -> None:
    summary = (report_folder(write_fake_run(tmp_path, with_confirm=False)) / "summary.md").read_text()
    assert "## Seed confirmation" not in summary
    assert "## Method comparison" in summary and summary.rstrip().endswith("![methods.png](methods.png)")


def test_load_run_with_only_trials(fake_run: Path, tmp_path: Path) -> None:
    shutil.copytree(fake_run / "results" / "trials", tmp_path / "early" / "results" / "trials")
    run = load_run(tmp_path / "early")
    assert len(run.trials) == 12 and "config_label" in run.trials
    assert run.hops.empty and list(run.hops.columns) == schema.HOPS.names
    assert run.epochs.empty and list(run.epochs.columns) == schema.EMPTY["epochs"].names
    assert run.predictions is None and run.confirm is None


def test_load_run_before_anything_is_written(tmp_path: Path) -> None:
    run = load_run(tmp_path)
    assert run.trials.empty and list(run.trials.columns) == schema.EMPTY["trials"].names
    assert {"config_label", "group", "status", "student_val_acc"} <= set(run.trials.columns)
    assert rank_configurations(run.trials).empty
    assert best_per_method(run.trials).empty
    assert run.location.uri == str(tmp_path.resolve()) and run.uri == run.location.uri


def test_load_run_of_a_missing_folder_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_run(missing)


def test_load_run_keeps_the_schema_columns_and_integer_types(fake_run: Path) -> None:
    run = load_run(fake_run)
    assert list(run.trials.columns) == rows.trials_schema().names
    assert list(run.confirm.columns) == rows.trials_schema(confirm=True).names
    assert list(run.epochs.columns) == rows.epochs_schema().names
    assert sorted(run.trials["trial_id"]) == [f"t{i:03d}" for i in range(12)]
    # every file of a table is read: each finished trial's whole chain (nokd trains its student only)
    ok = successful(run.trials).set_index("trial_id")
    expected = (ok["num_tas"] + 2).where(ok["method"] != "nokd", 1)
    assert run.hops.groupby("trial_id").size().to_dict() == expected.to_dict()
    assert len(run.epochs) == 3 * len(run.hops)
    for name in ("num_tas", "train_flops", "epochs", "seed", "drop"):
        assert run.trials[name].dtype == "Int64", name
    assert run.trials["ta_depths"].map(list).tolist()[:4] == [[], [], [6], [8, 4]]


def test_load_run_unifies_files_whose_columns_differ(fake_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "mixed"
    shutil.copytree(fake_run / "results", run / "results")
    base = rows.trial_row("t100", ChainConfig(method="kd"), schema.FINISHED, summary={"student_val_acc": 0.5})
    # a later version: a method that brought a setting `beta`
    later = rows.trials_schema().append(pa.field("beta", pa.float64()))
    write_table(run / "results" / "trials" / "t100.parquet", [{**base, "beta": 0.25}], later)
    # an earlier version, before `drop` and `space` existed
    earlier = pa.schema([f for f in rows.trials_schema() if f.name not in ("drop", "space")])
    write_table(run / "results" / "trials" / "t101.parquet", [{**base, "trial_id": "t101"}], earlier)
    trials = load_run(run).trials.set_index("trial_id")
    assert len(trials) == 14
    assert trials.at["t100", "beta"] == 0.25 and trials.drop(index="t100")["beta"].isna().all()
    assert pd.isna(trials.at["t101", "drop"]) and pd.isna(trials.at["t101", "space"])
    assert trials.at["t003", "drop"] == 1 and trials.at["t004", "space"] == "prob"  # the others keep theirs
    assert trials["drop"].dtype == "Int64" and trials["epochs"].dtype == "Int64"


def test_config_labels_and_groups(fake_run: Path) -> None:
    trials = load_run(fake_run).trials.set_index("trial_id")
    labels, groups = trials["config_label"], trials["group"]
    assert labels["t000"] == "nokd 2" and groups["t000"] == "nokd"
    assert labels["t003"].startswith("dgkd 10→8→4→2 T=") and labels["t003"].endswith(" drop=1")
    assert labels["t008"].startswith("dgkd 10→6→2 T=") and labels["t008"].endswith(" drop=0")
    assert labels["t005"].startswith("ensemble[learned/logit] 10→8→6→4→2 T=") and " α=" in labels["t005"]
    assert groups["t005"] == "ensemble-learned" and groups["t006"] == "ensemble-confidence"
    assert labels["t011"].startswith("takd 10→6→2 T=")  # an ERROR trial is labelled too
    # the label written is the label of the configuration the row holds
    for trial_id, row in trials.iterrows():
        cfg = ChainConfig.from_flat(chain_settings(row))
        assert (cfg.label, cfg.group) == (labels[trial_id], groups[trial_id]), trial_id


def test_results_files_match_the_study_schema(fake_run: Path) -> None:
    results = fake_run / "results"
    expected = {"trials": rows.trials_schema(), "hops": schema.HOPS, "epochs": rows.epochs_schema(),
                "confirm": rows.trials_schema(confirm=True)}
    for name, table_schema in expected.items():
        files = sorted((results / name).glob("*.parquet"))
        assert files, name
        for file in files:
            assert pq.read_schema(file).equals(table_schema), file
    assert len(list((results / "trials").glob("*.parquet"))) == 12
    assert pa.types.is_list(rows.trials_schema().field("ta_depths").type)
    # the fixed columns frame every trials table, config columns between them
    names = rows.trials_schema().names
    assert names[:len(schema.TRIAL_HEAD)] == [f.name for f in schema.TRIAL_HEAD]
    assert names[-len(schema.TRIAL_TAIL):] == [f.name for f in schema.TRIAL_TAIL]


def test_markdown_table_escapes_aligns_and_dashes_nulls() -> None:
    frame = pd.DataFrame({"name": ["a|b"], "share": [float("nan")], "flops": [1.5e9]})
    table = markdown_table(frame, {"name": ("x | y", str), "share": ("share", fmt_pct), "flops": ("FLOPs", fmt_sci)},
                           right=["share", "flops"])
    assert table.splitlines() == ["| x \\| y | share | FLOPs |", "|---|---:|---:|", "| a\\|b | – | 1.5e+09 |"]


def test_groups_sort_in_report_order_then_alphabetically() -> None:
    assert ordered_groups(["zeta", "dgkd", "ensemble-mean", "kd", "alpha", "kd"]) == \
        ["kd", "dgkd", "ensemble-mean", "alpha", "zeta"]


def test_a_new_group_has_its_own_stable_colour_and_built_in_groups_keep_theirs() -> None:
    assert group_colour("takd") == "#ff7f0e" and group_colour("nokd") == "#7f7f7f"
    new = {group: group_colour(group) for group in ("fitnet", "sharpkd", "my-kd", "tinykd")}
    # known answers: a hash that changed per process (Python's own `hash`) would recolour a group in every report
    assert new == {"fitnet": "#a55194", "sharpkd": "#8c6d31", "my-kd": "#17becf", "tinykd": "#5254a3"}
    assert len(set(new.values())) == len(new)
    assert not set(new.values()) & set(GROUP_COLOURS.values())

# ------------------------------------------------------------------------------------------- the real tiny study

# `kdstudy chain` flags that override best_config.json in the round trip, as the config field each one sets
CHAIN_OVERRIDES = {"epochs": 1, "train_size": 200, "val_size": 50}


@pytest.fixture(scope="module")
def real_report(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy of the results: the study fixture is shared by the session and its run folder stays as the study left it.
    run = tmp_path_factory.mktemp("real") / tiny_study.name
    shutil.copytree(tiny_study / "results", run / "results")
    return Path(write_report(run).path)


@pytest.mark.ray
def test_report_of_the_tiny_study(real_report: Path) -> None:
    for name in [*FIGURES, "avalanche.png"]:
        assert_png_not_blank(real_report / name)
    summary = (real_report / "summary.md").read_text()
    for heading in [h for h in HEADINGS if h != "## Seed confirmation"] + ["## Error avalanche"]:
        assert heading in summary, heading
    assert "## Seed confirmation" not in summary  # the tiny study confirms nothing: no results/confirm/
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
    # best_config.json also holds the other methods' settings, as nulls; the chain's config has its own only
    expected = ChainConfig.from_flat(best).to_flat()
    assert {k: v for k, v in config.items() if k not in CHAIN_OVERRIDES} == \
        {k: v for k, v in expected.items() if k not in CHAIN_OVERRIDES}
