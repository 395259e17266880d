"""Supervised baseline: cross-entropy on the labeled batch only (S4L Section 4.1).

Inception-style crop + flip, optional colour augmentation (the 1% grid's axis).
L = w_sup * L_l (w_sup is 1 unless set; it matters only when the loss is a stage of MOAM).
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Batch, Method, StepContext


def supervised_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    x = ctx.augment.train_view(labeled.images, ctx.gen, color=ctx.cfg.color_aug)
    with ctx.autocast():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), labeled.labels, ignore_index=-1)
    return ctx.cfg.w_sup * loss, {"loss_sup": loss.detach()}


METHOD = Method(name="supervised", loss=supervised_loss)
