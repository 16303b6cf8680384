"""Mini-batch iteration over a split's normalised images (`DataBundle.images`), on the images' device.

The optional augmentation (TAKD's pad-4 random crop + horizontal flip, off by default) is one vectorised gather, with
all randomness drawn from the caller's generator for reproducibility; it pads with zeros after normalisation, i.e.
with the mean image, as the reference code's transforms do.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

_PAD = 4


def _order(n: int, shuffle: bool, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n, dtype=torch.int64, device=device)
    # Drawn on CPU so the order is identical whatever device the data lives on.
    return torch.randperm(n, generator=generator, device="cpu").to(device)


def augment_batch(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop from a zero-padded image plus random horizontal flip, per sample.

    One advanced-indexing gather: row/column index grids are shifted by each sample's
    offset, and the column grid is reversed for flipped samples.
    """
    batch, channels, height, width = x.shape
    device = x.device
    padded = F.pad(x, (_PAD, _PAD, _PAD, _PAD))
    offsets = torch.randint(0, 2 * _PAD + 1, (2, batch), generator=generator).to(device)
    flip = (torch.rand(batch, generator=generator) < 0.5).to(device)
    rows = offsets[0, :, None] + torch.arange(height, device=device)
    cols_base = torch.arange(width, device=device)
    cols = offsets[1, :, None] + torch.where(flip[:, None], cols_base.flip(0), cols_base)
    b_idx = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    c_idx = torch.arange(channels, device=device).view(1, channels, 1, 1)
    return padded[b_idx, c_idx, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    augment: bool = False,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (x, y int64, idx int64 positions into the split) on the images' device; x in the images' dtype."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    device = images.device
    n = len(labels)
    order = _order(n, shuffle, generator, device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        if augment:
            x = augment_batch(x, generator)
        yield x, labels[idx], idx
