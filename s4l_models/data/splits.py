"""Seeded, class-stratified splits: custom validation, labeled subset, nested tiny validation sets.

The paper's protocol (S4L Sections 4 and 7): model selection never touches the public test data.
A validation split is held out of the training set (class-stratified, seeded); the labeled
subset is drawn class-balanced from what remains (a fraction such as "1%" means that fraction of
the whole training split per class: 13 images per class on ILSVRC-2012, as the released code); tiny validation subsets of k images per class
are nested (1 ⊂ 5 ⊂ full). All indices are positions in the dataset's training split.

Splits are saved as `splits.npz` + `splits.json` and reused, so every trial of a sweep trains
and is scored on exactly the same images. Per-class orders are seeded permutations, so label
subsets are nested too (1% ⊂ 10% for the same seed).
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import atomic_write_bytes, atomic_write_text

LABELS_PATTERN = re.compile(r"^(?:(?P<pct>\d+(?:\.\d+)?)%|(?P<per>\d+)/class)$")


def parse_labels(spec: str) -> tuple[str, float]:
    """Parse a labels spec: ('fraction', 0.1) for "10%" or ('per_class', 13) for "13/class"."""
    m = LABELS_PATTERN.match(str(spec).strip())
    if not m:
        raise UserError(
            f"--labels {spec!r} is not understood; use a percentage such as 10% or a count "
            "per class such as 13/class"
        )
    if m.group("pct") is not None:
        pct = float(m.group("pct"))
        if not 0 < pct <= 100:
            raise UserError(f"--labels {spec} is out of range; use a percentage in (0%, 100%]")
        return "fraction", pct / 100.0
    per = int(m.group("per"))
    if per < 1:
        raise UserError(f"--labels {spec} is out of range; use at least 1/class")
    return "per_class", float(per)


SPLITS_NPZ = "splits.npz"
SPLITS_JSON = "splits.json"


@dataclass
class Splits:
    train: np.ndarray  # training part (labeled + unlabeled pool), positions in dataset.train
    val: np.ndarray  # custom validation split
    labeled: np.ndarray  # labeled subset, a subset of `train`
    tiny: dict[int, np.ndarray]  # k images per class -> subset of `val`, nested in k
    meta: dict


def _stratified_prefix(
    labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator, what: str
):
    """Take `per_class` items of every class from `pool` in a seeded order (nested in per_class)."""
    chosen = []
    classes = np.unique(labels)
    for c in classes:
        members = pool[labels[pool] == c]
        if len(members) < per_class:
            raise UserError(
                f"{what} needs {per_class} images of class {c} but only {len(members)} exist; "
                f"ask for fewer per class"
            )
        chosen.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def make_splits(
    labels: np.ndarray,
    num_classes: int,
    val_size: int,
    labels_spec: str,
    tiny_k: tuple[int, ...],
    seed: int,
) -> Splits:
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise UserError("the dataset's training files hold no images; check --data-dir")
    # a stratified split leaves at least one image of every class on each side
    present, counts = np.unique(labels, return_counts=True)
    classes = len(present)
    if counts.min() < 2:
        lone = int(present[counts.argmin()])
        raise UserError(
            f"class {lone} of the training split has only 1 image, and the validation split "
            "keeps one image of every class beside the training part; add images of that "
            "class (or remove its folder)"
        )
    if not classes <= val_size <= n - classes:
        raise UserError(
            f"--val-size {val_size} must be between {classes} and {n - classes} (the training "
            f"split has {n} images of {classes} classes, and each side keeps one of every class; "
            "in a sweep: --set val_size=N)"
        )
    if val_size < num_classes:
        raise UserError(
            f"--val-size {val_size} is smaller than the {num_classes} classes; use at least one "
            "image per class"
        )
    all_idx = np.arange(n)
    from sklearn.model_selection import train_test_split  # ~1 s import: only here

    train, val = train_test_split(
        all_idx, test_size=val_size, stratify=labels, random_state=seed, shuffle=True
    )
    train, val = np.sort(train), np.sort(val)

    rng = np.random.default_rng([seed, 1])
    kind, amount = parse_labels(labels_spec)
    if kind == "fraction" and amount >= 1.0:
        labeled = train.copy()
    else:
        if kind == "fraction":
            # A fraction of the labels is a fraction of the whole training split, per class and
            # rounded half up, as in the paper's released label files: 1% and 10% of ILSVRC-2012
            # are google-research/s4l's label_map_count_13000 and _128000 (13 and 128 images per
            # class), not a fraction of what remains once the validation split is held out.
            per_class = max(1, int(math.floor(amount * n / num_classes + 0.5)))
        else:
            per_class = int(amount)
        labeled = _stratified_prefix(labels, train, per_class, rng, f"--labels {labels_spec}")

    # Tiny subsets: one seeded order per class, k-prefixes, so 1/class ⊂ 5/class ⊂ full.
    rng_val = np.random.default_rng([seed, 2])
    ks = sorted(set(int(k) for k in tiny_k))
    per_class_order = {}
    for c in np.unique(labels[val]):
        per_class_order[c] = rng_val.permutation(val[labels[val] == c])
    smallest = min(len(v) for v in per_class_order.values())
    if ks and ks[-1] > smallest:
        raise UserError(
            f"tiny validation subsets ask for {ks[-1]} images per class but the validation split "
            f"has only {smallest} of its smallest class; lower tiny_k or raise --val-size"
        )
    tiny = {
        k: np.sort(np.concatenate([order[:k] for order in per_class_order.values()])) for k in ks
    }
    meta = {
        "n_train_total": int(n),
        "num_classes": int(num_classes),
        "val_size": int(val_size),
        "labels": str(labels_spec),
        "tiny_k": ks,
        "split_seed": int(seed),
        "counts": {
            "train": int(len(train)),
            "val": int(len(val)),
            "labeled": int(len(labeled)),
            **{f"val_{k}pc": int(len(v)) for k, v in tiny.items()},
        },
    }
    return Splits(train=train, val=val, labeled=labeled, tiny=tiny, meta=meta)


def save_splits(splits: Splits, directory: str | os.PathLike, dataset: str) -> Path:
    """Write splits.npz and splits.json atomically into `directory`; returns the npz path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"train": splits.train, "val": splits.val, "labeled": splits.labeled}
    arrays.update({f"tiny_{k}": v for k, v in splits.tiny.items()})
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.astype(np.int64) for k, v in arrays.items()})
    atomic_write_bytes(d / SPLITS_NPZ, buf.getvalue())
    atomic_write_text(d / SPLITS_JSON, json.dumps({"dataset": dataset, **splits.meta}, indent=2))
    return d / SPLITS_NPZ


def load_splits(path: str | os.PathLike) -> Splits:
    """Load splits from a directory holding splits.npz/splits.json (or the npz path itself)."""
    p = Path(path)
    d = p if p.is_dir() else p.parent
    if not (d / SPLITS_NPZ).is_file() or not (d / SPLITS_JSON).is_file():
        raise UserError(f"no saved splits at {d} (expected {SPLITS_NPZ} and {SPLITS_JSON})")
    try:
        meta = json.loads((d / SPLITS_JSON).read_text())
        with np.load(d / SPLITS_NPZ) as z:
            tiny = {k: z[f"tiny_{k}"] for k in meta["tiny_k"]}
            return Splits(train=z["train"], val=z["val"], labeled=z["labeled"], tiny=tiny,
                          meta=meta)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise UserError(f"the saved splits at {d} are unreadable ({type(err).__name__}); restore "
                        f"{SPLITS_NPZ} and {SPLITS_JSON} or start a fresh run") from None


# what decides a split file's contents (besides the dataset's own labels)
MADE_WITH = ("dataset", "n_train_total", "val_size", "labels", "tiny_k", "split_seed")


def split_request(values: dict, default_val_size: int) -> dict:
    """The split settings a config (a dict: a TrainConfig's, or a saved run's config.json)
    asks for, as a split file's meta records them (`val_size` resolved to the dataset's
    default when unset; `tiny_k` sorted and unique)."""
    return {
        "dataset": values.get("dataset"), "labels": values.get("labels"),
        "val_size": values.get("val_size") or default_val_size,
        "tiny_k": sorted(set(int(k) for k in values.get("tiny_k") or ())),
        "split_seed": values.get("split_seed"),
    }


def meta_differences(saved: dict, want: dict) -> list[str]:
    """The MADE_WITH settings in which a split file's meta differs from a request."""
    return [k for k in MADE_WITH if saved.get(k) != want.get(k)]


def splits_for(
    directory: str | os.PathLike,
    dataset: str,
    labels: np.ndarray,
    num_classes: int,
    val_size: int,
    labels_spec: str,
    tiny_k: tuple[int, ...],
    seed: int,
) -> Splits:
    """Reuse the splits saved in `directory` if they match the request, else make and save them."""
    d = Path(directory)
    fresh = make_splits(labels, num_classes, val_size, labels_spec, tiny_k, seed)
    if (d / SPLITS_JSON).is_file():
        saved = load_splits(d)
        diff = meta_differences(saved.meta, {"dataset": dataset, **fresh.meta})
        if diff:
            raise UserError(
                f"the splits saved in {d} were made with other settings ({', '.join(diff)}); "
                "use another output directory"
            )
        return saved
    save_splits(fresh, d, dataset)
    return fresh
