"""ASHA vs the full grid: how much compute early stopping saves, and what it selects.

    python bench/asha_savings.py            # 27 minutes on 2 CPU cores shared with other jobs (2026-11-30)

The grid: baseline_10pct on digits with the paper's wd x lr axes (6 x 3 = 18 trials) and
ResNet-18 v1 x0.5, 60 epochs, batch 32 and an evaluation every 3 epochs pinned by --set (20
evaluations per trial, so that ASHA can stop a trial after 5% of its epochs). It runs twice
through `tune.run_sweep.main` on one Ray instance (2 CPUs, 2 trials at a time): `--scheduler
fifo` (every trial to the end) and `--scheduler asha` (Ray's ASHAScheduler on the evaluation
count: grace period 1 evaluation, reduction factor 3, max 20; rungs at 1, 3 and 9).

Figures: total trial-epochs of each (the compute), ASHA's share of FIFO's, the configuration
each selects by val_full_top1 among its completed trials, and that configuration's full-split
accuracy in the FIFO grid (training is deterministic, so the same configuration scores the same
in both; this is "the full-split accuracy of the selected configuration"). Goal: ASHA uses
<= 1/3 of the compute and selects a configuration within 0.5 points of the grid's best.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PINS = {"arch": "resnet18_v1", "width": "0.5", "epochs": "60", "batch_size": "32",
        "eval_every": "3"}
AXES = ("wd", "lr")


def sweep(storage: Path, name: str, scheduler: str) -> tuple[float, "object"]:
    import pandas as pd

    from tune.run_sweep import main as sweep_main

    args = ["--space", "baseline_10pct", "--max-trials", "all", "--scheduler", scheduler,
            "--no-report", "--quiet", "--storage", str(storage), "--name", name]
    for k, v in PINS.items():
        args += ["--set", f"{k}={v}"]
    t0 = time.perf_counter()
    if sweep_main(args) != 0:
        raise SystemExit(f"the {scheduler} sweep failed")
    wall = time.perf_counter() - t0
    return wall, pd.read_parquet(storage / name / "results.parquet")


def best(df):
    done = df[(df["status"] == "completed") & df["val_full_top1"].notna()]
    return done.loc[done["val_full_top1"].idxmax()]


def main() -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    with tempfile.TemporaryDirectory(prefix="s4l-asha-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("RAY_TMPDIR", str(tmp / "ray"))
        os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            fifo_wall, fifo = sweep(tmp, "fifo", "fifo")
            asha_wall, asha = sweep(tmp, "asha", "asha")
        finally:
            ray.shutdown()
    fifo_epochs = float(fifo["epochs_done"].sum())
    asha_epochs = float(asha["epochs_done"].sum())
    grid_best = best(fifo)
    pick = best(asha)
    key = tuple(pick[a] for a in AXES)
    same = fifo[(fifo["wd"] == key[0]) & (fifo["lr"] == key[1])]
    pick_in_grid = float(same["val_full_top1"].iloc[0])
    gap_pt = 100 * (float(grid_best["val_full_top1"]) - pick_in_grid)
    share = asha_epochs / fifo_epochs
    figures = {
        "space": "baseline_10pct", "pinned": PINS, "trials": int(len(fifo)),
        "fifo": {"trial_epochs": round(fifo_epochs, 1), "wall_seconds": round(fifo_wall, 1),
                 "completed": int((fifo["status"] == "completed").sum())},
        "asha": {"trial_epochs": round(asha_epochs, 1), "wall_seconds": round(asha_wall, 1),
                 "completed": int((asha["status"] == "completed").sum()),
                 "stopped_early": int((asha["status"] == "stopped_early").sum())},
        "asha_compute_share": round(share, 3),
        "grid_best": {**{a: float(grid_best[a]) for a in AXES},
                      "val_full_top1": float(grid_best["val_full_top1"]),
                      "test_top1": float(grid_best["test_top1"])},
        "asha_selected": {**{a: float(pick[a]) for a in AXES},
                          "val_full_top1_in_grid": pick_in_grid,
                          "test_top1": float(pick["test_top1"])},
        "gap_points": round(gap_pt, 2),
        "goal": "compute share <= 1/3 and gap <= 0.5 points",
        "meets_goal": share <= 1 / 3 and gap_pt <= 0.5,
    }
    path = write_result("asha_savings", figures)
    print(f"ASHA: {asha_epochs:.0f} trial-epochs vs FIFO {fifo_epochs:.0f} ({share:.0%}); selected "
          f"wd={key[0]:g} lr={key[1]:g} at {pick_in_grid:.4f} vs grid best "
          f"{float(grid_best['val_full_top1']):.4f} ({gap_pt:+.2f} pt) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
