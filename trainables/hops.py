"""The hops of a chain and their content hashes: a hop's identity is everything that shapes its weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from trainables.config import ChainConfig

# Bump when a change to the training code alters the weights a given hop produces, so that no stored hop trained
# the old way is reused. 2: reference-parity plain CNNs (init, conv bias, DGKD's odd depths), kl_reduction, precision.
TRAINING_CODE_VERSION = 2


@dataclass(frozen=True)
class HopPlan:
    index: int
    arch: str
    role: str  # teacher | ta | student
    teachers: tuple[int, ...]  # chain indices of the upper models teaching this hop
    key: str  # content hash: same key ⇒ same weights, so a store may hand back a trained hop
    seed: int  # seeds the hop's init, shuffling and dropping


def plan_chain(cfg: ChainConfig) -> list[HopPlan]:
    method = cfg.method_class
    archs = cfg.archs
    plans: list[HopPlan] = []
    seed_digests: list[str] = []
    for index, arch in enumerate(archs):
        teachers = tuple(method.teacher_indices(index))
        role = "student" if index == len(archs) - 1 else ("teacher" if index == 0 else "ta")
        teaching = method.teaching(cfg, len(teachers)).identity()
        # Two digests of the same identity. The seed comes from what the hop is, not from the code version: a hop
        # trained inside any chain equals the same hop trained inside another (which makes stored hops safe to
        # reuse), and a version bump only invalidates stored hops, it does not reshuffle every seed.
        seed_digests.append(_digest(_hop_identity(cfg, arch, [seed_digests[t] for t in teachers], teaching)))
        key = _digest({**_hop_identity(cfg, arch, [plans[t].key for t in teachers], teaching),
                       "version": TRAINING_CODE_VERSION})
        plans.append(HopPlan(index, arch, role, teachers, key, int(seed_digests[-1][:12], 16)))
    return plans


def _hop_identity(cfg: ChainConfig, arch: str, teacher_keys: list[str], teaching: dict[str, Any]) -> dict[str, Any]:
    return {
        "arch": [arch, cfg.width, cfg.init],
        "data": [cfg.dataset, cfg.val_size, cfg.train_size, cfg.augment],
        "recipe": [cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_schedule, cfg.momentum, cfg.weight_decay,
                   cfg.precision],
        "seed": cfg.seed,
        "teachers": teacher_keys,
        "teaching": teaching,
    }


def _digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
