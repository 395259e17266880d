"""Mix Of All Models (S4L Section 5): three steps in one run, each checkpointed and resumable.

Step 1 `step1`: S4L-Rotation + VAT + EntMin jointly, with this run's settings (by default MOAM's
recipe in s4l_models/recipes.py, which the `moam_10pct` space reads too: 4x wide ResNet50v2,
batch 128, lr 0.1 at batch 128, wd 2e-4, 200 epochs, warmup to epoch 10, x0.1 at 100/150/190,
inception crop + flip):

    L = w_sup * L_l + w_u * L_rot + w_vat * L_vat + w_entmin * L_entmin
    (paper: w_sup 0.3, w_rot = our w_u 0.7, w_vat 0.3, w_entmin 0.3; the released
    rotation_vat.py weighs the rotation loss by 1 - sup_weight - vat_weight = 0.4 instead)

L_l and L_rot are S4L-Rotation's (all four rotations of the labeled and unlabeled images in one
forward pass); L_vat and L_entmin are taken on the rotated unlabeled copies only, as the paper's
code (semi_supervised/rotation_vat.py) does even though config/moam_step_1.sh passes
--apply_vat_to_labeled (that file ignores the flag), so `vat_on_labeled` does not apply here.
L_vat is vat.py's: KL(f(x + r_adv) || f(x)) with ||r_adv|| = eps_vat in [-1, 1] image units
(moam_step_1.sh: --vat_eps 32; eps_vat None gives 32 * the dataset's `vat_eps_scale`). Unlike
the `vat` methods, w_vat and w_entmin are not multiplied by w_u here: each loss has its own
weight.
Step 2 `step2`: every training image gets the label predicted by step 1's (Polyak-averaged)
model, averaged over 5 crops x 4 rotations; the same network, initialised from step 1, trains
again with all the losses on these labels. Epochs now count over the full set: 18, x0.1 after
6 and 12.
Step 3 `step3`: fine-tuning on the original labeled subset only: wd 3e-3, lr 5e-4 at batch 128
(1e-3 per 256, as step 1's lr), 20 epochs, x0.1 every 5 epochs. (ours) The paper does not say
which loss; we keep the labeled part of step 1's (w_sup * classification + w_u * rotation, on
the four rotated copies of every labeled image). A plain supervised fine-tune feeds batch norm
unrotated batches only, unlike the rotated mixtures the network was trained under; on digits
(bench/methods_digits.py, seed 0) that moved the running statistics and cut validation top-1
from 84.8% to 75.0% within step 3, while the rotation-consistent fine-tune held 83.8%.

Polyak averaging (per-step decay 0.5 ** (1 / steps_per_epoch)) runs in every step unless
`polyak` is false; evaluation and each next step use the averaged weights.

(ours) Steps 2 and 3 scale with step 1's length: their epochs are 18 and 20 times
epochs / 200, so the paper's 200-epoch run gets exactly the paper's 18 and 20, and a shortened
run (benchmarks, tests) shortens all three steps alike. Step 2 warms up over its first
(epochs / 200) epoch and step 3 has no warmup (the paper states neither; both start from
trained weights).
"""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..recipes import MOAM
from .base import Batch, Method, Stage, StepContext, entropy, linear_head
from .s4l_rotation import (
    NUM_ROTATIONS,
    ROTATION_HEAD,
    rotation_terms,
    s4l_rotation_loss,
)
from .vat import vat_loss

PAPER_EPOCHS = 200.0
STEP2_EPOCHS, STEP2_DECAYS = 18.0, (6.0, 12.0)
STEP3_EPOCHS, STEP3_DECAYS = 20.0, (5.0, 10.0, 15.0)
STEP3_LR, STEP3_WD = 1e-3, 3e-3  # lr per 256 (5e-4 at the paper's batch 128)
# google-research/s4l config/moam_step_1.sh: --vat_eps 32.0 ([-1, 1] image units, ImageNet)
MOAM_IMAGENET_EPS = MOAM.settings["eps_vat"]


def moam_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    cfg = ctx.cfg
    x, logits, n_sup, loss_sup, loss_rot = rotation_terms(model, labeled, unlabeled, ctx)
    loss_vat = vat_loss(model, x[n_sup:], logits[n_sup:], ctx, imagenet_eps=MOAM_IMAGENET_EPS)
    loss_ent = entropy(logits[n_sup:])
    loss = (
        cfg.w_sup * loss_sup
        + cfg.w_u * loss_rot
        + cfg.w_vat * loss_vat
        + cfg.w_entmin * loss_ent
    )
    return loss, {
        "loss_sup": loss_sup.detach(),
        "loss_rot": loss_rot.detach(),
        "loss_vat": loss_vat.detach(),
        "loss_entmin": loss_ent.detach(),
    }


def finetune_loss(model, labeled: Batch, unlabeled: Batch | None, ctx: StepContext):
    """Step 3: the labeled part of step 1's loss (classification + rotation on the four rotated
    copies of the labeled images), so that batch norm keeps seeing rotated batches: S4L-Rotation's
    loss without an unlabeled batch."""
    return s4l_rotation_loss(model, labeled, None, ctx)


FINETUNE_METHOD = Method(
    name="rotation_finetune",
    loss=finetune_loss,
    heads={ROTATION_HEAD: linear_head(NUM_ROTATIONS)},
    rotation_tta=True,
)

STEP_METHOD = Method(
    name="rotation_vat_entmin",
    loss=moam_loss,
    uses_unlabeled=True,
    heads={ROTATION_HEAD: linear_head(NUM_ROTATIONS)},
    polyak=True,
    rotation_tta=True,
)


def moam_stages(cfg: TrainConfig) -> list[Stage]:
    f = cfg.epochs / PAPER_EPOCHS
    polyak = True if cfg.polyak is None else cfg.polyak
    step1 = dataclasses.replace(cfg, polyak=polyak)
    step2 = dataclasses.replace(
        step1,
        epochs=STEP2_EPOCHS * f,
        warmup_epochs=f,
        decay_epochs=tuple(d * f for d in STEP2_DECAYS),
    )
    step3 = dataclasses.replace(
        step1,
        lr=STEP3_LR,
        wd=STEP3_WD,
        epochs=STEP3_EPOCHS * f,
        warmup_epochs=0.0,
        decay_epochs=tuple(d * f for d in STEP3_DECAYS),
    )
    return [
        Stage("step1", STEP_METHOD, step1),
        Stage("step2", STEP_METHOD, step2, data="all", labels="pseudo", pseudo_views="5crop_rot4",
              init=True),
        Stage("step3", FINETUNE_METHOD, step3, init=True),
    ]


# MOAM as a whole: step 1's method, run as the three stages above.
METHOD = dataclasses.replace(STEP_METHOD, name="moam", stages=moam_stages)
