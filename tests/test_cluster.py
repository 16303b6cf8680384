"""Hops shared across a real 2-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head without CPUs
and two 1-CPU nodes, so two concurrent trials run on different nodes), and a node killed while it holds a claim:
one console line says so."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest

from tests.analysis_fixtures import ROOT
from tests.drivers import Driver


@pytest.fixture()
def two_nodes() -> Iterator[tuple[object, list]]:
    from ray.cluster_utils import Cluster

    # the cluster knows a killed node is dead within about a second (Ray's default: 5 missed health checks, 3 s
    # apart), while the study it kills trials of still runs
    checks = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": checks})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, nodes
    finally:
        cluster.shutdown()


def _driver(spec: Path, storage: Path, name: str, address: str, env: dict[str, str]) -> Driver:
    argv = ["run", "--spec", str(spec), "--storage", str(storage), "--name", name, "--address", address,
            "--trials", "2", "--max-concurrent", "2", "--max-failures", "1", "--methods", "takd,dgkd", "--no-report"]
    return Driver(argv, {**os.environ, **env}, ROOT)


def _teachers(run: Path) -> list[dict]:
    return [h for h in pq.read_table(run / "results" / "hops").to_pylist() if h["role"] == "teacher"]


def test_trials_on_two_nodes_train_the_teacher_once_even_when_its_claim_holder_dies(
        two_nodes: tuple, spec_file: Path, tmp_path: Path) -> None:
    cluster, nodes = two_nodes
    # both trials start together, one per node, and need the same teacher: one trains it, the other waits
    driver = _driver(spec_file, tmp_path, "shared", cluster.address, {})
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    teachers = _teachers(tmp_path / "shared")
    assert len(teachers) == 2 and sum(not t["reused"] for t in teachers) == 1

    # the node holding the teacher's claim dies before it trains: the waiting trial takes the claim once its
    # lease (3 s here) expires, and the killed trial is retried on the surviving node
    faults = tmp_path / "faults"
    faults.mkdir()
    env = {"KDSTUDY_FAULT": "claimed", "KDSTUDY_FAULT_DIR": str(faults), "KDSTUDY_CLAIM_LEASE_S": "3"}
    driver = _driver(spec_file, tmp_path, "dead-holder", cluster.address, env)
    marker = faults / "claimed.fired"
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.1)
    holder = json.loads(marker.read_text())["node"]
    dead = next(n for n in nodes if n.node_id == holder)
    cluster.remove_node(dead, allow_graceful=False)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    # the death is one line of the study's, naming the node; none of Ray's dump of the dead raylet's last log lines
    console = out + err
    deaths = [line for line in console.splitlines() if " died: " in line]
    assert deaths == [f"node {dead.node_ip_address}:{dead.node_manager_port} died: its trials will be retried"]
    assert not [notice for notice in ("[state-dump]", "Raylet is terminated", "marked dead") if notice in console], \
        console
    rows = pq.read_table(tmp_path / "dead-holder" / "results" / "trials").to_pylist()
    assert sorted(r["status"] for r in rows) == ["TERMINATED", "TERMINATED"]
    teachers = _teachers(tmp_path / "dead-holder")
    assert sum(not t["reused"] for t in teachers) == 1  # trained once, by a trial on the surviving node
