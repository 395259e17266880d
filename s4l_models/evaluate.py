"""Evaluation: one batched, gradient-free pass per split, scored per example.

The validation split is scored once; the tiny subsets (k images per class) are read off the
same per-example correctness, not a second forward pass. The per-example correctness of the
full validation split is saved with every final evaluation (`val_predictions.npz`), with each
example's predicted class and confidence (and, for models with a rotation head, how many of its
rotations the head names), so that any other subset can be scored later without the model (the
validation-size study does that) and few-label model selection can choose which images to label
(analysis/select.py).

Test-time views (`views=`): the model's logits are averaged over several views of each image,
then turned into probabilities: the four rotations (S4L-Rotation's optional test-time averaging,
Section 4.4) or 5 crops x 4 rotations (MOAM's pseudo-labels, Section 5). The same averaging
labels the training split for the pseudo-label methods (`pseudo_labels`). Logits, not
probabilities, as the released code does (google-research/s4l semi_supervised/rotation.py
`logits_class_avg`, pseudo_labeling/generate_labels.py `logits_avg_croprot`); the paper only
says "averaging predictions".
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch
import torch.nn.functional as F

# (ours) MOAM's 5 crops each cover 3/4 of the image side (4 corners + centre), resized back to
# the input size; at 3/4 the centre crop of a small image (8 px digits) differs from the corners.
# The released code crops 224 px from the image resized to 256 instead (on ImageNet our crops
# are 168 px of the 224 evaluation view): README, "Where we differ from the paper".
FIVE_CROP_FRACTION = 0.75


def rotations4(x: torch.Tensor) -> list[torch.Tensor]:
    """The four rotations (0, 90, 180, 270 degrees) of a batch [B, C, H, W]."""
    return [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]


def five_crops(x: torch.Tensor, fraction: float = FIVE_CROP_FRACTION) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre crops, resized to the input."""
    # ~1.5 s import: only when used
    from torchvision.transforms.v2.functional import five_crop

    h, w = x.shape[-2:]
    size = [max(1, round(h * fraction)), max(1, round(w * fraction))]
    return [
        F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)
        for c in five_crop(x, size)
    ]


def five_crop_rot4(x: torch.Tensor) -> list[torch.Tensor]:
    """20 views: every rotation of every one of the 5 crops (MOAM step 2's pseudo-labels)."""
    return [v for crop in five_crops(x) for v in rotations4(crop)]


VIEWS = {"center": None, "rot4": rotations4, "5crop_rot4": five_crop_rot4}


def view_average(model: torch.nn.Module, x: torch.Tensor, views, autocast=None) -> torch.Tensor:
    """Probabilities [B, classes]: the softmax of the logits averaged over `views(x)` (of the
    logits of x itself when views is None)."""
    inputs = [x] if views is None else views(x)
    total = None
    for v in inputs:
        if autocast is not None:
            with autocast():
                logits = model(v)
        else:
            logits = model(v)
        logits = logits.float()
        total = logits if total is None else total + logits
    return torch.softmax(total / len(inputs), dim=1)


@torch.no_grad()
def pseudo_labels(
    model: torch.nn.Module,
    batches,
    augment,
    autocast: type[AbstractContextManager] | None = None,
    views=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, its averaged probability) for every example of `batches`."""
    was_training = model.training
    model.eval()
    preds, confs = [], []
    try:
        for images, _ in batches:
            p = view_average(model, augment.eval_view(images), views, autocast)
            conf, pred = p.max(dim=1)
            preds.append(pred.cpu())
            confs.append(conf.cpu())
    finally:
        model.train(was_training)
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return (
        torch.cat(preds).numpy().astype(np.int64),
        torch.cat(confs).numpy().astype(np.float32),
    )


@contextmanager
def scoring_layout(model: torch.nn.Module, channels_last: bool):
    """Hold `model`'s weights in channels_last for the block, then give them back contiguous.

    On a CPU, oneDNN's convolutions score 11-31% faster per image with channels_last weights
    (ResNet-18/50 v2 on 28x28, 1 thread, batch 128; 3% on 8x8; `bench/scoring_layout.py`), while
    training keeps the contiguous layout
    it was checked with. The values are the same; only their order in memory changes, so the
    optimizer, which holds the same Parameter objects, is unaffected."""
    if not channels_last:
        yield
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def scored_examples(
    model: torch.nn.Module,
    batches,
    augment,
    autocast: type[AbstractContextManager] | None = None,
    topk: int = 5,
    views=None,
) -> dict[str, np.ndarray]:
    """Per example of `batches`: `top1`, `topk` (correct, bool), `label`, `pred` (predicted
    class) and `conf` (its softmax probability), what model selection with few labels needs
    (analysis/select.py). With `views` (e.g. `rotations4`) the prediction is the softmax of the
    logits averaged over the views."""
    was_training = model.training
    model.eval()
    top1, topk_, labels, preds, confs = [], [], [], [], []
    try:
        for images, y in batches:
            x = augment.eval_view(images)
            if views is not None:
                logits = view_average(model, x, views, autocast)  # probabilities: same argmax
            elif autocast is not None:
                with autocast():
                    logits = model(x)
            else:
                logits = model(x)
            logits = logits.float()
            k = min(topk, logits.shape[1])
            pred = logits.topk(k, dim=1).indices
            hit = pred == y.view(-1, 1)
            prob = logits if views is not None else torch.softmax(logits, dim=1)
            top1.append(hit[:, 0].cpu())
            topk_.append(hit.any(dim=1).cpu())
            labels.append(y.cpu())
            preds.append(pred[:, 0].cpu())
            confs.append(prob.gather(1, pred[:, :1])[:, 0].cpu())
    finally:
        model.train(was_training)
    if not labels:
        empty = np.zeros(0, dtype=bool)
        return {"top1": empty, "topk": empty, "label": np.zeros(0, dtype=np.int64),
                "pred": np.zeros(0, dtype=np.int64), "conf": np.zeros(0, dtype=np.float32)}
    return {
        "top1": torch.cat(top1).numpy(),
        "topk": torch.cat(topk_).numpy(),
        "label": torch.cat(labels).numpy().astype(np.int64),
        "pred": torch.cat(preds).numpy().astype(np.int64),
        "conf": torch.cat(confs).numpy().astype(np.float32),
    }


@torch.no_grad()
def rotation_hits(
    model: torch.nn.Module,
    head: torch.nn.Module,
    batches,
    augment,
    autocast: type[AbstractContextManager] | None = None,
) -> np.ndarray:
    """Per example: how many of its four rotations (0-4) the rotation head names correctly,
    the label-free signal that tracks classification accuracy (Deng, Gould and Zheng, ICML
    2021); for models trained with a rotation head (S4L-Rotation, MOAM)."""
    was = model.training, head.training
    model.eval()
    head.eval()
    out = []
    try:
        for images, _ in batches:
            x = augment.eval_view(images)
            hits = torch.zeros(x.shape[0], dtype=torch.uint8, device=x.device)
            for k, v in enumerate(rotations4(x)):
                if autocast is not None:
                    with autocast():
                        logits = head(model.forward_features(v))
                else:
                    logits = head(model.forward_features(v))
                hits += (logits.float().argmax(dim=1) == k).to(torch.uint8)
            out.append(hits.cpu())
    finally:
        model.train(was[0])
        head.train(was[1])
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.uint8)


def subset_metrics(
    prefix: str, top1: np.ndarray, top5: np.ndarray, mask: np.ndarray | None = None,
    label: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracies over `mask` (all when None). With `label`, examples whose file could not be
    read (label < 0, `--skip-bad-images`) count in neither numerator nor denominator: they are
    not the model's errors (NaN when no readable example is left)."""
    keep = np.ones(len(top1), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if label is not None:
        keep = keep & (np.asarray(label) >= 0)
    if not keep.any():
        return {f"{prefix}_top1": float("nan"), f"{prefix}_top5": float("nan")}
    return {f"{prefix}_top1": float(top1[keep].mean()), f"{prefix}_top5": float(top5[keep].mean())}


