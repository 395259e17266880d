"""What the validation-size study costs: `analysis.valsize.study` on 1,000 trials.

    python bench/valsize_cost.py                  # T = 1000, N = 500 and 5000, DRAWS draws

Times one `study` per design (held-out and nested) at the module's default number of draws
(`valsize.DRAWS`) on synthetic correctness: T trials with accuracies uniform in 85-95%, N
validation examples in 10 equal classes, every trial right on every example independently.
The cost depends on T, N, the draws and the k grid, hardly on the values. One untimed small
call first (imports, allocator); then each case once, since the machine may be shared: the
load average before and after each case is recorded next to its time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import numpy as np

    from analysis import valsize as vs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--examples", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--draws", type=int, default=vs.DRAWS)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    warm = rng.random((20, 100)) < 0.9
    vs.study(warm, np.repeat(np.arange(10), 10), n_draws=50)  # imports, first allocations
    cases = []
    for n in args.examples:
        label = np.repeat(np.arange(args.classes), n // args.classes)
        top1 = rng.random((args.trials, len(label))) < rng.uniform(0.85, 0.95, args.trials)[:, None]
        for design in vs.DESIGNS:
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = vs.study(top1, label, design=design, n_draws=args.draws)
            sec = time.perf_counter() - t0
            case = {
                "design": design, "trials": args.trials, "examples": len(label),
                "classes": args.classes, "draws": args.draws, "seconds": round(sec, 3),
                "k": [str(k) for k in res.table["k_per_class"]],
                "n_pairs": res.n_pairs,
                "load_avg_1min_before": round(load_before, 2),
                "load_avg_1min_after": round(os.getloadavg()[0], 2),
            }
            cases.append(case)
            print(f"T = {args.trials}, N = {len(label)}, {design}: {sec:.2f} s "
                  f"({args.draws} draws, k = {', '.join(case['k'])}; load "
                  f"{case['load_avg_1min_before']} -> {case['load_avg_1min_after']})", flush=True)
    path = write_result("valsize_cost", {
        "note": ("one timed run per case; the load average before and after each case says "
                 "whether other jobs shared the machine"),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "cases": cases,
    })
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
