"""Evaluation: one batched, gradient-free pass per split, scored per example.

The validation split is scored once; the tiny subsets (k images per class) are read off the
same per-example correctness, not a second forward pass. The per-example correctness of the
full validation split is saved with every final evaluation (`val_predictions.npz`), so that any
other subset can be scored later without the model (the validation-size study does that).
"""

from __future__ import annotations

import io
import os
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write_bytes

PREDICTIONS_FILE = "val_predictions.npz"


@torch.no_grad()
def correctness(
    model: torch.nn.Module,
    batches,
    augment,
    autocast: type[AbstractContextManager] | None = None,
    topk: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example (top-1 correct, top-k correct, label) for every example of `batches`."""
    was_training = model.training
    model.eval()
    top1, topk_, labels = [], [], []
    try:
        for images, y in batches:
            x = augment.eval_view(images)
            if autocast is not None:
                with autocast():
                    logits = model(x)
            else:
                logits = model(x)
            k = min(topk, logits.shape[1])
            pred = logits.float().topk(k, dim=1).indices
            hit = pred == y.view(-1, 1)
            top1.append(hit[:, 0].cpu())
            topk_.append(hit.any(dim=1).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not labels:
        empty = np.zeros(0, dtype=bool)
        return empty, empty, np.zeros(0, dtype=np.int64)
    return (
        torch.cat(top1).numpy(),
        torch.cat(topk_).numpy(),
        torch.cat(labels).numpy().astype(np.int64),
    )


def subset_metrics(
    prefix: str, top1: np.ndarray, top5: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    if mask is not None:
        top1, top5 = top1[mask], top5[mask]
    return {f"{prefix}_top1": float(top1.mean()), f"{prefix}_top5": float(top5.mean())}


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
    return atomic_write_bytes(Path(directory) / PREDICTIONS_FILE, buf.getvalue())


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


SWEEP_PREDICTIONS_FILE = "predictions.npz"


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
