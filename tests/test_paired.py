"""Paired method differences, the seed paper's table and `--per-group` job planning: known answers on runs built
from rows (no training).

The hand numbers: a paired difference d_i = 100·(acc_a − acc_b) per seed, mean m, s = std(d, ddof=1),
sem = s/√n, CI = m ± t(0.975, n−1)·sem with t(0.975, 1) = 12.7062047, t(0.975, 2) = 4.3026527, and the two-sided
p of t = m/sem in closed form: 1 − (2/π)·atan(t) for 1 dof, 1 − t/√(t² + 2) for 2 dof.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_run
from analysis.paired import (DIFFERENCE_COLUMNS, best_group, comparison_pairs, difference_sentence, paired_differences,
                             paired_t)
from analysis.report import write_report
from analysis.seed_paper import seed_comparison
from cli.main import main
from runstore import schema
from study import rows
from study.confirm import confirmation_jobs
from tests.analysis_fixtures import write_table
from trainables.config import ChainConfig

SEED_CHAIN = {"dataset": "cifar100", "teacher": "plain10", "student": "plain2"}
KD = {"temperature": 4.0, "alpha": 0.5}
# source trial → (config, study val acc, {seed: (val acc, test acc)}, None: that seed failed)
TAKD_A = ChainConfig(method="takd", params=KD, ta_depths=(6,), **SEED_CHAIN)
TAKD_B = ChainConfig(method="takd", params={**KD, "alpha": 0.9}, ta_depths=(6,), **SEED_CHAIN)
DGKD = ChainConfig(method="dgkd", params={**KD, "drop": 1}, ta_depths=(8, 4), **SEED_CHAIN)
ENSEMBLE = ChainConfig(method="ensemble", params={**KD, "weighting": "mean", "space": "prob"}, ta_depths=(6,),
                       **SEED_CHAIN)
CONFIDENCE = ChainConfig(method="ensemble", params={**KD, "weighting": "confidence", "space": "prob"},
                         ta_depths=(6,), **SEED_CHAIN)
CONFIRMED: dict[str, tuple[ChainConfig, dict[int, tuple[float, float] | None]]] = {
    # takd's confirmed configuration is tA (mean val 0.45 > tB's 0.40), although tB tests far higher
    "tA": (TAKD_A, {1: (0.45, 0.40), 2: (0.45, 0.42), 3: (0.45, 0.41)}),
    "tB": (TAKD_B, {1: (0.40, 0.60), 2: (0.40, 0.62), 3: (0.40, 0.61)}),
    "d": (DGKD, {1: (0.48, 0.43), 2: (0.48, 0.46), 3: (0.48, 0.44)}),
    "e": (ENSEMBLE, {1: (0.50, 0.45), 2: (0.50, 0.44), 3: None}),  # the best group, by mean val 0.50
}


def write_run(root: Path, cfgs: dict[str, ChainConfig], confirmed: dict[str, Any]) -> Path:
    """A run of one finished study trial (seed 0) per config, and the `confirmed` confirmation rows."""
    results = root / "results"
    for i, (trial_id, cfg) in enumerate(cfgs.items()):
        row = rows.trial_row(trial_id, cfg.replace(seed=0), schema.FINISHED,
                             summary={"student_val_acc": 0.3 + 0.01 * i, "student_test_acc": 0.3, "train_flops": 10})
        write_table(results / "trials" / f"{trial_id}.parquet", [row], rows.trials_schema())
    for source, (cfg, seeds) in confirmed.items():
        for seed, accs in seeds.items():
            seeded = cfg.replace(seed=seed)
            if accs is None:
                row = rows.trial_row(f"{source}-s{seed}", seeded, schema.ERROR, error="RuntimeError: lost node")
            else:
                row = rows.trial_row(f"{source}-s{seed}", seeded, schema.FINISHED,
                                     summary={"student_val_acc": accs[0], "student_test_acc": accs[1]})
            write_table(results / "confirm" / f"{source}-s{seed}.parquet", [{"source_trial_id": source, **row}],
                        rows.trials_schema(confirm=True))
    return root


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfgs = {"tA": TAKD_A, "tB": TAKD_B, "d": DGKD, "e": ENSEMBLE, "c": CONFIDENCE, "tA2": TAKD_A}
    return write_run(tmp_path_factory.mktemp("seed"), cfgs, CONFIRMED)


@pytest.fixture(scope="module")
def seed_report(seed_run: Path) -> Path:
    return Path(write_report(seed_run).path)


# The hand computation, row by row (pairs: each group against takd, then against the best group, ensemble-mean):
#   dgkd − takd, seeds 1-3: d = 3, 4, 3 → m = 10/3, s = 1/√3, sem = 1/3, half = 4.3026527/3, t = 10
#   ensemble-mean − takd, seeds 1-2 (seed 3 failed): d = 5, 2 → m = 3.5, s = 3/√2, sem = 1.5,
#       half = 12.7062047·1.5, t = 7/3
#   dgkd − ensemble-mean, seeds 1-2: d = −2, 2 → m = 0, s = 2√2, sem = 2, half = 12.7062047·2, t = 0, p = 1
EXPECTED = pd.DataFrame([
    ["dgkd", "takd", DGKD.label, TAKD_A.label, 3, 3.333333, 1.899116, 4.767551, 0.009852],
    ["ensemble-mean", "takd", ENSEMBLE.label, TAKD_A.label, 2, 3.5, -15.559307, 22.559307, 0.257762],
    ["dgkd", "ensemble-mean", DGKD.label, ENSEMBLE.label, 2, 0.0, -25.412409, 25.412409, 1.0],
], columns=DIFFERENCE_COLUMNS)


def test_differences_csv_equals_the_hand_computation(seed_report: Path) -> None:
    written = pd.read_csv(seed_report / "differences.csv")
    pd.testing.assert_frame_equal(written, EXPECTED, check_exact=False, atol=2e-6, check_dtype=False)
    # the closed forms of the hand p-values
    assert EXPECTED.at[0, "p_value"] == pytest.approx(1 - 10 / math.sqrt(102), abs=1e-6)
    assert EXPECTED.at[1, "p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(7 / 3), abs=1e-6)


def test_summary_says_each_difference_in_words(seed_report: Path) -> None:
    summary = (seed_report / "summary.md").read_text()
    section = summary.split("## Paired differences between method groups\n")[1].split("\n## ")[0]
    assert "- dgkd \u2212 takd: +3.3 points, 95 % CI [+1.9, +4.8], 3 paired seeds" in section
    assert "- ensemble-mean \u2212 takd: +3.5 points, 95 % CI [-15.6, +22.6], 2 paired seeds" in section
    assert "- dgkd \u2212 ensemble-mean: +0.0 points, 95 % CI [-25.4, +25.4], 2 paired seeds" in section
    assert "Not confirmed, so in no difference: ensemble-confidence" in section
    # the method table counts each group's finished trials beside its best
    methods = summary.split("## Method comparison\n")[1].split("\n## ")[0]
    assert "| group | finished trials | best configuration |" in methods
    assert [line.split(" | ")[:2] for line in methods.splitlines() if line.startswith("| ")][1:] == \
        [["| takd", "3"], ["| dgkd", "1"], ["| ensemble-mean", "1"], ["| ensemble-confidence", "1"]]


def test_seed_papers_table_beside_the_confirmed_accuracies(seed_report: Path) -> None:
    summary = (seed_report / "summary.md").read_text()
    section = summary.split("## The seed paper's table beside ours\n")[1].split("\n## ")[0]
    table = [line for line in section.splitlines() if line.startswith("| ")][1:]
    # takd (tA): test 40, 42, 41 % → mean 41.00 %, s = 1, half 4.3026527·1/√3 = 2.48 points; dgkd: 43, 46, 44 % →
    # 44.33 %, s = √(7/3), half 3.79; ensemble-mean on 2 seeds: 45, 44 % → 44.50 %, s = 1/√2, half 12.7062047/2
    assert table == [
        f"| takd | ≈ 42 % | takd | {TAKD_A.label} | 3 | 41.00 % | [38.52 %, 43.48 %] |",
        f"| dgkd | ≈ 45 % | dgkd | {DGKD.label} | 3 | 44.33 % | [40.54 %, 48.13 %] |",
        f"| ensemble | ≈ 45 % | ensemble-mean | {ENSEMBLE.label} | 2 | 44.50 % | [38.15 %, 50.85 %] |",
        "| ensemble | ≈ 45 % | ensemble-confidence | not confirmed yet: run kdstudy confirm RUN --per-group "
        "--seeds 5 | – | – | – |",
    ]
    assert "Mirzadeh et al. 2020" in section and "Son et al., ICCV 2021" in section


def test_seed_papers_table_only_for_the_seed_papers_setup(seed_run: Path) -> None:
    run = load_run(seed_run)
    assert seed_comparison(run.trials, run.confirm) is not None
    for column, other in (("dataset", "cifar10"), ("teacher", "plain8"), ("student", "plain4")):
        changed = run.trials.copy()
        changed.loc[0, column] = other  # one trial off the seed paper's chain is another study
        assert seed_comparison(changed, run.confirm) is None, column
    without_dgkd = run.trials[run.trials["method"] != "dgkd"]
    assert seed_comparison(without_dgkd, run.confirm) is None


def test_fewer_than_two_paired_seeds_have_no_interval(tmp_path: Path) -> None:
    confirmed = {"tA": (TAKD_A, {1: (0.45, 0.40), 2: None}), "d": (DGKD, {1: (0.48, 0.43), 2: (0.48, 0.44)}),
                 "e": (ENSEMBLE, {2: (0.50, 0.45)})}
    run = write_run(tmp_path, {"tA": TAKD_A, "d": DGKD, "e": ENSEMBLE}, confirmed)
    differences = paired_differences(load_run(run).confirm)
    assert differences[["group_a", "group_b", "n_seeds"]].values.tolist() == \
        [["dgkd", "takd", 1], ["ensemble-mean", "takd", 0], ["dgkd", "ensemble-mean", 1]]
    assert differences[["ci_low", "ci_high", "p_value"]].isna().all().all()
    assert differences["mean_diff"].tolist()[0] == pytest.approx(3.0) and np.isnan(differences.at[1, "mean_diff"])
    summary = (Path(write_report(run).path) / "summary.md").read_text()
    assert ("- dgkd \u2212 takd: +3.0 points on 1 paired seed, no interval (a 95 % CI needs at least 2 paired "
            "seeds)") in summary
    assert "- ensemble-mean \u2212 takd: no seed finished for both configurations, so no difference yet" in summary
    assert "| takd | ≈ 42 % | takd |" in summary and "| 1 | 40.00 % | no interval (1 seed) |" in summary


def test_zero_spread_has_a_point_interval() -> None:
    # every seed the same difference: the interval is that point; p = 0 unless the difference is 0 (then p = 1)
    assert paired_t(np.array([1.5, 1.5, 1.5])) == \
        {"n_seeds": 3, "mean_diff": 1.5, "ci_low": 1.5, "ci_high": 1.5, "p_value": 0.0}
    assert paired_t(np.array([0.0, 0.0]))["p_value"] == 1.0


def test_pairs_are_against_takd_then_the_best_group_each_once() -> None:
    groups = ["nokd", "kd", "takd", "dgkd"]
    assert comparison_pairs(groups, "dgkd") == \
        [("nokd", "takd"), ("kd", "takd"), ("dgkd", "takd"), ("nokd", "dgkd"), ("kd", "dgkd")]
    assert comparison_pairs(groups, "takd") == [("nokd", "takd"), ("kd", "takd"), ("dgkd", "takd")]
    assert comparison_pairs(["kd", "dgkd"], "kd") == [("dgkd", "kd")]  # no takd confirmed
    assert comparison_pairs(["kd"], "kd") == []
    # the best group: by mean validation accuracy, ties to report group order, unscored groups never
    confirmed = pd.DataFrame({"group": ["kd", "takd", "dgkd"], "val_acc_mean": [0.4, 0.5, 0.5]})
    assert best_group(confirmed) == "takd"
    assert best_group(confirmed.assign(val_acc_mean=[0.4, float("nan"), 0.3])) == "kd"


# ------------------------------------------------------------------------------------- --per-group job planning

def _trial(trial_id: str, cfg: ChainConfig, val: float, test: float) -> dict[str, Any]:
    return rows.trial_row(trial_id, cfg, schema.FINISHED,
                          summary={"student_val_acc": val, "student_test_acc": test, "train_flops": 10})


def test_per_group_confirms_the_best_of_each_group_on_shared_seeds() -> None:
    trials = pd.DataFrame([_trial("a", TAKD_A.replace(seed=4), 0.50, 0.1), _trial("b", TAKD_B, 0.40, 0.9),
                           _trial("d", DGKD, 0.45, 0.2), _trial("e", ENSEMBLE, 0.30, 0.3),
                           _trial("k", ChainConfig(method="kd", params=KD), 0.35, 0.4)])
    jobs = confirmation_jobs(trials, None, seeds=2, per_group=True)
    # one configuration per group (takd's best by validation, not b's better test), report group order; the
    # study used seeds 0-4, so every group gets seeds 5 and 6
    assert [(j["source_trial_id"], j["chain"]["seed"]) for j in jobs] == \
        [("k", 5), ("k", 6), ("a", 5), ("a", 6), ("d", 5), ("d", 6), ("e", 5), ("e", 6)]
    again = confirmation_jobs(trials, None, seeds=3, done={(j["source_trial_id"], j["chain"]["seed"]) for j in jobs},
                              per_group=True)
    assert [(j["source_trial_id"], j["chain"]["seed"]) for j in again] == [("k", 7), ("a", 7), ("d", 7), ("e", 7)]


def test_top_and_per_group_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["confirm", str(tmp_path), "--top", "2", "--per-group"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdstudy confirm: top: --top and --per-group exclude each other") and err.count("\n") == 1


def test_a_difference_that_rounds_to_zero_reads_plus_zero() -> None:
    row = {"group_a": "dgkd", "group_b": "takd", "n_seeds": 5, "mean_diff": -0.04, "ci_low": -0.8, "ci_high": 0.04}
    assert difference_sentence(row) == "dgkd \u2212 takd: +0.0 points, 95 % CI [-0.8, +0.0], 5 paired seeds"
