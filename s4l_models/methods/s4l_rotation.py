"""S4L-Rotation (S4L Section 3.1): classification plus 4-way rotation prediction.

Every image of the labeled and of the unlabeled batch is cropped (inception crop + flip, as
the supervised baseline) and then rotated by 0, 90, 180 and 270 degrees, all four in the same
step; the 8B copies go through the network in one forward pass (as the paper's code
concatenates them). A 4-way linear rotation head on the pre-logits predicts the rotation.

    L = w_sup * L_l + w_u * L_rot
    L_l   = cross-entropy of the class on all four rotated copies of the labeled images
            (on the upright copies only with `sup_on_rotated` false: for digits, where a
            rotated 6 is a 9, bench/methods_digits.py measures both)
    L_rot = 4-way rotation cross-entropy on all copies, labeled and unlabeled

(w_sup is 1 unless set; the paper's w is our w_u.) Test-time averaging over the four rotations
is available as extra metrics (`tta_rotation`, `*_rot4_*` keys) and is off by default: the
paper reports numbers without it (Section 4.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Batch, Method, StepContext, linear_head, readable

NUM_ROTATIONS = 4
ROTATION_HEAD = "rotation"


def rotate4(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of a batch [B,C,H,W] -> ([4B,C,H,W], rotation labels [4B]).

    Copy k*B + i is image i rotated by k*90 degrees (torch.rot90 over H, W), label k.
    """
    b = x.shape[0]
    copies = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=x.device).repeat_interleave(b)
    return copies, labels


def repeat_labels(labels: torch.Tensor, copies: int) -> torch.Tensor:
    """Labels of `copies` copy-major replicas of a batch (copy c*B + i has label i's)."""
    return labels.repeat(copies)


def rotation_views(labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    """Cropped then rotated copies: (inputs [4B_l + 4B_u], rotation labels, class labels [4B_l]).

    The labeled copies come first; copy k*B_l + i is labeled image i rotated by k*90 degrees.
    """
    xl = ctx.augment.train_view(labeled.images, ctx.gen, color=ctx.cfg.color_aug)
    parts, rot = [], []
    xl4, rl = rotate4(xl)
    parts.append(xl4)
    rot.append(rl)
    if unlabeled is not None and len(unlabeled.labels):
        xu = ctx.augment.train_view(unlabeled.images, ctx.gen, color=ctx.cfg.color_aug)
        xu4, ru = rotate4(xu)
        parts.append(xu4)
        rot.append(ru)
    return torch.cat(parts), torch.cat(rot), repeat_labels(labeled.labels, NUM_ROTATIONS)


def rotation_forward(model, x: torch.Tensor, ctx: StepContext):
    """One forward pass: (class logits, rotation logits), float32."""
    with ctx.autocast():
        feats = model.forward_features(x)
        logits = model.head(feats)
        rot_logits = ctx.heads[ROTATION_HEAD](feats)
    return logits.float(), rot_logits.float()


def rotated_class_loss(logits_sup: torch.Tensor, class_labels: torch.Tensor, ctx: StepContext):
    """Cross-entropy on all four rotated labeled copies, or (sup_on_rotated false) on the upright
    ones only: the paper's ablation (Section 4.4) found the rotated copies help on ImageNet."""
    if ctx.cfg.sup_on_rotated:
        return F.cross_entropy(logits_sup, class_labels, ignore_index=-1)
    b = class_labels.shape[0] // NUM_ROTATIONS
    return F.cross_entropy(logits_sup[:b], class_labels[:b], ignore_index=-1)


def rotation_terms(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    """One forward of all rotated copies: (inputs, class logits, number of labeled copies,
    classification loss, rotation loss). MOAM adds its VAT and EntMin terms on the same pass."""
    unlabeled = readable(unlabeled)
    x, rot_labels, class_labels = rotation_views(labeled, unlabeled, ctx)
    logits, rot_logits = rotation_forward(model, x, ctx)
    n_sup = class_labels.shape[0]
    loss_sup = rotated_class_loss(logits[:n_sup], class_labels, ctx)
    loss_rot = F.cross_entropy(rot_logits, rot_labels)
    return x, logits, n_sup, loss_sup, loss_rot


def s4l_rotation_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    _, _, _, loss_sup, loss_rot = rotation_terms(model, labeled, unlabeled, ctx)
    loss = ctx.cfg.w_sup * loss_sup + ctx.cfg.w_u * loss_rot
    return loss, {"loss_sup": loss_sup.detach(), "loss_rot": loss_rot.detach()}


METHOD = Method(
    name="s4l_rotation",
    loss=s4l_rotation_loss,
    uses_unlabeled=True,
    heads={ROTATION_HEAD: linear_head(NUM_ROTATIONS)},
    rotation_tta=True,
)
