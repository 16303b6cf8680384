"""The hops of a chain and their content hashes: a hop's identity is everything that shapes its weights.

A hop's key is the hash of its identity and of `TRAINING_CODE_VERSION`; equal keys mean equal weights, so a model
store may hand a trained hop to any chain that plans the same key. The identity holds:

- `arch`: the architecture, the width multiplier and the initialisation;
- `data`: the dataset, the validation hold-out as a count of images (`val_size` 0.1 and the count it rounds to
  hold out the same images), `train_size` and `augment`;
- `fit`: the fit hold-out as a count of images (`fit_size` 0.05 and its count are one hop), when there is one;
- `recipe`: batch size, lr and its schedule, momentum, weight decay, the precision the hop computes in, resolved
  on the device the chain runs on (`auto` is bf16 on CUDA and fp32 on CPU: an `auto` hop on CPU is an `fp32` hop,
  and a bf16 hop is never taken for an fp32 one), and `patience` when it is on. The device itself is not in it;
- `epochs`: the hop's own epochs (`ChainConfig.hop_epochs`: the teacher's `epochs`, `lower_epochs` below it);
- `seed`: the chain's seed;
- `teachers`: the keys of the upper models that teach it;
- `teaching`: what the KD method declares (`KDMethod.identity`): its name and the settings that can change the
  weights — at α = 0 not the temperature or the settings that only shape the distillation term, since that term
  is multiplied by zero; DGKD's `drop` stays, as it draws from the hop's random stream.

A hop's seed is the hash of its identity without its epochs, its patience and the code version (its teachers'
seeds likewise), so a hop trained for 4 epochs is the first 4 epochs of the same hop trained for 8: at a constant
lr, the longer one resumes the shorter one's state, which a store keeps under the hop's `resume_key` (its identity
without its epochs, with its teachers' full keys and the version).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from trainables.config import ChainConfig
from trainables.data import holdout_count
from trainables.device import resolve_device, resolve_precision

# Bump when a change to the training code alters the weights a given hop produces, so that no stored hop trained
# the old way is reused. 2: reference-parity plain CNNs (init, conv bias, DGKD's odd depths), kl_reduction, precision.
# 3: keys hold the resolved precision and hold-out count, and leave out settings α = 0 makes irrelevant.
# 4: the learned ensemble fits its weights on the fit hold-out (`fit_size`), no longer on the validation split.
# 5: seeds leave out the hop's epochs (and patience), so that a shorter training of a hop is a prefix of a longer one.
TRAINING_CODE_VERSION = 5


@dataclass(frozen=True)
class HopPlan:
    index: int
    arch: str
    role: str  # teacher | ta | student
    teachers: tuple[int, ...]  # chain indices of the upper models teaching this hop
    key: str  # content hash: same key ⇒ same weights, so a store may hand back a trained hop
    seed: int  # seeds the hop's init, shuffling and dropping
    epochs: int  # the epochs it trains (`ChainConfig.hop_epochs`)
    resume_key: str  # its key without its epochs: where a store keeps the state a longer training resumes


def plan_chain(cfg: ChainConfig, device: torch.device | None = None) -> list[HopPlan]:
    """The chain's hops, top first. `device`: where the chain runs (by default `cfg.device` resolved here, as
    `train_chain` resolves it), which decides what precision `auto` computes in."""
    method = cfg.method_class
    common = _chain_identity(cfg, device if device is not None else resolve_device(cfg.device))
    plans: list[HopPlan] = []
    seed_digests: list[str] = []
    for index, arch in enumerate(cfg.archs):
        teachers = tuple(method.teacher_indices(index))
        role = "student" if index == len(cfg.archs) - 1 else ("teacher" if index == 0 else "ta")
        hop = {**common, "arch": [arch, cfg.width, cfg.init],
               "teaching": method.teaching(cfg, len(teachers)).identity()}
        # Two digests of the same identity. The seed comes from what the hop is, not from the code version or how
        # long it trains: a hop trained inside any chain equals the same hop trained inside another (which makes
        # stored hops safe to reuse), a longer training continues a shorter one, and a version bump only
        # invalidates stored hops, it does not reshuffle every seed.
        seed_digests.append(_digest({**hop, "teachers": [seed_digests[t] for t in teachers]}))
        resumable = {**hop, "recipe": [*hop["recipe"], *([cfg.patience] if cfg.patience else [])],
                     "teachers": [plans[t].key for t in teachers], "version": TRAINING_CODE_VERSION}
        epochs = cfg.hop_epochs(index)
        plans.append(HopPlan(index, arch, role, teachers, key=_digest({**resumable, "epochs": epochs}),
                             seed=int(seed_digests[-1][:12], 16), epochs=epochs, resume_key=_digest(resumable)))
    return plans


def _chain_identity(cfg: ChainConfig, device: torch.device) -> dict[str, Any]:
    """The part of every hop's identity that the chain's settings give, each as the value training uses."""
    fit = holdout_count(cfg.dataset, cfg.fit_holdout)
    return {
        "data": [cfg.dataset, holdout_count(cfg.dataset, cfg.val_holdout), cfg.train_size, cfg.augment],
        # Only where there is one: a chain without a fit hold-out keeps the seeds it had before they existed.
        **({"fit": fit} if fit else {}),
        "recipe": [cfg.batch_size, cfg.lr, cfg.lr_schedule, cfg.momentum, cfg.weight_decay,
                   resolve_precision(device, cfg.precision)],
        "seed": cfg.seed,
    }


def _digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
