"""The hops of a chain and their content hashes: a hop's identity is everything that shapes its weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from trainables.config import ChainConfig
from trainables.methods import method_class

# Bump when a change to the training code alters the weights a given hop produces.
TRAINING_CODE_VERSION = 1


@dataclass(frozen=True)
class HopPlan:
    index: int
    arch: str
    role: str  # teacher | ta | student
    teachers: tuple[int, ...]  # chain indices of the upper models teaching this hop
    key: str  # content hash: same key ⇒ same weights, so a store may hand back a trained hop

    @property
    def seed(self) -> int:
        """Seeds the hop's init, shuffling and dropping from its own identity, so a hop trained inside any chain
        equals the same hop trained inside another — which is what makes stored hops safe to reuse."""
        return int(self.key[:12], 16)


def plan_chain(cfg: ChainConfig) -> list[HopPlan]:
    method = method_class(cfg.method)
    archs = cfg.archs
    plans: list[HopPlan] = []
    for index, arch in enumerate(archs):
        teachers = tuple(method.teacher_indices(index))
        role = "student" if index == len(archs) - 1 else ("teacher" if index == 0 else "ta")
        key = _hop_key(cfg, arch, [plans[t].key for t in teachers])
        plans.append(HopPlan(index, arch, role, teachers, key))
    return plans


def _hop_key(cfg: ChainConfig, arch: str, teacher_keys: list[str]) -> str:
    identity = {
        "version": TRAINING_CODE_VERSION,
        "arch": arch,
        "width": cfg.width,
        "data": [cfg.dataset, cfg.val_size, cfg.train_size, cfg.augment],
        "recipe": [cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_schedule, cfg.momentum, cfg.weight_decay],
        "seed": cfg.seed,
        "teachers": teacher_keys,
        "teaching": teaching_identity(cfg, len(teacher_keys)),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def teaching_identity(cfg: ChainConfig, num_teachers: int) -> dict[str, object]:
    """Only the settings that matter for this many teachers, so that equivalent hops share a key
    (e.g. a first TA is plain KD from the teacher under TAKD, DGKD and ensemble alike)."""
    if num_teachers == 0:
        return {"kind": "labels"}
    base = {"temperature": cfg.temperature, "alpha": cfg.alpha}
    if num_teachers == 1:
        return {"kind": "kd", **base}
    if cfg.method == "dgkd":
        return {"kind": "dgkd", **base, "drop": min(cfg.drop, num_teachers - 1)}
    return {"kind": "ensemble", **base, "weighting": cfg.weighting, "space": cfg.space}
