"""Benchmark: S4L-Rotation against the tuned supervised baseline on Fashion-MNIST, same budget,
3 seeds each, with a paired test; S4L-Exemplar and VAT+EntMin where the budget allows.

    python bench/methods_fashion_mnist.py --from-sweep SWEEP_DIR            # recipe of its best trial
    python bench/methods_fashion_mnist.py --from-sweep SWEEP_DIR --device cuda --jobs 12 \
        --methods supervised s4l_rotation s4l_exemplar vat_entmin

The baseline is tuned by a `baseline_1pct` sweep on Fashion-MNIST (`--from-sweep`: the
completed, not short, trial with the highest val_full_top1). Every method then trains with that
trial's recipe (labels, architecture, width, batch size, epochs = optimizer steps, lr, wd,
warmup, colour augmentation, evaluation cadence) and seeds 0, 1, 2 (the baseline is retrained:
the same code path for every row): S4L-Rotation with w_u 1 (the paper's best), S4L-Exemplar
with w_u 1, VAT+EntMin with the paper's eps 40 scaled to Fashion-MNIST (vat_eps_scale) and
w_entmin 0.3. S4L's own
hyperparameters are not tuned here: the recipe was tuned for the baseline, which favours it.

Paired by seed: the mean difference, the paired t-test and the exact sign-flip permutation test
(`methods_table.paired_test`). Writes bench/results/methods_fashion_mnist.json (with --device
cuda: methods_fashion_mnist_gpu.json, the GPU named in `machine`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import write_result  # noqa: E402
from methods_table import run_one, summarize  # noqa: E402

from tune.results import RESULTS_PARQUET, meaningful, read_table  # noqa: E402
from tune.sweep_plan import METHOD_COST  # noqa: E402

METHODS = ("supervised", "s4l_rotation", "s4l_exemplar", "vat_entmin")
# The recipe: these settings of the sweep's best trial are kept as they are.
RECIPE = ("labels", "val_size", "split_seed", "arch", "width", "batch_size", "epochs", "lr", "wd",
          "momentum", "warmup_epochs", "decay_epochs", "color_aug", "evaluations", "eval_every")
PER_METHOD = {
    "supervised": {},
    "s4l_rotation": dict(w_u=1.0, tta_rotation=True),
    "s4l_exemplar": dict(w_u=1.0),
    # eps_vat None: the paper's 40 scaled to the dataset (s4l_models.methods.vat.default_eps)
    "vat_entmin": dict(w_u=1.0, eps_vat=None, w_vat=1.0, w_entmin=0.3),
}


def best_recipe(sweep_dir: Path) -> dict:
    """The recipe of the sweep's best completed, not short, trial (by val_full_top1)."""
    df = read_table(sweep_dir / RESULTS_PARQUET)
    ok = df[meaningful(df)]
    if ok.empty:
        raise SystemExit(f"{sweep_dir}: no completed trial to take the recipe from")
    best = ok.sort_values("val_full_top1", ascending=False).iloc[0]
    recipe = {k: best[k] for k in RECIPE if k in best and pd.notna(best[k])}
    if isinstance(recipe.get("decay_epochs"), str):  # lists are stored as JSON in the table
        recipe["decay_epochs"] = json.loads(recipe["decay_epochs"])
    recipe = {k: (v.item() if hasattr(v, "item") else v) for k, v in recipe.items()}
    return {"trial_id": best["trial_id"], "val_full_top1": float(best["val_full_top1"]),
            "recipe": recipe}


def settings(method: str, recipe: dict, args, seed: int) -> dict:
    return {"method": method, "dataset": "fashion_mnist", "data_dir": args.data_dir,
            "seed": seed, "threads": args.threads, "device": args.device, **recipe,
            **PER_METHOD[method]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from-sweep", type=Path, required=True,
                   help="a finished baseline sweep on fashion_mnist (its best trial's recipe)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST's folder (default: Debian's)")
    p.add_argument("--methods", nargs="+", default=["supervised", "s4l_rotation"],
                   choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    args = p.parse_args()
    best = best_recipe(args.from_sweep)
    methods = [m for m in METHODS if m in args.methods or m == "supervised"]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        # the costliest runs first (S4L's methods push 4-16x the images of a supervised step),
        # so that the pool's workers finish together instead of one running alone at the end
        order = sorted(methods, key=lambda m: -METHOD_COST.get(m, 1.0))
        jobs = [(m, s, settings(m, best["recipe"], args, s), str(Path(tmp) / f"{m}_{s}"))
                for m in order for s in args.seeds]
        ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            rows = list(pool.map(run_one, jobs))
    table, text = summarize(rows, methods)
    print(text)
    name = "methods_fashion_mnist" + ("_gpu" if args.device == "cuda" else "")
    path = write_result(name, {
        "sweep": str(args.from_sweep), "tuned_on": best, "seeds": args.seeds, "jobs": args.jobs,
        "wall_seconds": time.time() - t0,
        "settings": {m: settings(m, best["recipe"], args, 0) for m in methods},
        "table": text, "results": table,
    })
    print(f"wrote {path} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
