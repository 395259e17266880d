"""Benchmark: how far the plan's cost model is from what finished sweeps measured, per image size.

    python bench/cost_calibration.py docs/figure3_digits docs/figure3_fashion_mnist
    python bench/cost_calibration.py --gpu bench/results/gpu_logs/fashion_sweep_h200_partial

The plan (`tune/sweep_plan.py` `trial_cost`) estimates a trial's seconds on one CPU core beside
another trial from one-thread step times measured on 8x8 inputs (bench/step_seconds.py). Here
every completed trial of each sweep is costed by that model (with the sweep's own split sizes)
and compared with its measured wall time (`train_seconds`, the trial's trainer wall time under
the sweep's concurrency). Per sweep: the median and quartiles of measured / estimated, and the
sums. The median ratio of a sweep on a dataset whose image size the model was not measured on
is the calibration `tune/sweep_plan.py` applies (`IMAGE_COST_FACTOR`); 8x8 stays at 1, since
the digits subset of the main command is chosen by this model. Writes
bench/results/cost_calibration.json.

`--gpu DIR`: the GPU cost model (`gpu_trial_seconds`, `gpu_hours`) against a sweep that ran on a
GPU (its results table and space.json; split sizes from the dataset's facts in space.json):
the GPU time the completed trials held (sum of train_seconds x GPUs per trial) against the
model's estimate for the same trials at the sweep's GPUs per trial and concurrency. Writes
bench/results/cost_calibration_gpu.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import merged_rows, repo_path, sweep_dirs, write_result  # noqa: E402

from s4l_models.data.datasets import DATASETS, load_dataset  # noqa: E402
from s4l_models.data.splits import load_splits  # noqa: E402
from tune.results import meaningful, read_table  # noqa: E402
from tune.sweep_plan import (  # noqa: E402
    DatasetFacts,
    Sizes,
    gpu_hours,
    gpu_trial_seconds,
    plan_sizes,
    sharing,
    trial_cost,
)


def calibrate(sweep_dir: Path) -> dict:
    space = json.loads((sweep_dir / "space.json").read_text())
    dataset = space["dataset"]
    df = read_table(sweep_dir / "results.parquet")
    ok = df[meaningful(df)]
    splits = load_splits(sweep_dir)
    data = load_dataset(dataset, ok["data_dir"].dropna().iloc[0] if ok["data_dir"].notna().any()
                        else None)
    sizes = Sizes(labeled=len(splits.labeled), val=len(splits.val),
                  test=len(data.test) if data.test is not None else 0, train=len(splits.train))
    # the model as it stood before calibration: factor 1 at every image size
    est = np.array([trial_cost(r, sizes, calibrated=False) for r in ok.to_dict("records")])
    calibrated = np.array([trial_cost(r, sizes) for r in ok.to_dict("records")])
    got = ok["train_seconds"].to_numpy(float)
    ratio = got / est
    q1, med, q3 = np.percentile(ratio, [25, 50, 75])
    flags = space.get("flags") or {}
    return {
        "sweep": repo_path(sweep_dir), "dataset": dataset,
        "image_size": DATASETS[dataset].image_size, "trials": int(len(ok)),
        "concurrency": flags.get("concurrency"), "cpus_per_trial": flags.get("cpus_per_trial"),
        "sizes": sizes.__dict__,
        "measured_seconds_sum": float(got.sum()), "estimated_seconds_sum": float(est.sum()),
        "calibrated_seconds_sum": float(calibrated.sum()),
        "ratio_median": float(med), "ratio_q1": float(q1), "ratio_q3": float(q3),
        "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
    }


def calibrate_gpu(sweep_dir: Path) -> dict:
    space = json.loads((sweep_dir / "space.json").read_text())
    flags = space.get("flags") or {}
    table = sweep_dir / "results.parquet"
    # a sweep brought back from a GPU machine may hold only the CSV copy of its table
    df = read_table(table) if table.is_file() else pd.read_csv(sweep_dir / "results.csv")
    ok = df[meaningful(df)]
    facts = DatasetFacts(**space["dataset_facts"])
    fixed = {"labels": ok["labels"].iloc[0], "val_size": int(ok["val_size"].iloc[0])
             if "val_size" in ok and ok["val_size"].notna().any() else None}
    sizes = plan_sizes(facts, fixed)
    gpus, conc = float(flags["gpus_per_trial"]), flags.get("concurrency")
    alone = np.array([gpu_trial_seconds(r, sizes) for r in ok.to_dict("records")])
    estimated = gpu_hours(alone.sum(), gpus, conc) * 3600
    held = float(ok["train_seconds"].sum() * min(1.0, gpus))
    return {
        "sweep": repo_path(sweep_dir), "dataset": space["dataset"], "trials": int(len(ok)),
        "trials_in_table": int(len(df)), "gpus_per_trial": gpus, "concurrency": conc,
        "cpus_per_trial": flags.get("cpus_per_trial"), "trials_sharing_a_gpu": sharing(gpus, conc),
        "sizes": sizes.__dict__,
        "gpu_seconds_held": held, "gpu_seconds_estimated": float(estimated),
        "measured_over_estimated": held / float(estimated),
        "trial_seconds_median": float(ok["train_seconds"].median()),
        "eval_seconds_median": float(ok["eval_seconds"].median()),
        "alone_estimate_seconds_median": float(np.median(alone)),
    }


def main() -> None:
    if sys.argv[1:2] == ["--gpu"]:
        rows = [calibrate_gpu(Path(d)) for d in sys.argv[2:]]
        for r in rows:
            print(f"{r['dataset']} on a GPU ({r['trials']} completed trials, "
                  f"{r['trials_sharing_a_gpu']} sharing a GPU at {r['gpus_per_trial']:g} each): "
                  f"{r['gpu_seconds_held']:.0f} GPU-seconds held vs {r['gpu_seconds_estimated']:.0f}"
                  f" estimated, measured / estimated {r['measured_over_estimated']:.2f}")
        path = write_result("cost_calibration_gpu", {
            "sweeps": rows, "model": "tune/sweep_plan.py gpu_trial_seconds and gpu_hours"})
        print(f"wrote {path}")
        return
    dirs = sweep_dirs(sys.argv[1:], __doc__,
                      ["docs/figure3_digits", "docs/figure3_fashion_mnist"])
    rows = [calibrate(d) for d in dirs]
    for r in rows:
        print(f"{r['dataset']} ({r['image_size']}x{r['image_size']}, {r['trials']} trials): "
              f"measured / estimated median {r['ratio_median']:.2f} (quartiles "
              f"{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}); sums {r['measured_seconds_sum']:.0f} s "
              f"measured vs {r['estimated_seconds_sum']:.0f} s estimated by the 8x8 model, "
              f"{r['calibrated_seconds_sum']:.0f} s calibrated")
    path = write_result("cost_calibration", {"sweeps": merged_rows("cost_calibration", rows),
                                             "model": "tune/sweep_plan.py trial_cost at factor 1"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
