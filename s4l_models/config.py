"""The trainer's configuration: one typed record, its defaults, parsing and validation.

Config flows one way: CLI flags or a sweep's trial config -> `TrainConfig.from_dict` (typed,
validated, unknown keys rejected) -> trainer. Defaults are the paper's best 10%-label baseline
(S4L Section 4.1: ResNet50v2, lr 0.1, wd 1e-3, 5 warmup epochs, 200 epochs, x0.1 decays at
140/160/180) so that a bare `s4l-train` reproduces the recipe; `from_dict` fills the settings a
caller leaves out from the chosen method's own paper recipe (`s4l_models/recipes.py`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from .data.splits import parse_labels
from .errors import UserError
from .recipes import fill

# Fractions of the run after which the learning rate is multiplied by 0.1 when no explicit
# decay epochs are given (ours: the paper's best runs decay at 70/80/90%, e.g. 200 -> 140/160/180).
DEFAULT_DECAY_FRACTIONS = (0.7, 0.8, 0.9)

# eval_batch_size 0 picks the scoring batch by device: on a CPU core a batch of 128 scored
# Fashion-MNIST 2.7x faster per image than 1,024 (whose activations do not stay in cache; digits
# 1.6x), while a GPU needs big batches to stay busy (bench/README.md, eval_cadence).
AUTO_EVAL_BATCH = {"cpu": 128, "cuda": 1024}

# The roles of settings, declared once here (every other setting is a plain trainer setting that
# a search space may fix or search):
# - given by the commands' own flags (--dataset, --data-dir), never by a space or --set;
COMMAND_SETTINGS = frozenset({"dataset", "data_dir"})
# - set by a sweep for every trial (the splits it writes once), never by the user in a sweep;
DRIVER_SETTINGS = frozenset({"splits_path"})
# - deciding the shared splits: the same for every trial of a sweep, so never an axis;
MIN_BATCH = 2  # batch norm in training mode needs more than one value per channel
MAX_BATCH = 1 << 20  # about ILSVRC-2012's 1.28M images: more is a typo (1e11 hung building a batch)
SPLIT_SETTINGS = frozenset({"dataset", "labels", "val_size", "tiny_k", "split_seed"})
# - free to differ between a run and its resumption: they do not change the result (and so are
#   not part of a configuration either, tune/results.py `config_id`).
RESUME_FREE = frozenset({
    "device",
    "threads",
    "workers",
    "eval_batch_size",
    "splits_path",
    "init_from",  # only read when a run starts; its path may move with the run
    "teacher",  # only read before the first stage; a restored copy lives elsewhere
    "evaluations",  # when a run is scored; scoring changes no weight, batch or random draw
})


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------------
    method: str = "supervised"  # a name from s4l_models.methods.list_methods()
    dataset: str = "digits"  # digits | fashion_mnist | cifar10 | cifar100 | imagenet
    data_dir: str | None = None  # where the dataset's files live (digits needs none)
    labels: str = "10%"  # labeled subset: "1%", "10%", "100%" or "N/class"
    val_size: int | None = None  # custom validation split size; None = the dataset's default
    tiny_k: tuple[int, ...] = (1, 5)  # nested tiny validation subsets, images per class
    split_seed: int = 0  # seed of the validation split and label subsets (same for all trials)
    splits_path: str | None = None  # reuse saved split indices (a sweep writes them once)
    # --- model ---------------------------------------------------------------------------
    arch: str = "resnet50_v2"  # a name from s4l_models.list_models()
    width: float = 1.0  # multiplies every channel count (the paper's 4x wider = 4)
    # --- optimisation (SGD, momentum 0.9) ------------------------------------------------
    epochs: float = 200.0  # counted over the labeled data
    lr: float = 0.1  # per 256 examples; the effective lr is lr * batch_size / 256
    wd: float = 1e-3  # weight decay (L2 via SGD's weight_decay)
    momentum: float = 0.9
    warmup_epochs: float = 5.0  # linear warmup from 0
    decay_epochs: tuple[float, ...] | None = None  # x0.1 at these epochs; None = 70/80/90%
    batch_size: int = 256
    # hsvnoise on the training views (an axis of the 1% grid): of the labeled images, and of
    # the unlabeled ones too where a method trains on them (S4L-Rotation, VAT, VAT+EntMin,
    # MOAM). S4L-Exemplar ignores it (its copies always get hsvnoise), and so does the pretext
    # pretraining of selfsup_linear / selfsup_finetune (pretrain_stage turns it off).
    color_aug: bool = False
    seed: int = 0  # model init, data order and augmentation
    # --- method weights (used by the semi-supervised methods) ----------------------------
    w_u: float = 1.0  # weight of the unlabeled loss L_u
    eps_vat: float | None = None  # VAT perturbation L2 norm in [-1, 1] image units (the
    # released code's scale); None = the method recipe's value for this dataset
    vat_on_labeled: bool = True  # vat/vat_entmin: VAT and EntMin also on the labeled batch
    # (google-research/s4l --apply_vat_to_labeled, set in its vat.sh and vat_entmin.sh)
    w_vat: float = 1.0  # VAT loss weight inside L_u (vat_entmin)
    w_entmin: float = 0.0  # entropy-minimisation weight (vat_entmin)
    pretext: str = "rotation"  # self-supervised task for selfsup_* methods: rotation | exemplar
    pseudo_threshold: float = 0.0  # pseudolabel: keep unlabeled images' predictions >= this
    tta_rotation: bool = False  # also report 4-rotation test-time averaged metrics
    w_sup: float = 1.0  # weight of the labeled loss L_l (MOAM step 1 uses 0.3)
    sup_on_rotated: bool = True  # s4l_rotation/moam: L_l also on the rotated labeled copies
    polyak: bool | None = None  # Polyak-average the weights (old weights halve every epoch) and
    # evaluate the average; None = the method's default (on for moam, off otherwise)
    init_from: str | None = None  # start from trained weights (a run dir, its checkpoint/ or a .pt)
    teacher: str | None = None  # pseudolabel: label with this finished run instead of a step 1
    teacher_epochs: float | None = None  # pseudolabel step 1 length; None = the best baseline's
    pretrain_epochs: float = 35.0  # selfsup_*: pretext epochs over the whole training split
    pretrain_batch_size: int = 256  # selfsup_*: pretext batch size
    # --- evaluation and bookkeeping ------------------------------------------------------
    eval_every: float = 0.0  # evaluate/report/checkpoint every N epochs; 0 = `evaluations` times
    evaluations: int = 10  # evaluations of a run when eval_every is 0, evenly spaced, the last at
    # the end (a sweep chooses its own default by scheduler: tune/sweep_plan.py SWEEP_EVALUATIONS)
    eval_batch_size: int = 0  # 0 = automatic by device (AUTO_EVAL_BATCH)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = all CPUs of this process
    workers: int = 4  # DataLoader workers for file-backed datasets (imagenet)
    skip_bad_images: bool = False  # skip unreadable image files (counted) instead of failing
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # channels_last memory format on CUDA; on a CPU, for scoring only
    compile: bool = False  # torch.compile the model

    # ------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a validated config from plain values (strings are parsed by field type).

        Settings not in `values` come from the method's paper recipe (`s4l_models.recipes`),
        then from the defaults above."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(
                f"unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(known)}"
            )
        values = fill(values, list(known))
        hints = typing.get_type_hints(cls)
        parsed = {k: parse_value(k, v, hints[k]) for k, v in values.items()}
        cfg = cls(**parsed)
        cfg.validate()
        return cfg

    def eval_batch(self, device_type: str) -> int:
        """The scoring batch on a device of this type ("cpu", "cuda")."""
        return self.eval_batch_size or AUTO_EVAL_BATCH.get(device_type, AUTO_EVAL_BATCH["cuda"])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def resolved_decay_epochs(self) -> tuple[float, ...]:
        if self.decay_epochs is not None:
            return tuple(self.decay_epochs)
        return tuple(round(f * self.epochs, 6) for f in DEFAULT_DECAY_FRACTIONS)

    def validate(self) -> None:
        # torch-side modules, imported when a config is validated (see docs/architecture.md)
        from .data.datasets import DATASETS
        from .methods import list_methods
        from .resnet import parse_arch

        if self.dataset not in DATASETS:
            raise UserError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(sorted(DATASETS))}"
            )
        if self.method not in list_methods():
            raise UserError(
                f"unknown method {self.method!r}; choose one of {', '.join(list_methods())}"
            )
        parse_arch(self.arch)  # raises UserError listing the architectures
        parse_labels(self.labels)
        checks = [
            (self.width > 0, f"--width must be > 0, got {self.width}"),
            (self.epochs > 0, f"--epochs must be > 0, got {self.epochs}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.wd >= 0, f"--wd must be >= 0, got {self.wd}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (self.batch_size >= MIN_BATCH, f"--batch-size must be >= {MIN_BATCH} (batch norm "
             f"needs 2 images per batch), got {self.batch_size}"),
            (self.batch_size <= MAX_BATCH, f"--batch-size must be <= {MAX_BATCH:,}, got "
             f"{self.batch_size:,}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.split_seed >= 0, f"split_seed must be >= 0, got {self.split_seed}"),
            (self.eval_batch_size >= 0, "eval_batch_size must be >= 0 (0 = automatic)"),
            (self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}"),
            (self.evaluations >= 1, f"evaluations must be >= 1, got {self.evaluations}"),
            (self.threads >= 0, f"--threads must be >= 0, got {self.threads}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (
                self.eps_vat is None or self.eps_vat >= 0,
                f"eps_vat must be >= 0, got {self.eps_vat}",
            ),
            (self.pretext in ("rotation", "exemplar"), "pretext must be rotation or exemplar"),
            (self.w_sup >= 0, f"w_sup must be >= 0, got {self.w_sup}"),
            (self.w_u >= 0, f"w_u must be >= 0, got {self.w_u}"),
            (self.w_vat >= 0, f"w_vat must be >= 0, got {self.w_vat}"),
            (self.w_entmin >= 0, f"w_entmin must be >= 0, got {self.w_entmin}"),
            (self.pretrain_epochs > 0, f"pretrain_epochs must be > 0, got {self.pretrain_epochs}"),
            (MIN_BATCH <= self.pretrain_batch_size <= MAX_BATCH,
             f"pretrain_batch_size must be in {MIN_BATCH}..{MAX_BATCH:,}"),
            (
                self.teacher_epochs is None or self.teacher_epochs > 0,
                f"teacher_epochs must be > 0, got {self.teacher_epochs}",
            ),
            (0 <= self.pseudo_threshold < 1, "pseudo_threshold must be in [0, 1)"),
            (
                len(self.tiny_k) > 0 and all(k >= 1 for k in self.tiny_k),
                f"tiny_k must be positive integers, got {list(self.tiny_k)}",
            ),
            (
                self.val_size is None or self.val_size >= 1,
                f"--val-size must be >= 1, got {self.val_size}",
            ),
            (
                re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
                f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        for e in self.resolved_decay_epochs():
            if not 0 <= e <= self.epochs:
                raise UserError(f"decay epoch {e} is outside the run (0..{self.epochs} epochs)")
        # settings that only some methods accept (e.g. moam with an exemplar pretext)
        from .methods import get_method
        from .methods.base import common_validate

        method = get_method(self.method)
        common_validate(self, method)
        if method.validate is not None:
            method.validate(self)


def parse_set(items: list[str] | None) -> dict[str, str]:
    """`--set KEY=VALUE` items (both commands) as raw strings by key; `TrainConfig` types them
    (`parse_value`), so a value means the same to s4l-train and to a sweep."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r} is not KEY=VALUE; write e.g. --set epochs=2")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def parse_value(name: str, value: Any, hint: Any) -> Any:
    """Convert `value` (possibly a string from the command line) to the field's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(name, value, inner[0])
    if origin is tuple:
        elem = args[0]
        if isinstance(value, str):
            items = [s for s in re.split(r"[,\s]+", value.strip("[]() ")) if s]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(parse_value(name, v, elem) for v in items)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip())
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if math.isnan(out):
                raise ValueError
            if math.isinf(out):  # "inf" parses, then overflows a schedule or trains NaN
                raise UserError(f"setting {name}={value!r} is not finite; give a finite number")
            return out
        if hint is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    tname = getattr(hint, "__name__", str(hint))
    raise UserError(f"setting {name}={value!r} is not a valid {tname}; give a {tname} value")


__all__ = ["TrainConfig", "parse_set", "parse_value", "AUTO_EVAL_BATCH", "MIN_BATCH", "MAX_BATCH",
           "DEFAULT_DECAY_FRACTIONS", "RESUME_FREE", "COMMAND_SETTINGS", "DRIVER_SETTINGS",
           "SPLIT_SETTINGS"]
