"""Benchmark: the supervised recipe on digits, 10% and 100% labels, mean ± std over seeds.

    python bench/supervised_digits.py                       # 3 seeds, ResNet-18 v2, ~25 min on 2 CPUs
    python bench/supervised_digits.py --labels 10% --seeds 0 1

The recipe is the paper's best 10% baseline (lr 0.1 per 256, wd 1e-3, 5 warmup epochs,
200 epochs with x0.1 decays at 140/160/180, batch 256, inception crop) on ResNet-18 v2 width 1
(ResNet-50 v2 is the paper's model; on 8x8 digits and 2 CPUs ResNet-18 keeps this benchmark
under half an hour). Writes bench/results/supervised_digits.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mean_std, write_result  # noqa: E402

from s4l_models.config import TrainConfig  # noqa: E402
from s4l_models.run import train  # noqa: E402

KEYS = ("val_full_top1", "val_full_top5", "val_1pc_top1", "val_5pc_top1", "test_top1", "test_top5")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", nargs="+", default=["10%", "100%"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--arch", default="resnet18_v2")
    p.add_argument("--epochs", type=float, default=200)
    args = p.parse_args()
    table = {}
    for labels in args.labels:
        runs = []
        for seed in args.seeds:
            cfg = TrainConfig.from_dict(
                dict(dataset="digits", labels=labels, arch=args.arch, epochs=args.epochs, seed=seed)
            )
            with tempfile.TemporaryDirectory() as out:
                m = train(cfg, out, log=lambda line: None)
            runs.append({k: m.get(k) for k in (*KEYS, "train_seconds", "status", "num_labeled")})
            print(f"labels {labels} seed {seed}: val_full_top1 {m['val_full_top1']:.4f} "
                  f"test_top1 {m['test_top1']:.4f} ({m['train_seconds']:.0f}s)", flush=True)
        table[labels] = {
            "runs": runs,
            **{k: mean_std([r[k] for r in runs]) for k in (*KEYS, "train_seconds")},
        }
        s = table[labels]["val_full_top1"]
        print(f"labels {labels}: val_full_top1 {s['mean']:.4f} ± {s['std']:.4f}", flush=True)
    path = write_result(
        "supervised_digits",
        {"arch": args.arch, "epochs": args.epochs, "seeds": args.seeds, "results": table},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
