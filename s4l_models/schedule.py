"""Learning-rate schedule of the paper: linear warmup from 0, then x0.1 steps at given epochs.

Epochs are counted over the labeled data (S4L Section 4.1), so one epoch is
|D_l| / batch_size optimiser steps, possibly fractional; a boundary at epoch e falls on step
ceil(e * steps_per_epoch). The learning rate scales linearly with batch size relative to 256.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


def epoch_to_step(epoch: float, steps_per_epoch: float) -> int:
    # round first: 0.7 * 200 * 0.5 must be step 70, not 71 after float noise
    return int(math.ceil(round(epoch * steps_per_epoch, 9)))


@dataclass(frozen=True)
class Schedule:
    base_lr: float  # lr per 256 examples
    batch_size: int
    steps_per_epoch: float
    total_steps: int
    warmup_steps: int
    decay_steps: tuple[int, ...]

    @classmethod
    def from_epochs(
        cls,
        base_lr: float,
        batch_size: int,
        num_labeled: int,
        epochs: float,
        warmup_epochs: float,
        decay_epochs: tuple[float, ...],
    ) -> Schedule:
        spe = num_labeled / batch_size
        return cls(
            base_lr=base_lr,
            batch_size=batch_size,
            steps_per_epoch=spe,
            total_steps=max(1, epoch_to_step(epochs, spe)),
            warmup_steps=epoch_to_step(warmup_epochs, spe),
            decay_steps=tuple(sorted(epoch_to_step(e, spe) for e in decay_epochs)),
        )

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / 256.0

    def factor(self, step: int) -> float:
        """Multiplier of the peak lr used for optimiser step `step` (0-based)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps  # linear from 0
        return 0.1 ** sum(step >= d for d in self.decay_steps)

    def lr(self, step: int) -> float:
        return self.peak_lr * self.factor(step)

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def scheduler(self, optimizer: torch.optim.Optimizer) -> LambdaLR:
        """A torch LambdaLR whose step k applies factor(k); the optimiser's lr must be peak_lr."""
        return LambdaLR(optimizer, lr_lambda=self.factor)
