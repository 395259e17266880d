"""The per-example predictions format: one trial's, and a whole sweep's (numpy only, no torch).

`val_predictions.npz` (`TRIAL_PREDICTIONS`, in a trainer's output directory) holds the per-example
correctness of the trial's final evaluation on the full validation split; `predictions.npz`
(`SWEEP_PREDICTIONS`, in a sweep directory) holds it for every completed trial of a sweep, rows
aligned to `trial_ids`. Both store the booleans bit-packed (1 bit per example and metric: a
trial on ImageNet's 50,046 validation images takes about 12.5 KB for top-1 and top-5) beside the
validation split's example ids (`index`) and labels.

What few-label model selection needs (analysis/select.py) sits beside the bits: `pred`, each
example's predicted class (uint8 up to 256 classes, else uint16), `conf`, its softmax
probability quantised to 1/255 (uint8; `conf_of` turns it back), and for trials whose model has
a rotation head `rot`, how many of the example's four rotations the head names (uint8, 0-4).
Uncompressed that is 2.25 bytes per trial and example with 10 classes and 3.25 with 1,000
(4.25 with a rotation head; 0.25 of it the correctness bits): for 8,640 trials x 50,046
ImageNet validation images, 1.41 GB (1.84 GB all with rotation heads) before npz compression.
A sweep written before these existed has only the bits; its `pred`/`conf` are absent. The trainer writes the first
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


def class_dtype(pred: np.ndarray):
    """The smallest unsigned type that holds these class ids."""
    return np.uint8 if pred.size == 0 or int(pred.max()) < 256 else np.uint16


def quantise_conf(conf: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 steps of 1/255 (rounded)."""
    return np.clip(np.rint(np.asarray(conf, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def conf_of(q: np.ndarray) -> np.ndarray:
    """Stored confidences (uint8) -> probabilities (float32)."""
    return np.asarray(q, dtype=np.float32) / 255.0


def save_predictions(
    directory: str | os.PathLike,
    val_indices: np.ndarray,
    labels: np.ndarray,
    top1: np.ndarray,
    top5: np.ndarray,
    pred: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    rot: np.ndarray | None = None,
) -> Path:
    """Write per-example correctness compactly: bit-packed booleans + indices and labels, and
    (when given) predicted class, quantised confidence and rotation hits."""
    extra = {}
    if pred is not None and conf is not None:
        pred = np.asarray(pred)
        extra = {"pred": pred.astype(class_dtype(pred)), "conf": quantise_conf(conf)}
    if rot is not None:
        extra["rot"] = np.asarray(rot, dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        index=np.asarray(val_indices, dtype=np.int64),
        label=np.asarray(labels, dtype=np.int32),
        top1=np.packbits(top1.astype(bool)),
        top5=np.packbits(top5.astype(bool)),
        n=np.int64(len(top1)),
        **extra,
    )
    return atomic_write_bytes(Path(directory) / TRIAL_PREDICTIONS, buf.getvalue())


OPTIONAL = ("pred", "conf", "rot")


def load_predictions(path) -> dict[str, np.ndarray]:
    """Inverse of `save_predictions`: index, label, top1, top5 as plain arrays, and pred, conf
    (uint8) and rot where the file has them."""
    with np.load(path) as z:
        n = int(z["n"])
        out = {
            "index": z["index"],
            "label": z["label"].astype(np.int64),
            "top1": np.unpackbits(z["top1"])[:n].astype(bool),
            "top5": np.unpackbits(z["top5"])[:n].astype(bool),
        }
        out.update({k: z[k] for k in OPTIONAL if k in z.files})
        return readable_only(out)


def readable_only(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The predictions without the examples whose image file could not be read (label < 0,
    kept by `--skip-bad-images`): they are no model's error, and the trainer's accuracies leave
    them out (evaluate.subset_metrics), so every reader scores what the metrics scored. Their
    example ids are kept as `unreadable`."""
    label = np.asarray(out["label"])
    bad = label < 0
    out["unreadable"] = np.union1d(np.asarray(out.get("unreadable", []), dtype=np.int64),
                                   np.asarray(out["index"])[bad])
    if bad.any():
        keep = ~bad
        for k in ("index", "label", "top1", "top5", *OPTIONAL):
            if k in out:
                out[k] = np.asarray(out[k])[..., keep]
    return out


def save_sweep_predictions(
    path: str | os.PathLike,
    trial_ids: list[str],
    index: np.ndarray,
    label: np.ndarray,
    top1: np.ndarray,
    top5: np.ndarray,
    pred: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    rot: np.ndarray | None = None,
    has_rot: np.ndarray | None = None,
    unreadable: np.ndarray | None = None,
) -> Path:
    """Per-example correctness of many trials on the same validation split, in one file.

    `top1`/`top5` are bool matrices [trials, examples], bit-packed along the examples axis;
    `index` and `label` are the validation split's positions and labels (shared by all trials).
    `pred`/`conf` [trials, examples] (every trial's, or none), `rot` [trials, examples] with
    `has_rot` [trials] marking the trials whose model has a rotation head. `unreadable`: the
    ids of validation examples whose file could not be read (left out of every array).
    """
    top1 = np.asarray(top1, dtype=bool).reshape(len(trial_ids), -1)
    top5 = np.asarray(top5, dtype=bool).reshape(len(trial_ids), -1)
    extra = {}
    if pred is not None and conf is not None:
        pred = np.asarray(pred)
        extra = {"pred": pred.astype(class_dtype(pred)),
                 "conf": np.asarray(conf, dtype=np.uint8)}
    if rot is not None and has_rot is not None:
        extra.update(rot=np.asarray(rot, dtype=np.uint8), has_rot=np.asarray(has_rot, bool))
    if unreadable is not None and len(unreadable):
        extra["unreadable"] = np.asarray(unreadable, dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        trial_ids=np.asarray(trial_ids, dtype=str),
        index=np.asarray(index, dtype=np.int64),
        label=np.asarray(label, dtype=np.int32),
        top1=np.packbits(top1, axis=1),
        top5=np.packbits(top5, axis=1),
        n=np.int64(top1.shape[1]),
        **extra,
    )
    return atomic_write_bytes(path, buf.getvalue())


def load_sweep_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Inverse of `save_sweep_predictions`: trial_ids [T], index/label [N], top1/top5 [T, N],
    and pred/conf [T, N], rot [T, N] and has_rot [T] where the file has them."""
    with np.load(path) as z:
        n = int(z["n"])
        out = {
            "trial_ids": z["trial_ids"].astype(str),
            "index": z["index"],
            "label": z["label"].astype(np.int64),
            "top1": np.unpackbits(z["top1"], axis=1)[:, :n].astype(bool),
            "top5": np.unpackbits(z["top5"], axis=1)[:, :n].astype(bool),
        }
        out.update({k: z[k] for k in (*OPTIONAL, "has_rot", "unreadable") if k in z.files})
        return readable_only(out)
