"""Synthetic sweep directories in the exact input contract, for tests and benchmarks (test code:
it lives with the tests, not in the installed packages).

    python tests/planted_sweeps.py OUT_DIR    # a 1%-style sweep (~200 trials) in a second
    s4l-report OUT_DIR --out OUT_DIR/report

`write_sweep` writes results.parquet, results.csv, space.json, predictions.npz and
splits.npz/splits.json from given per-trial settings and per-example correctness (the
tiny-subset scores are computed from the correctness exactly as the trainer does: the first k
images per class of a seeded order; splits.npz lists those subsets' example ids in the format
of s4l_models.data.splits.save_splits, with the validation split as `val` and no training
images).
`planted_sweep` builds a grid whose answer is known: weight decay and epochs move accuracy a
lot, architecture a little, seeds add noise; examples have a shared difficulty, so trials agree
on which images are hard, as real models do.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from s4l_models.predictions import SWEEP_PREDICTIONS, quantise_conf, save_sweep_predictions
from tune.results import RESULTS_VERSION


def tiny_masks(label: np.ndarray, ks=(1, 5), seed: int = 0) -> dict[int, np.ndarray]:
    """Boolean masks of the first k examples per class of a seeded order (nested in k)."""
    order = np.random.default_rng(seed).permutation(len(label))
    rank = np.empty(len(label), dtype=np.int64)
    for c in np.unique(label):
        idx = order[label[order] == c]
        rank[idx] = np.arange(len(idx))
    return {k: rank < k for k in ks}


def write_sweep(
    run_dir: str | Path,
    settings: list[dict],
    top1: np.ndarray,
    label: np.ndarray,
    *,
    status: list[str] | None = None,
    top5: np.ndarray | None = None,
    test_top1: np.ndarray | None = None,
    ks=(1, 5),
    space_name: str = "synthetic",
    axes: list[str] | None = None,
    trial_ids: list[str] | None = None,
    columns: dict[str, list] | None = None,
    seed: int = 0,
    index: np.ndarray | None = None,
    splits: bool = True,
    pred: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    rot: np.ndarray | None = None,
) -> Path:
    """Write a sweep directory; trials whose status is not 'completed' get NaN metrics.

    `columns` overrides or adds whole columns of the results table (one value per trial),
    e.g. to plant tiny-subset scores. `index`: the example ids of the validation split
    (default 0..N-1). `splits=False` leaves out splits.npz/splits.json (as an older sweep).
    `pred`/`conf`/`rot` [T, N]: predicted classes, confidences (probabilities) and rotation hits
    stored beside the correctness (a sweep without them is one written before they existed).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    top1 = np.asarray(top1, dtype=bool)
    t, n = top1.shape
    label = np.asarray(label, dtype=np.int64)
    rng = np.random.default_rng(seed + 1)
    if top5 is None:
        top5 = top1 | (rng.random((t, n)) < 0.6)
    status = list(status or ["completed"] * t)
    ids = list(trial_ids or [f"trial_{i:05d}" for i in range(t)])
    full = top1.mean(axis=1)
    if test_top1 is None:
        test_top1 = np.clip(full + rng.normal(0, 0.005, t), 0, 1)
    rows = []
    masks = tiny_masks(label, ks, seed)
    for i in range(t):
        done = status[i] == "completed"
        nan = float("nan")
        row = {"trial_id": ids[i], "status": status[i],
               "error": "" if done else f"synthetic {status[i]}"}
        row.update({k: json.dumps(v) if isinstance(v, (list, tuple)) else v
                    for k, v in settings[i].items()})
        for k, m in masks.items():
            row[f"val_{k}pc_top1"] = top1[i, m].mean() if done else nan
            row[f"val_{k}pc_top5"] = top5[i, m].mean() if done else nan
        row["val_full_top1"] = full[i] if done else nan
        row["val_full_top5"] = top5[i].mean() if done else nan
        row["test_top1"] = test_top1[i] if done else nan
        row["test_top5"] = min(1.0, test_top1[i] + 0.2) if done else nan
        row.update(epochs_done=settings[i].get("epochs", 1) if done else 0, steps_done=100,
                   total_steps=100, short_run=False, train_seconds=1.0,
                   trial_dir=str(run_dir / ids[i]),
                   results_version=RESULTS_VERSION)
        rows.append(row)
    df = pd.DataFrame(rows)
    for c, values in (columns or {}).items():
        df[c] = list(values)
    df.to_parquet(run_dir / "results.parquet", index=False)
    df.to_csv(run_dir / "results.csv", index=False)
    axes = axes if axes is not None else [
        k for k in settings[0] if len({json.dumps(s[k]) for s in settings}) > 1 and k != "seed"]
    space = {
        "space": {"name": space_name, "description": "synthetic sweep", "size": t, "fixed": {},
                  "axes": [{"key": a, "values": sorted({json.dumps(s[a]) for s in settings}),
                            "source": "synthetic"} for a in axes]},
        "axes": axes, "flags": {}, "dataset": "synthetic", "metric": "val_full_top1",
        "mode": "max", "results_version": RESULTS_VERSION,
    }
    (run_dir / "space.json").write_text(json.dumps(space, indent=2))
    done = [i for i in range(t) if status[i] == "completed"]
    index = np.arange(n) if index is None else np.asarray(index, dtype=np.int64)
    extra = {}
    if pred is not None:
        extra.update(pred=np.asarray(pred)[done], conf=quantise_conf(np.asarray(conf)[done]))
    if rot is not None:
        extra.update(rot=np.asarray(rot)[done], has_rot=np.ones(len(done), dtype=bool))
    save_sweep_predictions(run_dir / SWEEP_PREDICTIONS, [ids[i] for i in done],
                           index, label, top1[done], top5[done], **extra)
    if splits:
        write_splits(run_dir, index, label, masks, seed=seed)
    return run_dir


def write_splits(run_dir: str | Path, index: np.ndarray, label: np.ndarray,
                 masks: dict[int, np.ndarray], *, seed: int = 0) -> Path:
    """splits.npz + splits.json as s4l_models.data.splits.save_splits writes them (int64 arrays
    train/val/labeled/tiny_{k}, sorted example ids; meta with tiny_k and counts)."""
    import io

    run_dir = Path(run_dir)
    index = np.asarray(index, dtype=np.int64)
    tiny = {int(k): np.sort(index[np.asarray(m, dtype=bool)]) for k, m in sorted(masks.items())}
    empty = np.zeros(0, dtype=np.int64)
    arrays = {"train": empty, "val": np.sort(index), "labeled": empty}
    arrays.update({f"tiny_{k}": v for k, v in tiny.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.astype(np.int64) for k, v in arrays.items()})
    (run_dir / "splits.npz").write_bytes(buf.getvalue())
    meta = {
        "dataset": "synthetic", "n_train_total": len(index),
        "num_classes": len(np.unique(label)), "val_size": len(index),
        "labels": "synthetic", "tiny_k": sorted(tiny), "split_seed": int(seed),
        "counts": {"train": 0, "val": len(index), "labeled": 0,
                   **{f"val_{k}pc": len(v) for k, v in tiny.items()}},
    }
    (run_dir / "splits.json").write_text(json.dumps(meta, indent=2))
    return run_dir / "splits.npz"


def planted_sweep(
    run_dir: str | Path,
    *,
    n_classes: int = 10,
    per_class: int = 40,
    seeds: int = 1,
    grid: dict | None = None,
    errored: int = 1,
    seed: int = 0,
) -> Path:
    """A grid sweep with known effects (wd, epochs large; arch small) written to `run_dir`."""
    grid = grid or {"wd": [1e-4, 1e-3, 1e-2], "lr": [0.03, 0.1], "epochs": [30, 100, 300],
                    "arch": ["resnet18_v1", "resnet50_v2"], "color_aug": [False, True]}
    effect = {  # logit shifts per value
        "wd": {1e-4: -1.0, 1e-3: 0.0, 1e-2: 0.4, 3e-2: -0.3},
        "epochs": {30: -1.2, 100: 0.0, 300: 0.3, 1000: 0.2},
        "lr": {0.01: -0.1, 0.03: -0.05, 0.1: 0.0, 0.3: -0.15},
        "arch": {"resnet18_v1": -0.03, "resnet50_v2": 0.03},
        "color_aug": {False: 0.0, True: 0.1},
    }
    rng = np.random.default_rng(seed)
    keys = list(grid)
    settings = []
    for combo in itertools.product(*grid.values()):
        for s in range(seeds):
            cfg = {"method": "supervised", "dataset": "synthetic", "labels": "1%",
                   "width": 1.0, "batch_size": 256, "warmup_epochs": 10.0,
                   "decay_epochs": [0.7, 0.8, 0.9]}
            cfg.update(dict(zip(keys, combo)))
            cfg["seed"] = s
            settings.append(cfg)
    t, n = len(settings), n_classes * per_class
    label = np.repeat(np.arange(n_classes), per_class)
    difficulty = rng.normal(0, 1.5, n)  # shared across trials
    logit = np.array([0.5 + sum(effect.get(k, {}).get(c[k], 0.0) for k in keys) for c in settings])
    logit += rng.normal(0, 0.08, t)  # seed noise
    p = 1 / (1 + np.exp(-(logit[:, None] - difficulty[None, :])))
    top1 = rng.random((t, n)) < p
    status = ["completed"] * t
    for i in rng.choice(t, size=min(errored, t - 2), replace=False):
        status[i] = "errored"
    return write_sweep(run_dir, settings, top1, label, status=status, space_name="planted_1pct",
                       axes=keys, seed=seed)


if __name__ == "__main__":
    out = planted_sweep(sys.argv[1] if len(sys.argv) > 1 else "runs/synthetic", seeds=2,
                        per_class=200)
    print(f"wrote a synthetic sweep to {out}")
