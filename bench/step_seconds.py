"""Seconds of one SGD step on 8x8 digits for every depth and width of the paper's grid.

    python bench/step_seconds.py            # about 5 minutes on 2 CPU cores

One torch thread, a plain forward + backward + SGD-with-momentum update of ResNet-{18,34,50} v2
at widths 0.5-4 on 8x8 one-channel inputs, at batch 8 and batch 64, median of a few steps after
warm-up. A step costs about a + b * batch seconds: `a` (the weights' memory traffic: forward,
backward and the update each touch every weight) dominates for wide models, whose step hardly
gets cheaper with a smaller batch. The sweep planner (`tune/sweep_plan.py`, STEP_SECONDS) holds
these figures to estimate trials, choose the default digits subset within its per-trial budget
and print an ETA. Writes bench/results/step_seconds.json.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

DEPTHS = (18, 34, 50)
WIDTHS = (0.5, 1.0, 2.0, 3.0, 4.0)
BATCHES = (8, 64)


def step_time(depth: int, width: float, batch: int) -> float:
    import torch

    from s4l_models.resnet import create_model

    torch.manual_seed(0)
    model = create_model(f"resnet{depth}_v2", width=width, num_classes=10, image_size=8,
                         in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 1, 8, 8)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    step()
    reps = 3 if width >= 3 else 6
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    import torch

    torch.set_num_threads(1)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for depth in DEPTHS:
        for width in WIDTHS:
            row = {}
            for batch in BATCHES:
                row[str(batch)] = round(step_time(depth, width, batch), 5)
            lo, hi = BATCHES
            b = max(0.0, (row[str(hi)] - row[str(lo)]) / (hi - lo))
            a = max(1e-4, row[str(lo)] - b * lo)
            table.setdefault(str(depth), {})[f"{width:g}"] = {
                **{f"batch_{k}": v for k, v in row.items()},
                "a_seconds": round(a, 5),
                "b_seconds_per_image": round(b, 7),
            }
            print(f"resnet{depth}_v2 x{width:g}: {row} -> a {a * 1000:.1f} ms + "
                  f"{b * 1000:.2f} ms/image", flush=True)
    path = write_result("step_seconds", {
        "what": "seconds of one SGD step (forward, backward, update), 1 torch thread, 8x8 "
                "one-channel inputs, ResNet v2 (v1 costs about the same), median of 3-6 steps",
        "model": "step seconds = a + b * batch",
        "table": table,
    })
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
