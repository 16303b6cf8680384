"""`kdstudy chain`: the JSON it writes, and bad input rejected with exit code 2 and nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.main import main

TINY = ["--train-size", "300", "--val-size", "100", "--width", "0.25", "--epochs", "1", "--lr", "0.05",
        "--no-progress"]


def test_chain_writes_json_with_every_hop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "chain.json"
    code = main(["chain", "--teacher", "plain6", "--tas", "plain4,plain3", "--student", "plain2",
                 "--method", "ensemble", "--weighting", "learned", "--space", "logit", "--fit-size", "0.05",
                 "--out", str(out), *TINY])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["config"]["ta_depths"] == [4, 3] and record["config"]["space"] == "logit"
    assert record["config"]["fit_size"] == 0.05
    assert [h["arch"] for h in record["hops"]] == ["plain6", "plain4", "plain3", "plain2"]
    assert [h["role"] for h in record["hops"]] == ["teacher", "ta", "ta", "student"]
    for hop in record["hops"]:
        assert {"val_acc", "test_acc", "params", "flops", "train_flops", "train_seconds"} <= hop.keys()
        assert 0 <= hop["test_predictions"]["errors"] <= 1000
    assert len(record["hops"][-1]["ensemble_weights"]) == 3
    assert record["hops"][0]["test_predictions"]["top_model_errors_repeated"] == 1.0
    table = capsys.readouterr().out
    assert "student" in table and "plain2" in table


def test_config_file_with_flag_overrides(tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"config": {"method": "kd", "teacher": "plain4", "student": "plain2",
                                             "temperature": 2.0}}))
    out = tmp_path / "out.json"
    assert main(["chain", "--config", str(config), "--alpha", "0.9", "--out", str(out), *TINY]) == 0
    written = json.loads(out.read_text())["config"]
    assert (written["teacher"], written["temperature"], written["alpha"]) == ("plain4", 2.0, 0.9)


@pytest.mark.parametrize("flags, field", [
    (["--alpha", "1.5"], "alpha"),
    (["--temperature", "0"], "temperature"),
    (["--method", "takd", "--tas", "4,6"], "ta_depths"),
    (["--method", "takd", "--tas", "six"], "tas"),
    (["--method", "dgkd", "--tas", "6", "--drop", "2"], "drop"),
    (["--method", "fitnet"], "method"),
    (["--dataset", "cifar100", "--data-dir", "/nonexistent"], "data_dir"),
    (["--teacher", "vgg19"], "teacher"),
    (["--method", "ensemble", "--tas", "6", "--weighting", "learned"], "fit_size"),
    (["--fit-size", "-1"], "fit_size"),
])
def test_bad_input_exits_2_and_writes_nothing(flags: list[str], field: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.json"
    assert main(["chain", *flags, "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kdstudy chain: {field}: ") and "\n" not in err
    assert not out.exists()


def test_unwritable_out_is_rejected_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["chain", "--out", str(tmp_path / "missing" / "x.json"), *TINY]) == 2
    assert capsys.readouterr().err.startswith("kdstudy chain: out: ")


def test_a_diverging_chain_exits_1_naming_the_hop_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.json"
    assert main(["chain", "--teacher", "plain4", "--out", str(out), *TINY, "--lr", "50"]) == 1
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"kdstudy chain: diverged: hop \d \((teacher|student) plain[42]\), epoch 1: training loss .+",
                        err), err
    assert "\n" not in err and not out.exists()
