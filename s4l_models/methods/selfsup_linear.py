"""Self-supervised pretraining + linear evaluation (S4L Section 4.3, Table 1, Figure 2).

Stage 1 `pretrain`: the pretext task alone (`pretext`: rotation or exemplar) on every image of
the training split, labels unused. Settings (ours, after Kolesnikov et al. 2019,
google/revisiting-self-supervised config/rotation/imagenet.sh): lr 0.1 per 256, wd 1e-4,
`pretrain_epochs` (35) epochs over the whole split at `pretrain_batch_size` (256), warmup over the
first 5/35 of it, x0.1 at 15/35 and 25/35 of it.

Pretext views and loss (ours, not Kolesnikov et al.'s; README, "Where we differ from the paper or
its released code"). S4L Section 4.3 trains the pretext models "following the best practice" of
Kolesnikov et al.; we take their schedule but not their augmentation or exemplar loss. Their
rotation config crops with TF-slim's inception preprocessing, which also distorts colour
(brightness and saturation), and their exemplar config (config/exemplar/imagenet.sh) turns images
grey with probability 0.66, standardises each image and trains `triplet_semihard_loss` with
margin 0.5. Ours: rotation on inception crop + flip without colour (`color_aug=False`, as the
released config/s4l_rotation.sh of google-research/s4l crops S4L-Rotation's images), and
exemplar on S4L-Exemplar's own copies (crop + flip + hsvnoise) with its soft-margin batch-hard
loss (`s4l_exemplar`). So each pretext task is exactly the unlabeled loss of the S4L method it
is compared with in Table 1, on the same views, and the comparison differs in the use of the
labels and the schedule only. Not measured against Kolesnikov et al.'s settings.
Stage 2 `linear`: a linear classifier (`model.head`) on the frozen pre-logits, trained on the
labeled subset with this run's settings (the `selfsup_linear_*` spaces: batch 2048, lr grid
around 0.1, wd around 1e-4, lr warmed up over the first epoch). Features are computed with the
network in eval mode, so batch-norm statistics stay those of pretraining. The classifier is
evaluated every epoch (unless `eval_every` says otherwise), so `stage_2_linear/progress.jsonl`
is the per-epoch accuracy curve Figure 2 compares.

Learning rate at batch 2048: our lr is per 256 examples and scales with the batch, so lr 0.1
means 0.8 at batch 2048. We keep the scaling for the linear evaluation too: the evaluation
config of the paper's self-supervision code (revisiting-self-supervised
config/evaluation/rotation_or_exemplar.sh: lr 0.1, lr_scale_batch_size 256, batch 2048 for the
reported results) scales it the same way.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from .base import Batch, Method, Stage, StepContext, linear_head, readable
from .s4l_exemplar import (
    EMBED_DIM,
    EMBED_HEAD,
    NUM_COPIES,
    embed,
    exemplar_copies,
    readable_identities,
    triplet_of_copies,
)
from .s4l_rotation import NUM_ROTATIONS, ROTATION_HEAD, rotate4, rotation_forward

PRETRAIN_LR = 0.1
PRETRAIN_WD = 1e-4
PRETRAIN_WARMUP = 5 / 35  # fractions of the pretraining run
PRETRAIN_DECAYS = (15 / 35, 25 / 35)


def rotation_pretext_loss(model, batch: Batch, unlabeled: Batch | None, ctx: StepContext):
    """4-way rotation prediction on all four rotations of every image (no labels used)."""
    batch = readable(batch)
    x4, rot = rotate4(ctx.augment.train_view(batch.images, ctx.gen))
    _, rot_logits = rotation_forward(model, x4, ctx)
    loss = F.cross_entropy(rot_logits, rot)
    return loss, {"loss_rot": loss.detach()}


def exemplar_pretext_loss(model, batch: Batch, unlabeled: Batch | None, ctx: StepContext):
    """Batch-hard soft-margin triplet loss over 8 copies of every image (no labels used)."""
    batch, ids = readable_identities(batch)
    x = exemplar_copies(batch.images, ctx)
    with ctx.autocast():
        feats = model.forward_features(x)
    loss = triplet_of_copies(embed(feats, ctx), ids)
    return loss, {"loss_exemplar": loss.detach()}


PRETEXT = {
    "rotation": Method(
        name="rotation_pretext",
        loss=rotation_pretext_loss,
        heads={ROTATION_HEAD: linear_head(NUM_ROTATIONS)},
    ),
    "exemplar": Method(
        name="exemplar_pretext",
        loss=exemplar_pretext_loss,
        heads={EMBED_HEAD: linear_head(EMBED_DIM)},
        train_copies=NUM_COPIES,
    ),
}


def linear_eval_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    """Cross-entropy of the linear classifier on frozen pre-logits (crop + flip views)."""
    x = ctx.augment.train_view(labeled.images, ctx.gen, color=ctx.cfg.color_aug)
    was_training = model.training
    model.eval()  # frozen features: batch norm uses its running statistics, and keeps them
    try:
        with torch.no_grad(), ctx.autocast():
            feats = model.forward_features(x)
    finally:
        model.train(was_training)
    with ctx.autocast():
        logits = model.head(feats.detach())
    loss = F.cross_entropy(logits.float(), labeled.labels, ignore_index=-1)
    return ctx.cfg.w_sup * loss, {"loss_sup": loss.detach()}


LINEAR = Method(name="linear_eval", loss=linear_eval_loss, trainable="head")


def pretrain_stage(cfg: TrainConfig) -> Stage:
    e = cfg.pretrain_epochs
    pcfg = dataclasses.replace(
        cfg,
        epochs=e,
        batch_size=cfg.pretrain_batch_size,
        lr=PRETRAIN_LR,
        wd=PRETRAIN_WD,
        warmup_epochs=PRETRAIN_WARMUP * e,
        decay_epochs=tuple(f * e for f in PRETRAIN_DECAYS),
        color_aug=False,  # the pretext views of S4L-Rotation's config (module docstring)
        eval_every=0.0,
    )
    return Stage("pretrain", PRETEXT[cfg.pretext], pcfg, data="all")


def selfsup_linear_stages(cfg: TrainConfig) -> list[Stage]:
    lcfg = dataclasses.replace(cfg, eval_every=cfg.eval_every or 1.0)
    return [pretrain_stage(cfg), Stage("linear", LINEAR, lcfg, init=True)]


METHOD = Method(name="selfsup_linear", loss=linear_eval_loss, stages=selfsup_linear_stages)
