"""Many small trials on one GPU: aggregate images/s with 1, 2, 4 and 8 trials sharing it.

    python bench/gpu_packing.py          # needs a CUDA GPU; about 5 minutes on one H100

For n in 1, 2, 4, 8 it runs n trials at once through the sweep CLI exactly as a user packs
them, `python tune/run_sweep.py --space baseline_10pct --dataset DATASET --max-trials n
--gpus-per-trial 1/n --cpus-per-trial C --concurrency n`, with a Fashion-MNIST-size model
pinned by --set (ResNet-18 v2 x1 on 28x28 Fashion-MNIST when its files are present, else on
32x32 synthetic images; batch 128; one evaluation at the end). Each trial's training images/s
is its steps x batch / its training-loop seconds (the trainer's train_seconds minus eval and
checkpoint seconds); the aggregate is their sum, as the trials run side by side for the same
number of steps. Also reported: the sweep's wall time. The packing gain is
aggregate(n) / aggregate(1) (goal: >= 3x at the best n).

Without a GPU it writes what it could not measure (and exits 0), so the results file says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKINGS = (1, 2, 4, 8)
GOAL_GAIN = 3.0
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def run_packed(n: int, dataset: str, data_dir: str | None, steps: int, storage: Path) -> dict:
    import pandas as pd

    from tune.run_sweep import main as sweep_main

    cpus = max(1, (os.cpu_count() or 2) // n)
    batch = 128
    labeled = {"fashion_mnist": 60_000 - 10_000, "synthetic32": 10_000 - 500}[dataset]
    epochs = steps * batch / labeled
    name = f"pack{n}"
    args = ["--space", "baseline_10pct", "--dataset", dataset, "--labels", "100%",
            "--max-trials", str(n), "--gpus-per-trial", f"{1 / n:g}",
            "--cpus-per-trial", str(cpus), "--concurrency", str(n), "--no-report", "--quiet",
            "--storage", str(storage), "--name", name,
            "--set", "arch=resnet18_v2", "--set", "width=1", "--set", f"batch_size={batch}",
            "--set", f"epochs={epochs:.6f}", "--set", f"eval_every={epochs:.6f}"]
    if data_dir:
        args += ["--data-dir", data_dir]
    t0 = time.perf_counter()
    if sweep_main(args) != 0:
        raise SystemExit(f"the sweep with {n} trials per GPU failed")
    wall = time.perf_counter() - t0
    df = pd.read_parquet(storage / name / "results.parquet")
    rates = []
    for tdir, steps_done in zip(df["trial_dir"], df["steps_done"]):
        m = json.loads((Path(tdir) / "metrics.json").read_text())
        loop = m["train_seconds"] - m["eval_seconds"] - m["checkpoint_seconds"]
        rates.append(int(steps_done) * batch / loop)
    return {"trials": n, "gpus_per_trial": round(1 / n, 4), "cpus_per_trial": cpus,
            "completed": int((df["status"] == "completed").sum()),
            "per_trial_images_per_s": [round(r, 1) for r in rates],
            "aggregate_images_per_s": round(sum(rates), 1), "sweep_wall_seconds": round(wall, 1)}


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600, help="training steps per trial")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        path = write_result("gpu_packing", {
            "measured": False,
            "reason": "no CUDA GPU on the machine that ran this; run `python bench/gpu_packing.py` "
                      "on a GPU machine to fill in the figures",
            "goal_gain": GOAL_GAIN,
        })
        print(f"no GPU here: nothing measured -> {path}")
        return 0
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    dataset, data_dir = ("fashion_mnist", FASHION_DIR) if os.path.isdir(FASHION_DIR) else (
        "synthetic32", None)
    results = {}
    with tempfile.TemporaryDirectory(prefix="s4l-pack-") as tmp:
        os.environ.setdefault("RAY_TMPDIR", os.path.join(tmp, "ray"))
        os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)
        for n in PACKINGS:
            results[str(n)] = r = run_packed(n, dataset, data_dir, args.steps, Path(tmp))
            print(f"{n} trial(s) on the GPU: aggregate {r['aggregate_images_per_s']:.0f} img/s "
                  f"({r['completed']}/{n} completed, sweep {r['sweep_wall_seconds']:.0f}s)",
                  flush=True)
    base = results["1"]["aggregate_images_per_s"]
    gains = {n: round(r["aggregate_images_per_s"] / base, 2) for n, r in results.items()}
    path = write_result("gpu_packing", {
        "measured": True, "dataset": dataset, "model": "resnet18_v2 x1", "batch": 128,
        "steps_per_trial": args.steps, "packings": results, "gain_vs_one_trial": gains,
        "goal_gain": GOAL_GAIN, "meets_goal": max(gains.values()) >= GOAL_GAIN,
    })
    print(f"gain vs one trial per GPU: {gains} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
