"""When a hop's training has blown up, and the error that stops it at once.

The rule: a hop diverges when the mean training loss over a window of steps is not finite, exceeds
`EXPLOSION_FACTOR` × the hop's first window (floored at 1: at initialisation a classifier's cross-entropy is about
ln C and KD terms are no larger, so a healthy hop never climbs two orders of magnitude above where it started), or
exceeds `LOSS_CEILING`, which no sane normalised loss reaches (it catches a hop that is already exploding in its
first window). Windows of `WINDOW` steps, and every epoch's end, cost one host–device sync each instead of one per
step; a non-finite loss propagates into the weights within a step, so waiting a window loses nothing.
"""

from __future__ import annotations

import math

from torch import Tensor

WINDOW = 16
EXPLOSION_FACTOR = 100.0
LOSS_CEILING = 1e6


class Diverged(Exception):
    """A hop's loss blew up; the message says how, in one line."""


class HopDiverged(Exception):
    """Raised by `train_chain`: which hop diverged, in which epoch, and why. Nothing of that hop was stored."""

    def __init__(self, hop: int, role: str, arch: str, key: str, epoch: int, reason: str) -> None:
        super().__init__(f"hop {hop} ({role} {arch}), epoch {epoch}: {reason}")
        self.hop, self.role, self.arch, self.key, self.epoch, self.reason = hop, role, arch, key, epoch, reason
        self.completed: list = []  # the HopResults of the hops above it, set by train_chain


class DivergenceGuard:
    """Watches one hop's per-step training losses (detached scalars, left on their device)."""

    def __init__(self) -> None:
        self.reference: float | None = None
        self._sum: Tensor | None = None
        self._steps = 0

    def observe(self, loss: Tensor) -> None:
        # a copy: a graphed step's loss is a buffer its next replay overwrites
        self._sum = loss.clone() if self._sum is None else self._sum + loss
        self._steps += 1
        if self._steps == WINDOW:
            self.check()

    def check(self) -> None:
        """Raises Diverged if the window's mean loss breaks the rule; called at each window's and epoch's end."""
        if self._sum is None:
            return
        mean = float(self._sum) / self._steps
        self._sum, self._steps = None, 0
        if not math.isfinite(mean):
            raise Diverged(f"training loss is {mean}")
        if mean > LOSS_CEILING:
            raise Diverged(f"training loss {mean:.3g} is above {LOSS_CEILING:.0e}")
        if self.reference is None:
            self.reference = mean
        elif mean > EXPLOSION_FACTOR * max(self.reference, 1.0):
            raise Diverged(f"training loss {mean:.3g} is over {EXPLOSION_FACTOR:g}× its first value "
                           f"{self.reference:.3g}")
