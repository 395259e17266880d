"""Learning-rate schedule of the paper: linear warmup, then x0.1 steps at given epochs.

Epochs are counted over the labeled data (S4L Section 4.1), so one epoch is
|D_l| / batch_size optimiser steps, possibly fractional; the run has ceil(epochs *
steps_per_epoch) steps and a decay at epoch e falls on step ceil(e * steps_per_epoch). The
learning rate scales linearly with batch size relative to 256.

Warmup (ours, where the released code differs by one step): the warmup covers the whole steps
inside its epochs, floor(warmup_epochs * steps_per_epoch), and step k < W trains at
(k + 1) / W of the peak, reaching the peak at step W - 1. The released code
(google-research/s4l trainer.py `get_lr`) uses k / W, so its first step trains at lr 0: a wasted
step, and a run of one step would not train at all. Rounding the warmup down keeps a schedule
whose warmup is 10% of its epochs at >= 90% of its steps after warmup whatever the batch size.

A schedule too short to mean anything (`short_reason`): fewer than MIN_STEPS optimizer steps,
every step inside the warmup, or a first lr decay at or before the warmup's end (the lr would
touch its peak for at most one step, then train at 0.1x or less). The trainer still runs it
(tests and smoke runs need that) but says so and marks its metrics `short_run`; sweeps name
such configurations before they start and the report leaves them out of its statistics.

A schedule that runs but not as its settings read (`warnings`): a batch larger than the images
an epoch passes over (each image then appears several times in every batch, with other
augmentations, and an "epoch" is a fraction of a step), or a warmup of more than 0 epochs
shorter than one step (rounded down to none: the run starts at the peak lr). Such a run still
means something, so it is not marked short; the trainer logs each warning and writes them to
metrics.json (`schedule_warnings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import TrainConfig

# (ours) Below this many optimizer steps a run is marked short: a model-selection statistic over
# networks that took a few dozen SGD steps says nothing about the configurations.
MIN_STEPS = 50


def epoch_to_step(epoch: float, steps_per_epoch: float) -> int:
    # round first: 0.7 * 200 * 0.5 must be step 70, not 71 after float noise
    return int(math.ceil(round(epoch * steps_per_epoch, 9)))


def whole_steps(epoch: float, steps_per_epoch: float) -> int:
    """Whole steps that fit inside `epoch` epochs (rounded down, after the same float guard)."""
    return int(math.floor(round(epoch * steps_per_epoch, 9)))


@dataclass(frozen=True)
class Schedule:
    base_lr: float  # lr per 256 examples
    batch_size: int
    steps_per_epoch: float
    total_steps: int
    warmup_steps: int
    decay_steps: tuple[int, ...]
    warmup_epochs: float = 0.0  # as asked, before rounding to warmup_steps (for `warnings`)

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
            warmup_steps=whole_steps(warmup_epochs, spe),
            decay_steps=tuple(sorted(epoch_to_step(e, spe) for e in decay_epochs)),
            warmup_epochs=warmup_epochs,
        )

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / 256.0

    def factor(self, step: int) -> float:
        """Multiplier of the peak lr used for optimiser step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps  # linear; never a step at lr 0
        return 0.1 ** sum(step >= d for d in self.decay_steps)

    def lr(self, step: int) -> float:
        return self.peak_lr * self.factor(step)

    @property
    def steps_after_warmup(self) -> int:
        return max(0, self.total_steps - self.warmup_steps)

    def short_reason(self) -> str | None:
        """Why this schedule is too short to mean anything, or None when it is not."""
        if self.total_steps < MIN_STEPS:
            n = self.total_steps
            return f"{n} optimizer step{'' if n == 1 else 's'} (fewer than {MIN_STEPS})"
        if self.warmup_steps >= self.total_steps:
            return f"all {self.total_steps} optimizer steps fall inside the warmup"
        w = self.warmup_steps
        if w and self.decay_steps and self.decay_steps[0] <= w:
            # factor() skips decays during the warmup, so step w already trains at the decayed
            # lr: the peak lasts the warmup's last step alone (without a warmup, w = 0, a decay
            # at step 0 just lowers the lr of the whole run and is left alone)
            d = self.decay_steps[0]
            where = "inside" if d < w else "at the end of"
            return f"the first lr decay, at step {d}, falls {where} the {w}-step warmup"
        return None

    @property
    def images_per_epoch(self) -> int:
        return round(self.steps_per_epoch * self.batch_size)

    def warnings(self) -> list[str]:
        """What in this schedule is not what its settings read, though the run means something
        (module docstring); [] when nothing."""
        out = []
        n, b = self.images_per_epoch, self.batch_size
        if b > n:
            # on average: a batch spans successive shuffles (data.sources.IndexStream), so one
            # image's count in a single batch varies around b / n
            out.append(
                f"the batch of {b} is larger than the {n} images an epoch passes over: each "
                f"appears {b / n:.3g} times per batch on average (in other augmentations) and "
                f"an epoch is {self.steps_per_epoch:.3g} steps"
            )
        if self.warmup_epochs > 0 and self.warmup_steps == 0:
            out.append(
                f"the warmup of {self.warmup_epochs:g} epochs is shorter than one step "
                f"({self.warmup_epochs * self.steps_per_epoch:.3g} steps) and rounds down to "
                "none: the run starts at the peak lr"
            )
        return out

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def scheduler(self, optimizer: torch.optim.Optimizer) -> LambdaLR:
        """A torch LambdaLR whose step k applies factor(k); the optimiser's lr must be peak_lr."""
        return LambdaLR(optimizer, lr_lambda=self.factor)


def report_steps(cfg: TrainConfig, sched: Schedule) -> list[int]:
    """Steps (1-based counts of finished steps) after which we evaluate, report and checkpoint."""
    total = sched.total_steps
    # evaluation points (a float: epochs / a tiny eval_every overflows an int)
    n = cfg.epochs / cfg.eval_every + 1e-9 if cfg.eval_every > 0 else cfg.evaluations
    if n >= total:
        # at least as many points as steps, at most a step apart: every step is one. Returned
        # directly, as listing 1e10 points first would exhaust the memory.
        return list(range(1, total + 1))
    if cfg.eval_every > 0:
        n = int(math.floor(n))
        epochs = [cfg.eval_every * i for i in range(1, n + 1)]
    else:
        epochs = [cfg.epochs * i / n for i in range(1, n + 1)]
    steps = {min(total, max(1, epoch_to_step(e, sched.steps_per_epoch))) for e in epochs}
    steps.add(total)
    return sorted(steps)


