"""What a method is: a named loss over a labeled and (optionally) an unlabeled batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import TrainConfig
from ..data.augment import Augmenter


@dataclass
class Batch:
    images: torch.Tensor  # uint8 [B, C, H, W] on the training device
    labels: torch.Tensor  # int64 [B] (-1 marks an image that could not be read)


@dataclass
class StepContext:
    cfg: TrainConfig
    augment: Augmenter
    gen: torch.Generator  # seeded per step: augmentation is a function of (seed, step)
    num_classes: int
    heads: nn.ModuleDict  # extra trainable heads a method declared (e.g. rotation)
    autocast: Callable  # context manager factory for mixed precision


LossFn = Callable[
    [nn.Module, Batch, "Batch | None", StepContext], tuple[torch.Tensor, dict[str, torch.Tensor]]
]


@dataclass(frozen=True)
class Method:
    name: str
    loss: LossFn  # returns (total loss, named parts for logging)
    uses_unlabeled: bool = False  # draw an unlabeled batch of equal size each step
    # extra heads on the pre-logits: name -> builder(num_features, cfg) -> nn.Module
    heads: dict[str, Callable[[int, TrainConfig], nn.Module]] = field(default_factory=dict)
