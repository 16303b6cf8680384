"""Core data containers and the stratified splitting used for every hold-out.

Images are kept as ``uint8`` (a quarter of float32), so whole datasets can live on the GPU; a chain normalises
each split it trains or evaluates on once, in the dtype it computes in (`DataBundle.images`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .images import normalise


@dataclass(frozen=True, eq=False)  # eq=False: tensor __eq__ is elementwise, not a bool
class Split:
    """One split of a dataset: uint8 images (N, C, H, W) and int64 labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"Split.x: expected uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1:
            raise ValueError(f"Split.y: expected int64 (N,), got {self.y.dtype} {tuple(self.y.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"Split.x has {self.x.shape[0]} rows but Split.y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(x=self.x.to(device), y=self.y.to(device))


@dataclass(frozen=True, eq=False)
class DataBundle:
    """Train/val/fit/test splits plus the metadata models and batching need.

    `val` selects every hop's best epoch and ranks configurations; `fit` (empty unless the chain sets `fit_size`)
    is what a method fits its own weights on (the learned ensemble's stacking), so that no number read from
    validation was fitted on it; no hop trains on either."""

    name: str
    train: Split
    val: Split
    fit: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # (split, dtype) -> the split's normalised images; splits hash by identity. Not copied by `to` or `replace`.
    _images: dict[tuple[Split, torch.dtype], torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def images(self, split: Split, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """`split`'s images normalised, once per bundle: every epoch and every evaluation reads the same tensor."""
        key = (split, dtype)
        if key not in self._images:
            self._images[key] = normalise(split.x, self.mean, self.std, dtype)
        return self._images[key]

    def to(self, device: torch.device | str) -> DataBundle:
        return replace(self, train=self.train.to(device), val=self.val.to(device), fit=self.fit.to(device),
                       test=self.test.to(device))


def _holdout_quotas(counts: torch.Tensor, n_holdout: int, gen: torch.Generator) -> torch.Tensor:
    """Per-class hold-out sizes by largest remainder: each is floor or ceil of proportional."""
    total = int(counts.sum())
    quotas = counts * n_holdout // total
    missing = n_holdout - int(quotas.sum())
    if missing > 0:
        # Seeded shuffle before the stable sort so equal remainders don't always favour low class ids.
        order = torch.randperm(len(counts), generator=gen)
        remainders = (counts * n_holdout % total)[order]
        ranked = order[torch.sort(remainders, descending=True, stable=True).indices]
        quotas[ranked[:missing]] += 1
    return quotas


def stratified_split(y: torch.Tensor, n_holdout: int, generator_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions ``0..len(y)-1`` into (keep_idx, holdout_idx), stratified by label.

    Deterministic in ``generator_seed``; each class contributes floor or ceil of its
    proportional share to the hold-out; both index tensors are sorted int64 on CPU.
    """
    y = torch.as_tensor(y).reshape(-1).cpu()
    n = int(y.shape[0])
    if not 0 <= n_holdout <= n:
        raise ValueError(f"n_holdout: expected a value in [0, {n}], got {n_holdout}")
    gen = torch.Generator().manual_seed(int(generator_seed))
    classes, counts = torch.unique(y, return_counts=True)
    if n == 0:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone()
    quotas = _holdout_quotas(counts, n_holdout, gen)
    holdout_parts = []
    for cls, quota in zip(classes.tolist(), quotas.tolist()):
        members = torch.nonzero(y == cls, as_tuple=False).reshape(-1)
        chosen = members[torch.randperm(len(members), generator=gen)[:quota]]
        holdout_parts.append(chosen)
    holdout = torch.sort(torch.cat(holdout_parts)).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[holdout] = False
    keep = torch.nonzero(mask, as_tuple=False).reshape(-1)
    return keep, holdout
