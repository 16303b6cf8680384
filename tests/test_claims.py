"""One claim board per run, kept on the run's storage: a hop is trained once per run whatever trains it at the same
time — trials of one session, or two commands each on a Ray cluster of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq

from runstore.storage import locate
from study.claims import StorageClaims
from tests.analysis_fixtures import ROOT

KEY = "0123abcd"


def _holding(claims: StorageClaims, held: threading.Event, release: threading.Event) -> threading.Thread:
    def hold() -> None:
        with claims.hold(KEY):
            held.set()
            release.wait()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_a_claim_is_held_by_one_process_at_a_time_and_passes_on_when_released(tmp_path: Path) -> None:
    claims = StorageClaims(locate(str(tmp_path / "claims")), lease_s=0.6)
    first_held, second_held, release_first, release_second = (threading.Event() for _ in range(4))
    first = _holding(claims, first_held, release_first)
    assert first_held.wait(10)
    second = _holding(claims, second_held, release_second)
    # several leases pass: the holder's renewals keep the waiter out
    assert not second_held.wait(2.0)
    release_first.set()
    first.join(10)
    assert second_held.wait(10)
    release_second.set()
    second.join(10)
    assert not (tmp_path / "claims" / f"{KEY}.json").exists()  # released: nothing left behind


def test_a_claim_whose_holder_died_is_taken_over_after_one_lease(tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    folder.mkdir()
    (folder / f"{KEY}.json").write_text(json.dumps({"holder": "dead:1:x", "beat": 7}))  # never renewed
    claims = StorageClaims(locate(str(folder)), lease_s=0.3)
    with claims.hold(KEY):
        assert json.loads((folder / f"{KEY}.json").read_text())["holder"] != "dead:1:x"


def _confirm(run: Path, faults: Path) -> subprocess.Popen:
    # --address local: each command on a Ray cluster of its own, as two commands started without --address are
    env = {**os.environ, "KDSTUDY_FAULT": "stored:count", "KDSTUDY_FAULT_DIR": str(faults)}
    argv = [sys.executable, "-m", "cli.main", "confirm", str(run), "--top", "1", "--seeds", "1",
            "--address", "local"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_commands_on_two_ray_clusters_train_each_hop_of_the_run_once(tiny_study: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_study, tmp_path / "tiny"))
    faults = tmp_path / "faults"
    faults.mkdir()
    commands = [_confirm(run, faults) for _ in range(2)]
    for command in commands:
        out, err = command.communicate(timeout=300)
        assert command.returncode == 0, err
    stored = [json.loads(line)["detail"] for line in (faults / "stored.count").read_text().splitlines()]
    assert stored and len(stored) == len(set(stored))  # every hop trained and stored by one command only
    rows = pq.read_table(run / "results" / "confirm").to_pylist()
    assert {r["status"] for r in rows} == {"TERMINATED"}


def test_a_claim_whose_holder_died_on_this_machine_is_free_at_once(tmp_path: Path) -> None:
    from study.claims import MACHINE

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "claims"
    folder.mkdir()
    lease = {"holder": "killed", "machine": MACHINE, "pid": int(gone.stdout), "beat": 3}
    (folder / f"{KEY}.json").write_text(json.dumps(lease))
    claims = StorageClaims(locate(str(folder)), lease_s=600)  # its lease would last ten minutes
    held, release = threading.Event(), threading.Event()
    holding = _holding(claims, held, release)
    assert held.wait(30)
    release.set()
    holding.join(10)
