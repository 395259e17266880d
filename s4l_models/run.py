"""One training run: `train(cfg, out_dir, ...)`, the entry point of s4l-train and of every trial.

A method with `stages` (pseudolabel, selfsup_linear, selfsup_finetune, moam) runs its pipeline
(`s4l_models.stages.run_stages`), every other method the trainer's loop once
(`s4l_models.trainer.Trainer`). This module sits above both, so neither imports the other's
caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .config import TrainConfig
from .methods import get_method
from .stages import run_stages
from .trainer import Report, Trainer


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    report: Report | None = None,
    resume_from: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train one configuration into `out_dir`; returns the final metrics (also metrics.json).

    Multi-stage methods run their stages (`run_stages`); `resume_from` is then the run's
    checkpoint directory (or its state.pt), which holds the state of the whole pipeline.
    `checkpoint_dir`: where the live checkpoint is written (default `out_dir`/checkpoint); a
    sweep on an object store keeps it out of the trial directory Ray uploads (tune/trainable.py)."""
    method = get_method(cfg.method)
    if method.stages is not None:
        return run_stages(cfg, method, out_dir, report=report, resume_from=resume_from, log=log,
                          checkpoint_dir=checkpoint_dir)
    return Trainer(cfg, out_dir, report=report, log=log,
                   checkpoint_dir=checkpoint_dir).run(resume_from=resume_from)


__all__ = ["train"]
