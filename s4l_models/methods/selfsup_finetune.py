"""Self-supervised pretraining + fine-tuning (S4L Section 4.3, Table 1).

Stage 1 `pretrain`: as `selfsup_linear` (rotation or exemplar pretext on every training image,
no labels). Stage 2 `finetune`: the whole network, initialised from the pretrained one (a fresh
classifier), trains on the labeled subset with the supervised loss and this run's settings (the
`selfsup_finetune_*` spaces search lr and wd around the best supervised baseline).
"""

from __future__ import annotations

from ..config import TrainConfig
from .base import Method, Stage
from .selfsup_linear import pretrain_stage
from .supervised import METHOD as SUPERVISED
from .supervised import supervised_loss


def selfsup_finetune_stages(cfg: TrainConfig) -> list[Stage]:
    return [pretrain_stage(cfg), Stage("finetune", SUPERVISED, cfg, init=True)]


METHOD = Method(name="selfsup_finetune", loss=supervised_loss, stages=selfsup_finetune_stages)
