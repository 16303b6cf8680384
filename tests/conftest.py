"""Shared fixtures: one real local Ray cluster for the whole test session, and a real tiny study on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# The device the chain and study tests train on: "cpu" here; bench/gpu_check.py runs them again with "cuda".
DEVICE = os.environ.get("KDSTUDY_TEST_DEVICE", "cpu")
ON_GPU = DEVICE.startswith("cuda")
# Local test clusters: a token found in ~/.ray would turn on token auth, and a second node could not join.
os.environ["RAY_AUTH_MODE"] = "disabled"
# The S3 tests talk to a local S3 server that accepts any key; set before Ray starts so trials see them too
# (and pyarrow never asks an instance-metadata service for credentials). Set, not defaulted: tests never send a
# developer's own keys, and the secret is one a test can look for in everything a study wrote.
PLANTED_SECRET = "kdstudy-planted-secret-7Qx3v9"
os.environ["AWS_ACCESS_KEY_ID"] = "kdstudy-test"
os.environ["AWS_SECRET_ACCESS_KEY"] = PLANTED_SECRET
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The session's cluster; yields its address, so subprocess drivers can join it with --address."""
    import ray

    # "local": a cluster of its own, even when another one (`ray start`, a 2-node test's) runs on this machine
    context = ray.init(address="local", num_cpus=2, num_gpus=1 if ON_GPU else 0, include_dashboard=False,
                       configure_logging=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_session_dir(ray_cluster: str) -> Path:
    """The session cluster's folder: its logs (every trial's output) and Tune's local staging."""
    import ray

    return Path(ray.init(address=ray_cluster, ignore_reinit_error=True).address_info["session_dir"])


TINY_SPEC = f"""
teacher = "plain6"
student = "plain2"
ta_candidates = [4, 3]
epochs = 1
trials = 5
max_concurrent = 2
max_failures = 0
gpus_per_trial = {0.25 if ON_GPU else 0}

[chain]
width = 0.25
train_size = 300
val_size = 100
lr = 0.05
device = "{DEVICE}"
"""


@pytest.fixture(scope="session")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="session")
def tiny_study(ray_cluster: str, spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 5-trial study on tiny data, run once per session: `<storage>/tiny`, with all its Parquet files."""
    from cli.main import main

    storage = tmp_path_factory.mktemp("storage")
    assert main(["run", "--spec", str(spec_file), "--storage", str(storage), "--name", "tiny", "--no-report"]) == 0
    return storage / "tiny"
