"""What holding the weights in channels_last saves a scoring pass on a CPU.

    python bench/scoring_layout.py          # about 2 minutes on one core

The trainer scores with channels_last weights on a CPU (`s4l_models.evaluate.scoring_layout`;
training keeps the contiguous layout). Two measurements, each side alternating with the other
5 times, medians reported, 1 torch thread:

- `models`: seconds per image of a gradient-free forward pass at batch 128 (the CPU scoring
  batch) for ResNet-18 v2 x0.25 / x0.5 / x1 and ResNet-50 v2 x0.5 on 28x28 (x0.5 also on 8x8,
  digits' size), contiguous vs channels_last weights and input;
- `trainer_evaluate`: `Trainer.evaluate` (5,000 Fashion-MNIST validation images, ResNet-18 v2
  x0.25, untrained) with `channels_last` false and true, when Fashion-MNIST's files are present.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MODELS = [("resnet18_v2", 0.25, 28), ("resnet18_v2", 0.5, 8), ("resnet18_v2", 0.5, 28),
          ("resnet18_v2", 1.0, 28), ("resnet50_v2", 0.5, 28)]


def per_image(model, x, n: int = 10) -> float:
    import torch

    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        for _ in range(n):
            model(x)
    return (time.perf_counter() - t0) / n / len(x)


def models(repeats: int) -> dict:
    import torch

    from s4l_models.resnet import create_model

    out = {}
    for arch, width, size in MODELS:
        m = create_model(arch, width=width, num_classes=10, image_size=size, in_chans=1).eval()
        mc = copy.deepcopy(m).to(memory_format=torch.channels_last)
        x = torch.randn(128, 1, size, size)
        xc = x.contiguous(memory_format=torch.channels_last)
        a, b = [], []
        for _ in range(repeats):
            a.append(per_image(m, x))
            b.append(per_image(mc, xc))
        ca, cb = statistics.median(a), statistics.median(b)
        out[f"{arch}_x{width:g}_{size}px"] = {
            "contiguous_ms_per_image": round(1000 * ca, 4),
            "channels_last_ms_per_image": round(1000 * cb, 4), "ratio": round(cb / ca, 3)}
        print(f"{arch} x{width:g} {size}px: {1000 * ca:.3f} -> {1000 * cb:.3f} ms/image "
              f"({cb / ca:.2f})", flush=True)
    return out


def trainer_evaluate(data_dir: str, repeats: int) -> dict:
    from s4l_models.config import TrainConfig
    from s4l_models.trainer import Trainer

    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cl in (False, True):
            cfg = TrainConfig.from_dict({
                "dataset": "fashion_mnist", "data_dir": data_dir, "labels": "1%",
                "arch": "resnet18_v2", "width": 0.25, "epochs": 1, "threads": 1,
                "device": "cpu", "channels_last": cl})
            t = Trainer(cfg, Path(tmp) / str(cl), log=lambda line: None)
            trainers[cl] = (t, t.build().eval_model)
            t.evaluate(trainers[cl][1], final=False)  # warm-up
        times = {False: [], True: []}
        for _ in range(repeats):
            for cl, (t, model) in trainers.items():
                t0 = time.perf_counter()
                t.evaluate(model, final=False)
                times[cl].append(time.perf_counter() - t0)
    a, b = statistics.median(times[False]), statistics.median(times[True])
    print(f"Trainer.evaluate, 5,000 Fashion-MNIST images: {a:.2f} -> {b:.2f} s ({b / a:.2f})")
    return {"val_images": 5000, "contiguous_seconds": round(a, 3),
            "channels_last_seconds": round(b, 3), "ratio": round(b / a, 3)}


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-dir", default=FASHION_DIR)
    args = ap.parse_args()
    torch.set_num_threads(1)
    figures = {"threads": 1, "batch": 128, "repeats": args.repeats, "models": models(args.repeats)}
    if os.path.isdir(args.data_dir):
        figures["trainer_evaluate"] = trainer_evaluate(args.data_dir, args.repeats)
    print(f"-> {write_result('scoring_layout', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
