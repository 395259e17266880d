"""What the report costs at its default Monte-Carlo sizes.

    python bench/report_cost.py            # run it alone: it times the CPU

`s4l-report` resamples a lot (validation-size draws per k and design, bootstrap resamples of
every correlation, permutations of every sweep axis); the defaults are chosen so that every
probability near 0.95 carries a Monte-Carlo standard error of at most 0.005. This measures
`build_report` end to end (figures and page included) on synthetic sweeps in the exact input
contract (`tests/planted_sweeps.py`), at the defaults, for 100 and 1,000 trials on a 500-image
validation split (the digits sweeps' size) and 1,000 trials on 5,000 images (Fashion-MNIST's).
Writes bench/results/report_cost.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [(100, 50), (1000, 50), (1000, 500)]  # (trials, validation images per class), 10 classes


def _sweep(path: Path, trials: int, per_class: int, seed: int = 0) -> Path:
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))  # the planted-sweep writer lives with the tests
    from planted_sweeps import write_sweep

    rng = np.random.default_rng(seed)
    n = 10 * per_class
    label = np.repeat(np.arange(10), per_class)
    wd = rng.choice([1e-4, 1e-3, 1e-2, 3e-2], trials)
    lr = rng.choice([0.03, 0.1, 0.3], trials)
    skill = 0.8 + 0.05 * np.log10(wd / 1e-4) / 2.5 + rng.normal(0, 0.01, trials)
    difficulty = rng.normal(0, 1.0, n)
    logit = np.log(skill / (1 - skill))[:, None] - difficulty[None, :]
    top1 = rng.random((trials, n)) < 1 / (1 + np.exp(-logit))
    settings = [{"method": "supervised", "wd": float(w), "lr": float(r), "seed": 0}
                for w, r in zip(wd, lr)]
    return write_sweep(path, settings, top1, label, axes=["wd", "lr"], space_name="cost")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    from analysis.report import build_report

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for trials, per_class in CASES:
            d = _sweep(Path(tmp) / f"s{trials}_{per_class}", trials, per_class)
            times = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                build_report([d], Path(tmp) / f"r{trials}_{per_class}_{r}")
                times.append(time.perf_counter() - t0)
            rows.append({"trials": trials, "val_images": 10 * per_class,
                         "seconds": min(times), "all_seconds": times})
            print(f"{trials} trials x {10 * per_class} validation images: "
                  f"{min(times):.1f} s", flush=True)
    from analysis import sensitivity, stats, valsize

    write_result("report_cost", {
        "what": "build_report end to end at the default Monte-Carlo sizes",
        "draws": valsize.DRAWS, "boot": stats.BOOT, "permutations": sensitivity.PERMUTATIONS,
        "cases": rows,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
