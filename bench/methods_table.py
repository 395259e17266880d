"""What the methods benchmarks share: one run of a method (in a worker process) and the table of
mean +- std over seeds with the difference to the supervised baseline, paired by seed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import mean_std
from scipy import stats

from s4l_models.config import TrainConfig
from s4l_models.predictions import load_predictions
from s4l_models.run import train

KEYS = ("val_full_top1", "val_full_top5", "val_1pc_top1", "val_5pc_top1", "test_top1", "test_top5")
EXTRA_KEYS = ("val_full_rot4_top1", "test_rot4_top1")


def run_one(job) -> dict:
    method, seed, values, out = job
    t0 = time.time()
    m = train(TrainConfig.from_dict(values), out, log=lambda line: None)
    pred = load_predictions(Path(out) / "val_predictions.npz")
    per_class = [float(pred["top1"][pred["label"] == c].mean()) for c in range(10)]
    row = {k: m.get(k) for k in (*KEYS, *EXTRA_KEYS, "status", "message") if k in m}
    row.update(train_seconds=m["train_seconds"], wall_seconds=time.time() - t0,
               per_class_top1=per_class, method=method, seed=seed)
    print(f"{method:17s} seed {seed}: val_full_top1 {m['val_full_top1']:.4f} test_top1 "
          f"{m.get('test_top1', float('nan')):.4f} ({row['wall_seconds']:.0f}s)", flush=True)
    return row


def fmt(s: dict) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def paired_test(a: list[float], b: list[float]) -> dict:
    """a vs b paired by seed: mean difference, the paired t-test (scipy.stats.ttest_rel) and the
    exact sign-flip permutation test (scipy.stats.permutation_test over all 2^n sign flips)."""
    d = np.asarray(a) - np.asarray(b)
    out = {"mean_difference": float(d.mean()), "n": len(d), "wins": int((d > 0).sum())}
    if len(d) > 1 and d.std() > 0:
        out["t_test_p"] = float(stats.ttest_rel(a, b).pvalue)
    perm = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                  alternative="two-sided")
    out["sign_flip_p"] = float(perm.pvalue)
    return out


def summarize(rows: list[dict], methods: list[str]) -> tuple[dict, str]:
    """Per method: its runs, mean +- std of every metric, per-class accuracy and the paired
    comparison with `supervised` (runs matched by seed); and the table as text."""
    table = {}
    for m in methods:
        runs_m = [r for r in rows if r["method"] == m]
        keys = [k for k in (*KEYS, *EXTRA_KEYS) if all(r.get(k) is not None for r in runs_m)]
        table[m] = {
            "runs": runs_m,
            **{k: mean_std([r[k] for r in runs_m]) for k in (*keys, "train_seconds")},
            "per_class_top1": np.mean([r["per_class_top1"] for r in runs_m], axis=0).tolist(),
        }
    base = table.get("supervised")
    lines = [
        "| method | val_full top-1 | val_full top-5 | test top-1 | test top-5 | Δ val top-1 vs "
        "supervised | train s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, t in table.items():
        delta = ""
        if base is not None:
            by_seed = {b["seed"]: b for b in base["runs"]}
            pairs = [(r, by_seed[r["seed"]]) for r in t["runs"] if r["seed"] in by_seed]
            d = [r["val_full_top1"] - b["val_full_top1"] for r, b in pairs]
            t["delta_val_full_top1_vs_supervised"] = mean_std(d)
            if m != "supervised":
                t["paired_vs_supervised"] = {
                    k: paired_test([r[k] for r, _ in pairs], [b[k] for _, b in pairs])
                    for k in ("val_full_top1", "test_top1")}
            delta = f"{100 * np.mean(d):+.1f} ({sum(x > 0 for x in d)}/{len(d)} seeds better)"
        lines.append(
            f"| {m} | {fmt(t['val_full_top1'])} | {fmt(t['val_full_top5'])} | "
            f"{fmt(t['test_top1'])} | {fmt(t['test_top5'])} | {delta} | "
            f"{t['train_seconds']['mean']:.0f} |"
        )
    if "s4l_rotation" in table and "val_full_rot4_top1" in table["s4l_rotation"]:
        r = table["s4l_rotation"]
        lines.append(f"\ns4l_rotation with 4-rotation test-time averaging: val_full top-1 "
                     f"{fmt(r['val_full_rot4_top1'])}, test top-1 {fmt(r['test_rot4_top1'])}")
    if base is not None:
        lines.append("\nper-class val top-1 (mean over seeds), classes 0-9:")
        for m, t in table.items():
            lines.append(f"  {m:17s} " + " ".join(f"{100 * v:5.1f}" for v in t["per_class_top1"]))
    return table, "\n".join(lines)
