"""Benchmark: how far the plan's cost model is from what finished sweeps measured, per image size.

    python bench/cost_calibration.py docs/figure3_digits docs/figure3_fashion_mnist

The plan (`tune/sweep_plan.py` `trial_cost`) estimates a trial's seconds on one CPU core beside
another trial from one-thread step times measured on 8x8 inputs (bench/step_seconds.py). Here
every completed trial of each sweep is costed by that model (with the sweep's own split sizes)
and compared with its measured wall time (`train_seconds`, the trial's trainer wall time under
the sweep's concurrency). Per sweep: the median and quartiles of measured / estimated, and the
sums. The median ratio of a sweep on a dataset whose image size the model was not measured on
is the calibration `tune/sweep_plan.py` applies (`IMAGE_COST_FACTOR`); 8x8 stays at 1, since
the digits subset of the main command is chosen by this model. Writes
bench/results/cost_calibration.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import write_result  # noqa: E402

from s4l_models.data.datasets import DATASETS, load_dataset  # noqa: E402
from s4l_models.data.splits import load_splits  # noqa: E402
from tune.results import meaningful, read_table  # noqa: E402
from tune.sweep_plan import Sizes, trial_cost  # noqa: E402


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
        "sweep": str(sweep_dir), "dataset": dataset,
        "image_size": DATASETS[dataset].image_size, "trials": int(len(ok)),
        "concurrency": flags.get("concurrency"), "cpus_per_trial": flags.get("cpus_per_trial"),
        "sizes": sizes.__dict__,
        "measured_seconds_sum": float(got.sum()), "estimated_seconds_sum": float(est.sum()),
        "calibrated_seconds_sum": float(calibrated.sum()),
        "ratio_median": float(med), "ratio_q1": float(q1), "ratio_q3": float(q3),
        "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
    }


def main() -> None:
    dirs = [Path(d) for d in sys.argv[1:]] or [Path("docs/figure3_digits")]
    rows = [calibrate(d) for d in dirs]
    for r in rows:
        print(f"{r['dataset']} ({r['image_size']}x{r['image_size']}, {r['trials']} trials): "
              f"measured / estimated median {r['ratio_median']:.2f} (quartiles "
              f"{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}); sums {r['measured_seconds_sum']:.0f} s "
              f"measured vs {r['estimated_seconds_sum']:.0f} s estimated by the 8x8 model, "
              f"{r['calibrated_seconds_sum']:.0f} s calibrated")
    path = write_result("cost_calibration", {"sweeps": rows,
                                             "model": "tune/sweep_plan.py trial_cost at factor 1"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
