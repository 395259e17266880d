"""Pseudo-Label (Lee 2013; S4L Sections 3.2 and 4.2): label the rest, retrain from scratch.

Stage 1 `teacher`: the best supervised baseline of Section 4.1 on the labeled subset (skipped
when `teacher` names a finished run to label with). Stage 2 `retrain`: every unlabeled image of
the training split gets the teacher's prediction on its central view as its label, the labeled
images keep their true labels, and a fresh network trains on them with this run's settings,
"standard practice" in the paper: lr 0.1, wd 1e-4, 100 epochs, where epochs count over the full
pseudo-labeled set (the `pseudolabel_*` search spaces set these). No confidence filter by
default; `pseudo_threshold` keeps only predictions at least that confident (the paper also
tried 0.5), and never filters the labeled images.

The paper says it assigns pseudo-labels "to the full dataset"; the released code trains the
labeled images on their original labels (google-research/s4l datasets.py, `label_flag`), and so
do we: a known label is never replaced by a guess. `num_labeled_teacher_wrong` in the metrics
counts the labeled images whose teacher prediction differed.

Teacher: the supervised recipe of the run's label regime (`s4l_models.recipes`, S4L Section
4.1): 10%: lr 0.1, wd 1e-3, 200 epochs, 5 warmup epochs, decays at 70/80/90%, crop + flip. 1%
(or at most 13 labels per class, ImageNet's 1%): lr 0.01, wd 1e-2, 1000 epochs, 10 warmup
epochs, colour augmentation. `teacher_epochs` shortens it (warmup shrinks in proportion) for
small budgets; the architecture, width, batch size and seed are this run's.
"""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..recipes import recipe
from .base import Method, Stage
from .supervised import METHOD as SUPERVISED
from .supervised import supervised_loss

# What the teacher takes from the supervised recipe (the rest is this run's).
TEACHER_KEYS = ("lr", "wd", "epochs", "warmup_epochs", "color_aug")


def teacher_config(cfg: TrainConfig) -> TrainConfig:
    settings = recipe("supervised", cfg.labels).settings
    teach = {k: settings[k] for k in TEACHER_KEYS}
    if cfg.teacher_epochs is not None:
        teach["warmup_epochs"] *= cfg.teacher_epochs / teach["epochs"]
        teach["epochs"] = cfg.teacher_epochs
    # eval_every is in the retraining's epochs (over the full set): the teacher reports
    # `evaluations` times
    return dataclasses.replace(cfg, decay_epochs=None, polyak=None, eval_every=0.0, **teach)


def pseudolabel_stages(cfg: TrainConfig) -> list[Stage]:
    stages = []
    if cfg.teacher is None:
        stages.append(Stage("teacher", SUPERVISED, teacher_config(cfg)))
    stages.append(Stage("retrain", SUPERVISED, cfg, data="all", labels="pseudo"))
    return stages


METHOD = Method(name="pseudolabel", loss=supervised_loss, stages=pseudolabel_stages)
