"""Joining Ray, the one way every study command does it, and checking that a trial's request can ever run."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

from trainables.typed import InputError

# What Ray pushes to every driver when a node dies: each agent of a node whose raylet died sends the raylet's last
# log lines ("Raylet is terminated. … [state-dump] …", ≈ 30 lines), and the GCS sends a notice of a node "marked
# dead" after missed health checks. The study says it in one line of its own (study.recorder.NodeDeaths).
NODE_DEATH_NOTICES = ("Raylet is terminated", "has been marked dead")


def connect(address: str | None) -> None:
    """Joins the cluster at `address` ("auto": a running one), or starts a local one. Quiet: Ray's and the
    workers' own console output would bury the study's one line per trial."""
    _quiet_node_deaths()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    logging.getLogger("ray").setLevel(logging.ERROR)


def _quiet_node_deaths() -> None:
    """The driver's error listener (a thread `ray.init` starts whatever `log_to_driver` says) prints what it
    receives through this module function of Ray, looked up at each call: the one place to leave node deaths out,
    and it also covers a Ray that was initialised before `connect` (the tests' session cluster).

    Ray's only private member the study uses (checked against Ray 2.60): the listener prints to `sys.stdout`, not
    through logging, and neither `log_to_driver` nor any documented RAY_* setting turns it off."""
    import ray._private.worker

    printer = ray._private.worker.print_to_stdstream
    if getattr(printer, "leaves_out_node_deaths", False):
        return

    def without_node_deaths(data: dict[str, Any], ignore_prefix: bool) -> None:
        if not any(notice in line for line in data.get("lines", ()) for notice in NODE_DEATH_NOTICES):
            printer(data, ignore_prefix=ignore_prefix)

    without_node_deaths.leaves_out_node_deaths = True  # type: ignore[attr-defined]
    ray._private.worker.print_to_stdstream = without_node_deaths


def alive_nodes() -> dict[str, str]:
    """The cluster's live nodes: node id → address (the raylet's host:port, distinct for nodes on one machine)."""
    return {n["NodeID"]: f"{n['NodeManagerAddress']}:{n['NodeManagerPort']}" for n in ray.nodes() if n.get("Alive")}


class NodeWatch:
    """The cluster's nodes as last seen; `deaths()` gives the addresses of those gone since."""

    def __init__(self) -> None:
        self.alive = alive_nodes()

    def deaths(self) -> list[str]:
        now = alive_nodes()
        gone = [address for node, address in self.alive.items() if node not in now]
        self.alive = now
        return gone


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
            raise InputError(name, problem=f"{wanted:g} per trial, but {where} {has}")
