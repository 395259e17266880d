"""What evaluation costs a trial, at the sweep's default cadence and at 10 evaluations.

    python bench/eval_cadence.py                  # digits (the main command's median trial)
                                                  # and Fashion-MNIST (1% labels, 938 steps)
    python bench/eval_cadence.py --only digits

Every evaluation scores the whole validation split (the tiny subsets are read off that pass)
and writes a checkpoint; the public test split is scored once, at the final evaluation. For
each case the same configuration is trained twice side by side (2 processes, 1 torch thread
each, as a sweep runs 2 trials on 2 cores): with `evaluations` = 10 (the trainer's default) and
with the sweep's FIFO default (`tune.sweep_plan.SWEEP_EVALUATIONS["fifo"]`). Figures per run:
`train_seconds` (the run's wall time), `eval_seconds` (validation passes plus the final test
pass), their ratio, and the final `val_full_top1`/`test_top1` (the same model either way:
evaluation changes no weight, batch or random draw, so they must agree).

Cases: digits, the point of median estimated cost among the main command's 24
(`python tune/run_sweep.py --space baseline_1pct`); Fashion-MNIST, the configuration of the
efficiency issue (`s4l-train --method supervised --dataset fashion_mnist --labels 1% --arch
resnet18_v2 --width 0.25 --epochs 100 --batch-size 64 --threads 1`). Fashion-MNIST is read from
`--data-dir` (default: Debian's dataset-fashion-mnist directory) and skipped when absent.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
GOAL_FRACTION = 0.10


def _run(values: dict, out: str) -> dict:
    from s4l_models.config import TrainConfig
    from s4l_models.run import train

    m = train(TrainConfig.from_dict(values), out, log=lambda line: None)
    keep = ("train_seconds", "eval_seconds", "checkpoint_seconds", "steps", "val_full_top1",
            "test_top1", "num_val")
    return {k: m.get(k) for k in keep}


def digits_case() -> dict:
    from tune.sweep_plan import make_plan

    plan = make_plan("baseline_1pct")
    points = sorted(plan.points, key=plan.cost)
    point = points[len(points) // 2]
    values = {k: v for k, v in plan.trial_config(point).items() if k != "evaluations"}
    return {**values, "dataset": "digits", "threads": 1}


def fashion_case(data_dir: str) -> dict:
    return {"method": "supervised", "dataset": "fashion_mnist", "data_dir": data_dir,
            "labels": "1%", "arch": "resnet18_v2", "width": 0.25, "epochs": 100.0,
            "batch_size": 64, "threads": 1}


def measure(name: str, values: dict, cadences: tuple[int, ...], tmp: Path) -> dict:
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(cadences), mp_context=ctx) as pool:
        futures = {e: pool.submit(_run, {**values, "evaluations": e}, str(tmp / f"{name}-{e}"))
                   for e in cadences}
        runs = {e: f.result() for e, f in futures.items()}
    out = {"config": {k: v for k, v in values.items() if k != "data_dir"}, "runs": {}}
    for e, r in runs.items():
        frac = r["eval_seconds"] / r["train_seconds"]
        out["runs"][str(e)] = {**r, "evaluations": e, "eval_fraction": round(frac, 4)}
        print(f"{name} evaluations={e}: {r['train_seconds']:.1f} s, evaluation "
              f"{r['eval_seconds']:.1f} s = {frac:.1%}; val {r['val_full_top1']:.4f} "
              f"test {r['test_top1']:.4f}", flush=True)
    return out


def main() -> None:
    from tune.sweep_plan import SWEEP_EVALUATIONS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("digits", "fashion_mnist"))
    ap.add_argument("--data-dir", default=FASHION_DIR)
    args = ap.parse_args()
    default = SWEEP_EVALUATIONS["fifo"][0]
    cadences = (10, default)
    cases = {}
    with tempfile.TemporaryDirectory(prefix="s4l-eval-cadence-") as tmp:
        if args.only in (None, "digits"):
            cases["digits"] = measure("digits", digits_case(), cadences, Path(tmp))
        if args.only in (None, "fashion_mnist") and Path(args.data_dir).is_dir():
            cases["fashion_mnist"] = measure(
                "fashion_mnist", fashion_case(args.data_dir), cadences, Path(tmp))
    for case in cases.values():
        runs = case["runs"]
        case["same_final_model"] = (
            runs["10"]["val_full_top1"] == runs[str(default)]["val_full_top1"]
            and runs["10"]["test_top1"] == runs[str(default)]["test_top1"]
        )
        case["meets_goal_at_default"] = runs[str(default)]["eval_fraction"] <= GOAL_FRACTION
    path = write_result("eval_cadence", {"default_evaluations": default,
                                         "goal_eval_fraction": GOAL_FRACTION, "cases": cases})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
