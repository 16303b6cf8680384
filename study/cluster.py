"""Joining Ray, the one way every study command does it, and checking that a trial's request can ever run."""

from __future__ import annotations

import logging
import os

import ray

from study.errors import UsageError


def connect(address: str | None) -> None:
    """Joins the cluster at `address` ("auto": a running one), or starts a local one. Quiet: Ray's and the
    workers' own console output would bury the study's one line per trial."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    logging.getLogger("ray").setLevel(logging.ERROR)


def local_capacity() -> dict[str, float]:
    """What this machine could give one trial, without starting Ray."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def cluster_capacity() -> dict[str, float]:
    """The most one node of the connected cluster can give a trial (a trial's resources come from one node)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return {kind: max((n.get(kind, 0.0) for n in nodes), default=0.0) for kind in ("CPU", "GPU")}


def check_resources(cpus: float, gpus: float, address: str | None) -> None:
    """A trial asking for more than a node has would wait forever: exit 2 before any trial starts instead."""
    if address is None:
        check_request(cpus, gpus, local_capacity(), "this machine")
        return
    connect(address)
    check_request(cpus, gpus, cluster_capacity(), "the largest node of the cluster")


def check_request(cpus: float, gpus: float, capacity: dict[str, float], where: str) -> None:
    """A trial that asks for more than `capacity` would wait forever: refuse it before any trial starts."""
    for name, wanted, kind in (("cpus_per_trial", cpus, "CPU"), ("gpus_per_trial", gpus, "GPU")):
        have = capacity.get(kind, 0.0)
        if wanted > have:
            has = f"has {have:g} {kind}s" if have else f"has no {kind}"
            raise UsageError(f"{name}: {wanted:g} per trial, but {where} {has}")
