"""What training a chain costs, planned without training it or loading its data: each hop's FLOPs from scratch, as
the trainer's counters count them (`trainables.loop.Counters`).

A study reads it for a stopped trial's full-fidelity cost and for its planned cost before it runs, so it costs a
dictionary lookup per hop once each model's inference FLOPs are known (counted once per architecture, width,
initialisation and dataset shape). Per hop:

    epochs · (train · 3·flops + val · flops)     its steps (forward + backward ≈ 3 forwards) and its validation
  + train · Σ teacher_flops                      its teachers' outputs, computed once and cached (unaugmented), or
      (epochs times, with augmentation,          on every batch; DGKD's dropped teachers are not forwarded, so
       DGKD's mean share of active teachers)     per batch they count at the share kept on average
  + fit · Σ teacher_flops                        the teachers' one-off forwards a method fits on (the learned
                                                 ensemble's stacking weights)

`train`, `val` and `fit` are the splits' sizes, as `load_dataset` draws them; `flops` is one image's forward through a
model, `model_flops` by default — another `ForwardCost` prices the same plan in its own unit (`bench/gpu_check.py`
prices it in seconds measured per architecture on a GPU). The epochs are the hop's own
(`ChainConfig.hop_epochs`); a hop that patience ends early costs less than planned. Unaugmented, the plan equals
the trained hop's `train_flops` exactly; with augmentation and DGKD's dropping, on average.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

from trainables.config import ChainConfig
from trainables.data import dataset_shape, split_sizes
from trainables.models import build_model, inference_flops


# One image's forward through a model: (arch, width, init, channels, image_size, num_classes) -> cost.
ForwardCost = Callable[[str, float, str, int, int, int], float]


@dataclass(frozen=True)
class PlannedHop:
    """A hop's planned cost, in FLOPs (or in the unit of the `ForwardCost` it was planned with)."""

    index: int
    arch: str
    epochs: int
    epoch_flops: float  # per epoch: its steps, its validation, and its teachers' forwards when they run per batch
    once_flops: float  # once per training: its teachers' cached outputs and what its method fits (again on a resume)

    @property
    def flops(self) -> float:
        """Its training FLOPs from scratch."""
        return self.epochs * self.epoch_flops + self.once_flops


def planned_hops(cfg: ChainConfig, forward_cost: ForwardCost | None = None) -> list[PlannedHop]:
    """Each hop of `cfg`'s chain, top first, with what training it from scratch costs (`forward_cost`: FLOPs by
    default)."""
    shape = dataset_shape(cfg.dataset)
    n_train, n_val, n_fit = split_sizes(cfg.dataset, cfg.val_holdout, cfg.fit_holdout, cfg.train_size)
    flops = [(forward_cost or model_flops)(arch, cfg.width, cfg.init, shape.channels, shape.image_size, shape.num_classes)
             for arch in cfg.archs]
    hops = []
    for index, arch in enumerate(cfg.archs):
        teachers = cfg.method_class.teacher_indices(index)
        method = cfg.method_class.teaching(cfg, len(teachers))
        teacher_flops = sum(flops[t] for t in teachers)
        fit = n_fit * teacher_flops if teachers and method.fits_on_fit_split(cfg.params) else 0
        own = n_train * 3 * flops[index] + n_val * flops[index]
        if cfg.augment and teachers:
            # per batch, the active teachers: each of them with the same chance
            per_batch = n_train * teacher_flops * method.mean_active_teachers() / len(teachers)
            hops.append(PlannedHop(index, arch, cfg.hop_epochs(index), own + per_batch, fit))
        else:
            hops.append(PlannedHop(index, arch, cfg.hop_epochs(index), own, n_train * teacher_flops + fit))
    return hops


@lru_cache(maxsize=None)
def model_flops(arch: str, width: float, init: str, channels: int, image_size: int, num_classes: int) -> int:
    """One image's inference FLOPs of `arch`, as the trainer counts them (`inference_flops`). Counted on the meta
    device: by shapes alone, with no weights to allocate or initialise (and no draw from torch's global stream)."""
    with torch.device("meta"):
        model = build_model(arch, num_classes, channels, image_size, width, init)
    return inference_flops(model, channels, image_size)
