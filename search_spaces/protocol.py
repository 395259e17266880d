"""How the paper's protocol maps onto a dataset of any size: the scaled and the literal protocol.

The paper's grids were made for ILSVRC-2012, where 1% of the labels are 13 images per class
(12,811 images; the released code uses 13,000) and a batch of 256 or 1024 is 1/50 or 1/12 of
that labeled set. Applied literally to a small dataset they stop meaning anything: 1% of the
1,500 digits training images is 2 images per class, and a batch of 1024 over 20 labeled images
is one optimizer step per 50 epochs, so a "100-epoch" run is 2 steps, inside its warmup.

The scaled protocol (the sweep's default, `--protocol scaled`) keeps what the paper's numbers
mean rather than their literal values:

- Labels: a fraction of the labels becomes the number of images per class that fraction of
  ILSVRC-2012 has (1% -> 13/class, 10% -> 128/class: the released label files), because how
  many labeled examples a class has is what makes learning from few labels hard, not which
  fraction of some dataset they are. It is capped at half the images per class of the training
  part, so that at least half of every class stays unlabeled (digits' 10% becomes 50/class).
  A labels spec given per class ("13/class") is used as it is.
- Batch sizes: every batch size of the space is multiplied by one common factor, the largest at
  most 1 under which the space's shortest schedule still has TARGET_STEPS optimizer steps and
  no batch is larger than the labeled set. The ratio between the searched batch sizes stays
  (256:1024 = 1:4) and so does the paper's rule "lr given per 256 examples, scaled linearly",
  so a batch of 16 trains at lr x 16/256. Keeping the paper's ratio of batch to labeled set
  instead (256/12,811) would give batches of 2-3 images on 130 labels (too few for batch norm)
  and 50,000 steps for the 1000-epoch schedule.
- VAT's eps: the paper's values (ImageNet, [-1, 1] units) times the dataset's `vat_eps_scale`,
  the paper's own heuristic (below half the distance between neighbouring images) applied to
  this dataset.

On ILSVRC-2012 the scaled protocol is the literal one (13 and 128 per class are its 1% and 10%;
its batches already give thousands of steps). `--protocol literal` runs the paper's values as
they are on any dataset; runs too short to mean anything are then named and marked (schedule.py).
Values given with `--set` are never changed. What was changed, from what, and why is recorded in
`space.json` and printed as the sweep's first line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from s4l_models.config import MIN_BATCH, TrainConfig
from s4l_models.data.splits import parse_labels
from s4l_models.errors import UserError

from .space import Axis, SearchSpace

PROTOCOLS = ("scaled", "literal")
# Images per class of ILSVRC-2012's training set (1,281,167 / 1,000): what "1%" and "10%" of the
# labels mean in the paper (13 and 128 per class; google-research/s4l label_map_count_13000 and
# _128000).
IMAGENET_IMAGES_PER_CLASS = 1281.167
# The scaled protocol's batch sizes give the space's shortest schedule at least this many steps.
TARGET_STEPS = 200
# Nominal sizes of every dataset's training split, for plans made without reading its files.
NOMINAL_TRAIN_SIZE = {
    "digits": 1500,
    "fashion_mnist": 60_000,
    "cifar10": 50_000,
    "cifar100": 50_000,
    "imagenet": 1_281_167,
    "synthetic32": 10_000,
    "synthetic224": 4_000,
}


@dataclass(frozen=True)
class DatasetFacts:
    """What the protocol needs to know about a dataset."""

    name: str
    num_classes: int
    train_total: int  # images of the whole training split (before the validation split)
    train_part: int  # images of the training part (the training split minus validation)
    per_class_available: int  # images of the smallest class in the training part
    measured: bool  # from the loaded data (True) or from the dataset's nominal size (False)

    @classmethod
    def nominal(cls, name: str, val_size: int | None = None) -> DatasetFacts:
        from s4l_models.data.datasets import DATASETS

        spec = DATASETS[name]
        total = NOMINAL_TRAIN_SIZE[name]
        part = total - (val_size or spec.default_val_size)
        return cls(name, spec.num_classes, total, part, part // spec.num_classes, measured=False)

    @classmethod
    def measure(cls, name: str, train_labels, train_part) -> DatasetFacts:
        """From the training split's labels and the positions of its training part."""
        import numpy as np

        labels = np.asarray(train_labels)
        counts = np.bincount(labels[np.asarray(train_part)])
        counts = counts[counts > 0]
        n_part = len(np.asarray(train_part))
        return cls(
            name, int(len(np.unique(labels))), int(len(labels)), n_part, int(counts.min()), True
        )


@dataclass
class Adaptation:
    """What the protocol changed in a space: setting -> (before, after, why)."""

    protocol: str
    dataset: str
    changes: dict[str, tuple[Any, Any, str]] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the sweep's first output line."""
        if self.protocol == "literal":
            return (
                "literal protocol: the paper's labels, batch sizes and VAT eps as they are "
                "(runs too short to mean anything are named below)"
            )
        if not self.changes:
            return f"scaled protocol: the paper's values fit {self.dataset} as they are"
        parts = [f"{key} {_fmt(old)} -> {_fmt(new)}" for key, (old, new, _) in self.changes.items()]
        return (
            f"scaled protocol on {self.dataset}: " + "; ".join(parts)
            + " (the paper's label counts per class and >= "
            f"{TARGET_STEPS} optimizer steps per trial; --protocol literal runs the paper's "
            "values as they are)"
        )

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "dataset": self.dataset,
            "changes": {
                key: {"paper": _json(old), "ours": _json(new), "why": why}
                for key, (old, new, why) in self.changes.items()
            },
            "line": self.line(),
        }


def _json(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def scaled_labels(spec: str, facts: DatasetFacts) -> str:
    """The scaled protocol's labels spec: a fraction becomes ILSVRC-2012's images per class."""
    kind, amount = parse_labels(spec)
    if kind != "fraction" or amount >= 1.0:
        return spec
    per_class = max(1, int(math.floor(amount * IMAGENET_IMAGES_PER_CLASS + 0.5)))
    per_class = min(per_class, max(1, facts.per_class_available // 2))
    return f"{per_class}/class"


def labeled_count(spec: str, facts: DatasetFacts) -> int:
    """Labeled images a labels spec gives on this dataset (as `make_splits` draws them)."""
    kind, amount = parse_labels(spec)
    if kind == "fraction":
        if amount >= 1.0:
            return facts.train_part
        per_class = max(1, int(math.floor(amount * facts.train_total / facts.num_classes + 0.5)))
    else:
        per_class = int(amount)
    return per_class * facts.num_classes


def batch_factor(batches: Iterable[int], shortest_epochs: float, labeled: int) -> float:
    """The common factor (<= 1) for the batch sizes: the shortest schedule keeps TARGET_STEPS
    steps and no batch exceeds the labeled set."""
    biggest = max(batches)
    return min(1.0, labeled * shortest_epochs / (TARGET_STEPS * biggest), labeled / biggest)


def _values(space: SearchSpace, key: str) -> tuple:
    for axis in space.axes:
        if axis.key == key:
            return tuple(axis.values)
    if key in space.fixed:
        return (space.fixed[key],)
    return (getattr(TrainConfig(), key),)


def _replace(space: SearchSpace, key: str, mapping: Mapping[Any, Any], why: str) -> SearchSpace:
    """`space` with the values of `key` (axis or fixed) mapped, and the source extended."""
    axes = []
    for axis in space.axes:
        if axis.key == key:
            values = tuple(dict.fromkeys(mapping[v] for v in axis.values))  # order kept, no repeats
            axis = Axis(key, values, f"{axis.source}; {why}")
        axes.append(axis)
    fixed, sources = dict(space.fixed), dict(space.fixed_sources)
    if key in fixed:
        fixed[key] = mapping[fixed[key]]
        sources[key] = f"{sources.get(key, '')}; {why}".lstrip("; ")
    return dataclasses.replace(space, fixed=fixed, fixed_sources=sources, axes=tuple(axes))


def adapt(
    space: SearchSpace,
    facts: DatasetFacts,
    protocol: str = "scaled",
    keep: Iterable[str] = (),
) -> tuple[SearchSpace, Adaptation]:
    """The space as the protocol runs it on this dataset, and what was changed.

    `keep`: settings given explicitly (`--set`), never changed.
    """
    from s4l_models.data.datasets import DATASETS

    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    keep = set(keep)
    note = Adaptation(protocol, facts.name)
    if protocol == "literal":
        return space, note
    # 1. labels
    labels = str(space.fixed.get("labels", TrainConfig().labels))
    if "labels" not in keep:
        scaled = scaled_labels(labels, facts)
        if labeled_count(scaled, facts) != labeled_count(labels, facts):
            why = (
                f"(scaled protocol) {labels} of ILSVRC-2012's labels is {scaled} "
                f"(on {facts.name} {labels} would be "
                f"{labeled_count(labels, facts) // facts.num_classes}/class)"
            )
            space = _replace(space, "labels", {labels: scaled}, why)
            note.changes["labels"] = (labels, scaled, why)
            labels = scaled
    labeled = labeled_count(labels, facts)
    # 2. batch sizes
    if "batch_size" not in keep:
        batches = _values(space, "batch_size")
        shortest = min(float(e) for e in _values(space, "epochs"))
        f = batch_factor(batches, shortest, labeled)
        if f < 1.0:
            # never below 2 images: batch norm cannot train on one (such runs stay short and
            # are named as such)
            mapping = {b: max(MIN_BATCH, int(math.floor(b * f + 1e-9))) for b in batches}
            why = (
                f"(scaled protocol) x{f:.4g}: {labeled} labeled images and a shortest schedule "
                f"of {shortest:g} epochs give >= {TARGET_STEPS} steps (lr per 256 examples, "
                "scaled linearly)"
            )
            space = _replace(space, "batch_size", mapping, why)
            note.changes["batch_size"] = (batches, tuple(dict.fromkeys(mapping.values())), why)
    # 3. VAT's eps
    scale = DATASETS[facts.name].vat_eps_scale
    eps = [e for e in _values(space, "eps_vat") if e is not None]
    if "eps_vat" not in keep and eps and scale != 1.0 and (
        "eps_vat" in space.fixed or "eps_vat" in space.keys
    ):
        mapping = {e: round(float(e) * scale, 6) for e in eps}
        why = (
            f"(scaled protocol) x{scale:g}, {facts.name}'s vat_eps_scale: below half the "
            "distance between neighbouring images, the paper's heuristic (S4L §4.2)"
        )
        space = _replace(space, "eps_vat", mapping, why)
        note.changes["eps_vat"] = (tuple(eps), tuple(mapping.values()), why)
    return space, note


__all__ = [
    "PROTOCOLS",
    "TARGET_STEPS",
    "DatasetFacts",
    "Adaptation",
    "adapt",
    "scaled_labels",
    "labeled_count",
    "batch_factor",
]
