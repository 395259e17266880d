"""A test-only stand-in for the trainer: a trial that reports a few epochs instantly.

Not a user feature. It exists to measure and test the sweep machinery itself (Ray Tune, our
callback, the results table) at the scale of the paper's grids, where real training would hide
it: `bench/grid_scale.py` runs the whole 8,640-point `baseline_1pct` grid through
`tune/run_sweep.py` with the hidden flag `--stand-in-trainer N`, which makes every trial call
`stand_in_trial` instead of `s4l_models.trainer.train`.

A stand-in trial reports N evaluations with no checkpoint and no files but one line with its
start time in `<sweep>/trials/stand_in_started.txt`. Its scores are a smooth,
deterministic function of the configuration (best near lr 0.1 and wd 1e-3, better with more
epochs) plus seeded per-trial noise, and they rise with the evaluation number, so schedulers
(ASHA, HyperBand) and the analysis see a plausible landscape. The tiny-subset scores are the
full score plus more noise, as with real 1- and 5-image-per-class subsets.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s4l_models.config import TrainConfig


def _noise(cfg: TrainConfig) -> np.random.Generator:
    key = json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()
    return np.random.default_rng(zlib.crc32(key))


def stand_in_metrics(cfg: TrainConfig, evaluation: int, evaluations: int) -> dict[str, Any]:
    """The metrics of evaluation `evaluation` (1-based) of `evaluations` for `cfg`."""
    rng = _noise(cfg)
    quality = (
        0.9
        - 0.08 * (math.log10(cfg.lr) + 1.0) ** 2
        - 0.04 * (math.log10(max(cfg.wd, 1e-8)) + 3.0) ** 2
        - 0.1 / math.sqrt(max(cfg.epochs, 1.0))
    )
    progress = evaluation / evaluations
    full = float(np.clip(quality * (0.5 + 0.5 * progress) + rng.normal(0, 0.01), 0.0, 1.0))
    metrics: dict[str, Any] = {}
    for k, sd in ((k, 0.15 / math.sqrt(k)) for k in cfg.tiny_k):
        top1 = float(np.clip(full + rng.normal(0, sd), 0.0, 1.0))
        metrics[f"val_{k}pc_top1"] = top1
        metrics[f"val_{k}pc_top5"] = float(min(1.0, top1 + 0.08))
    metrics.update(
        val_full_top1=full,
        val_full_top5=float(min(1.0, full + 0.08)),
        test_top1=float(np.clip(full + rng.normal(0, 0.01), 0.0, 1.0)),
        test_top5=float(min(1.0, full + 0.08)),
        epoch=cfg.epochs * progress,
        step=evaluation,
        total_steps=evaluations,
        train_seconds=0.0,
        status="completed" if evaluation == evaluations else "running",
    )
    return metrics


def stand_in_trial(
    cfg: TrainConfig,
    evaluations: int,
    report: Callable[[dict[str, Any], None], None],
    started_log: Path | None = None,
) -> dict[str, Any]:
    """Report `evaluations` results at once (no checkpoints); returns the last.

    With `started_log`, first appends the wall-clock start time as one line (one small
    O_APPEND write, whole lines even from concurrent trials): the benchmark's trial clock.
    """
    if started_log is not None:
        started_log.parent.mkdir(parents=True, exist_ok=True)
        with open(started_log, "a") as f:
            f.write(f"{time.time():.3f}\n")
    metrics: dict[str, Any] = {}
    for i in range(1, evaluations + 1):
        metrics = stand_in_metrics(cfg, i, evaluations)
        report(dict(metrics), None)
    return metrics


__all__ = ["stand_in_metrics", "stand_in_trial"]
