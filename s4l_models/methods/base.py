"""What a method is: a named loss over a labeled and (optionally) an unlabeled batch.

Single-stage methods are just a loss (plus the extra heads it trains). Multi-stage methods
(pseudolabel, selfsup_linear, selfsup_finetune, moam) also declare `stages(cfg)`: a list of
`Stage`s, each a single-stage loss with its own derived settings, which the trainer runs one
after the other (see `s4l_models.stages.run_stages`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from ..config import TrainConfig
from ..data.augment import Augmenter
from ..data.splits import parse_labels
from ..errors import UserError


@dataclass
class Batch:
    images: torch.Tensor  # uint8 [B, C, H, W] on the training device ([B, copies, C, H, W]
    # from a file-backed source for a method with train_copies > 1)
    labels: torch.Tensor  # int64 [B] (-1 marks an image that could not be read)
    # int64 [B] on the CPU: each image's index in the source's images (`IndexStream.batch`), or
    # None where unknown. A batch can hold one image twice (it spans two shuffled passes);
    # S4L-Exemplar needs to know, as the copies of one image are its triplet positives.
    indices: torch.Tensor | None = None


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
class Stage:
    """One step of a multi-stage method: a single-stage loss trained with derived settings.

    The trainer runs stage i into `out_dir/stage_<i>_<name>/`. `data` picks what one epoch
    passes over: the labeled subset, or every image of the training split (pretext pretraining
    and pseudo-labeled retraining, whose epochs are over the full set). `labels="pseudo"` (with
    data="all") trains the unlabeled images on the previous stage's predictions (or those of
    `cfg.teacher` when it is the first stage), computed on a single central view or averaged
    over 5 crops x 4 rotations, and the labeled ones on their true labels; unlabeled images
    predicted below `cfg.pseudo_threshold` confidence are left out. `init` starts the stage from the previous
    stage's final weights (its Polyak average when it kept one) instead of a fresh network.
    """

    name: str
    method: Method
    cfg: TrainConfig
    data: str = "labeled"  # "labeled" | "all"
    labels: str = "true"  # "true" | "pseudo"
    pseudo_views: str = "center"  # "center" | "5crop_rot4"
    init: bool = False

    def __post_init__(self):
        if self.data not in ("labeled", "all"):
            raise ValueError(f"stage data must be labeled or all, got {self.data!r}")
        if self.labels not in ("true", "pseudo"):
            raise ValueError(f"stage labels must be true or pseudo, got {self.labels!r}")
        if self.pseudo_views not in ("center", "5crop_rot4"):
            raise ValueError(f"unknown pseudo_views {self.pseudo_views!r}")
        if self.labels == "pseudo" and self.data != "all":
            # the labeled images keep their true labels, so pseudo-labels need the unlabeled
            raise ValueError("a pseudo-labeled stage trains on all images: data must be 'all'")


@dataclass(frozen=True)
class Method:
    name: str
    loss: LossFn  # returns (total loss, named parts for logging)
    uses_unlabeled: bool = False  # draw an unlabeled batch of equal size each step
    # extra heads on the pre-logits: name -> builder(num_features, cfg) -> nn.Module
    heads: dict[str, Callable[[int, TrainConfig], nn.Module]] = field(default_factory=dict)
    # what the optimiser updates: "all" (network + heads) or "head" (the linear classifier
    # `model.head` only, on frozen features: the linear evaluation of self-supervision)
    trainable: str = "all"
    # multi-stage methods: cfg -> the stages to run in order (None = a single-stage method)
    stages: Callable[[TrainConfig], list[Stage]] | None = None
    # raise UserError for settings this method cannot honour (called by TrainConfig.validate)
    validate: Callable[[TrainConfig], None] | None = None
    polyak: bool = False  # Polyak averaging when cfg.polyak is None
    # the network learns to classify rotated images, so 4-rotation test-time averaging is
    # meaningful (cfg.tta_rotation is refused for the other methods)
    rotation_tta: bool = False
    # independently cropped copies of every training image that a file-backed source (ImageNet
    # folders, cropped in DataLoader workers) must deliver: S4L-Exemplar's 8; in-memory
    # datasets are cropped on the device and ignore it
    train_copies: int = 1


def readable(batch: Batch | None) -> Batch | None:
    """The batch without unreadable images (label -1; only file-backed datasets have them)."""
    if batch is None:
        return None
    keep = batch.labels >= 0
    if bool(keep.all()):
        return batch
    return Batch(batch.images[keep], batch.labels[keep])


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy -sum_y p(y|x) log p(y|x) over the batch (EntMin's loss)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


def linear_head(num_outputs: int) -> Callable[[int, TrainConfig], nn.Module]:
    """A head builder: a linear layer from the pre-logits to `num_outputs`."""

    def build(num_features: int, cfg: TrainConfig) -> nn.Module:
        return nn.Linear(num_features, num_outputs)

    return build


def polyak_for(method: Method, cfg: TrainConfig) -> bool:
    return method.polyak if cfg.polyak is None else bool(cfg.polyak)


def refuse_unless(cfg: TrainConfig, allowed: set[str], setting: str, is_set: bool, hint: str):
    """UserError when `setting` is set for a method outside `allowed` (one line with the fix)."""
    if is_set and cfg.method not in allowed:
        raise UserError(
            f"--method {cfg.method} does not use {setting}; {hint} (it applies to "
            f"{', '.join(sorted(allowed))})"
        )


def common_validate(cfg: TrainConfig, method: Method) -> None:
    """Checks every method shares: settings that belong to other methods are refused."""
    refuse_unless(
        cfg, {"pseudolabel"}, "--teacher", cfg.teacher is not None, "drop --teacher"
    )
    refuse_unless(
        cfg,
        {"pseudolabel"},
        "--teacher-epochs",
        cfg.teacher_epochs is not None,
        "drop --teacher-epochs",
    )
    refuse_unless(
        cfg,
        {"pseudolabel", "moam"},
        "pseudo_threshold",
        cfg.pseudo_threshold > 0,
        "leave pseudo_threshold at 0",
    )
    refuse_unless(
        cfg,
        {"selfsup_linear", "selfsup_finetune"},
        "--pretext",
        cfg.pretext != "rotation",
        "the pretext task is chosen only for the self-supervised baselines",
    )
    refuse_unless(
        cfg,
        {"s4l_rotation", "moam"},
        "sup_on_rotated",
        not cfg.sup_on_rotated,
        "it chooses where S4L-Rotation's classification loss applies",
    )
    refuse_unless(
        cfg,
        {"vat", "vat_entmin"},
        "vat_on_labeled",
        not cfg.vat_on_labeled,
        "it chooses whether VAT and EntMin also see the labeled batch (MOAM follows the "
        "released rotation_vat.py, which applies them to unlabeled images only)",
    )
    # the loss weights and VAT's radius of the semi-supervised methods, and the pretraining of
    # the self-supervised baselines: set away from their defaults for a method that has no
    # such term, they would be ignored while config.json and the results table show them
    owners = {
        "w_u": {"s4l_rotation", "s4l_exemplar", "vat", "vat_entmin", "moam"},
        **dict.fromkeys(("eps_vat", "w_vat", "w_entmin"), {"vat", "vat_entmin", "moam"}),
        **dict.fromkeys(("pretrain_epochs", "pretrain_batch_size"),
                        {"selfsup_linear", "selfsup_finetune"}),
    }
    defaults = {f.name: f.default for f in fields(cfg)}
    for key, allowed in owners.items():
        hint = f"drop {key}" if defaults[key] is None else f"leave {key} at {defaults[key]:g}"
        refuse_unless(cfg, allowed, key, getattr(cfg, key) != defaults[key], hint)
    if cfg.method in ("pseudolabel", "moam") and parse_labels(cfg.labels) == ("fraction", 1.0):
        raise UserError(
            f"--method {cfg.method} trains on pseudo-labels of the unlabeled images, and "
            f"--labels {cfg.labels} leaves none unlabeled; use fewer labels (e.g. 10%)"
        )
    if cfg.tta_rotation and not method.rotation_tta:
        raise UserError(
            f"--method {cfg.method} does not train on rotated images, so --tta-rotation has no "
            "meaning for it; use it with s4l_rotation or moam"
        )
    if cfg.init_from is not None and method.stages is not None:
        raise UserError(
            f"--method {cfg.method} runs several stages that start from each other; --init-from "
            "only applies to single-stage methods (pseudolabel takes --teacher)"
        )
