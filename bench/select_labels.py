"""How many validation labels each selection strategy needs, on the committed sweeps.

    python bench/select_labels.py [SWEEP_DIR ...]   # default: the committed sweeps below

For every sweep (analysis/select_sim.py, the held-out yardstick of the report's validation-size
study): P(pick within 0.5 / 1 pt of the held-out best, or the best) against labeled images for
random, stratified (by the trials' voted class), disagreement (ours) and the report's k random
images per true class; the labels each needs for 0.95 and the best active strategy's saving
over the report's subsets (the goal: >= 3x); every label-free criterion's regret and Spearman's
rho. A sweep whose predictions hold no predicted classes (written before they were stored) is
listed with the reason and measured for the label-only baseline only (its report numbers).
Writes bench/results/select_labels.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.load import load_sweep  # noqa: E402
from analysis.select_report import pool_size, study, words  # noqa: E402
from analysis.select_sim import DRAWS  # noqa: E402
from bench.common import merged_rows, repo_path, sweep_dirs, write_result  # noqa: E402

# the committed sweeps: digits (the main command), the Fashion-MNIST study (written before
# predicted classes were stored: baseline only), a Fashion-MNIST sweep with them, and an
# S4L-Rotation sweep on digits (the rotation criterion)
DEFAULT = ("docs/figure3_digits", "docs/figure3_fashion_mnist", "docs/select_fashion_mnist",
           "docs/select_digits_rotation")


def measure(d: Path) -> dict:
    sweep = load_sweep(d)
    t0 = time.perf_counter()
    got = study(sweep, n_draws=DRAWS, seed=0)
    secs = time.perf_counter() - t0
    out = {"sweep": repo_path(d), "candidates": len(sweep.completed),
           "images": int(len(sweep.predictions.label)) if sweep.predictions else None}
    if got is None:
        out["skipped"] = ("predictions.npz holds only per-example correctness (the sweep was "
                          "written before predicted classes and confidences were stored); "
                          "rerun it to measure the active strategies and criteria")
        vs = d / "valsize.csv"  # its report's baseline: k random images per class
        if vs.is_file():
            import pandas as pd

            t = pd.read_csv(vs)
            t = t[t["design"] == "heldout"]
            out["report_baseline"] = t[["k_per_class", "images", "p_within_0.5pt",
                                        "p_within_0.5pt_se"]].to_dict(orient="records")
        return out
    table, crit, need, sv = got
    out.update(pool=pool_size(sweep), draws=DRAWS, seconds=round(secs, 1),
               needed=need, savings=sv,
               meets_goal_3x_at_0_95=bool(sv["ratio"] and sv["ratio"] >= 3),
               meets_3x_to_ceiling=(None if sv["to_ceiling"] is None else bool(
                   sv["to_ceiling"]["ratio"] and sv["to_ceiling"]["ratio"] >= 3)),
               words=words(need, sv, crit, pool_size(sweep)),
               criteria=crit.to_dict(orient="records"),
               curves=table.round(4).to_dict(orient="records"))
    return out


def main() -> None:
    dirs = sweep_dirs(sys.argv[1:], __doc__, list(DEFAULT))
    rows = []
    for d in dirs:
        r = measure(d)
        rows.append(r)
        if "skipped" in r:
            print(f"{d.name}: skipped: {r['skipped']}")
            continue
        print(f"{d.name}: {r['candidates']} trials, pool {r['pool']} images, {r['draws']} draws, "
              f"{r['seconds']} s")
        print("  " + r["words"])
    path = write_result("select_labels", {"sweeps": merged_rows("select_labels", rows),
                                          "goal_ratio": 3.0})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
