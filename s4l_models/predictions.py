"""The per-example predictions format: one trial's, and a whole sweep's (numpy only, no torch).

`val_predictions.npz` (`TRIAL_PREDICTIONS`, in a trainer's output directory) holds the per-example
correctness of the trial's final evaluation on the full validation split; `predictions.npz`
(`SWEEP_PREDICTIONS`, in a sweep directory) holds it for every completed trial of a sweep, rows
aligned to `trial_ids`. Both store the booleans bit-packed (1 bit per example and metric: a
trial on ImageNet's 50,046 validation images takes about 12.5 KB for top-1 and top-5) beside the
validation split's example ids (`index`) and labels. The trainer writes the first
(s4l_models.trainer), the sweep gathers them into the second (tune/results.py), the analysis
reads the second (analysis/load.py); this module is the only one that knows the layout.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .io import atomic_write_bytes

TRIAL_PREDICTIONS = "val_predictions.npz"
SWEEP_PREDICTIONS = "predictions.npz"


def save_predictions(
    directory: str | os.PathLike,
    val_indices: np.ndarray,
    labels: np.ndarray,
    top1: np.ndarray,
    top5: np.ndarray,
) -> Path:
    """Write per-example correctness compactly: bit-packed booleans + indices and labels."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        index=np.asarray(val_indices, dtype=np.int64),
        label=np.asarray(labels, dtype=np.int32),
        top1=np.packbits(top1.astype(bool)),
        top5=np.packbits(top5.astype(bool)),
        n=np.int64(len(top1)),
    )
    return atomic_write_bytes(Path(directory) / TRIAL_PREDICTIONS, buf.getvalue())


def load_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Inverse of `save_predictions`: index, label, top1, top5 as plain arrays."""
    with np.load(path) as z:
        n = int(z["n"])
        return {
            "index": z["index"],
            "label": z["label"].astype(np.int64),
            "top1": np.unpackbits(z["top1"])[:n].astype(bool),
            "top5": np.unpackbits(z["top5"])[:n].astype(bool),
        }


def save_sweep_predictions(
    path: str | os.PathLike,
    trial_ids: list[str],
    index: np.ndarray,
    label: np.ndarray,
    top1: np.ndarray,
    top5: np.ndarray,
) -> Path:
    """Per-example correctness of many trials on the same validation split, in one file.

    `top1`/`top5` are bool matrices [trials, examples], bit-packed along the examples axis;
    `index` and `label` are the validation split's positions and labels (shared by all trials).
    """
    top1 = np.asarray(top1, dtype=bool).reshape(len(trial_ids), -1)
    top5 = np.asarray(top5, dtype=bool).reshape(len(trial_ids), -1)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        trial_ids=np.asarray(trial_ids, dtype=str),
        index=np.asarray(index, dtype=np.int64),
        label=np.asarray(label, dtype=np.int32),
        top1=np.packbits(top1, axis=1),
        top5=np.packbits(top5, axis=1),
        n=np.int64(top1.shape[1]),
    )
    return atomic_write_bytes(path, buf.getvalue())


def load_sweep_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Inverse of `save_sweep_predictions`: trial_ids [T], index/label [N], top1/top5 [T, N]."""
    with np.load(path) as z:
        n = int(z["n"])
        return {
            "trial_ids": z["trial_ids"].astype(str),
            "index": z["index"],
            "label": z["label"].astype(np.int64),
            "top1": np.unpackbits(z["top1"], axis=1)[:, :n].astype(bool),
            "top5": np.unpackbits(z["top5"], axis=1)[:, :n].astype(bool),
        }
