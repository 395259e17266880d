"""What the tiny validation sets cost at evaluation time.

    python bench/tiny_val_cost.py                 # CPU cases; on a GPU machine the GPU cases

For a model as the trainer builds it, times (median of `--repeats`):

- `full_pass_seconds`: one batched, gradient-free pass over the full validation split (what
  the trainer runs at every evaluation);
- `separate_pass_seconds` for 1/class and 5/class: a pass over only that subset, which is what
  scoring the tiny sets separately would add;
- `tiny_from_full_pass_seconds`: what the trainer actually adds for the tiny sets: reading
  their top-1/top-5 off the full pass's per-example correctness (`subset_metrics` with the
  subsets' masks);
- `trainer_evaluate_seconds`: `Trainer.evaluate` as a whole (full split + both tiny sets);
- `trial`: one whole run of 200 steps at batch 64 with the sweep's FIFO cadence
  (`tune.sweep_plan.SWEEP_EVALUATIONS`), its `train_seconds` (wall time), `eval_seconds` (every
  validation pass and the final test pass) and their ratio `eval_fraction`
  (`python bench/eval_cadence.py` compares cadences on the main command's trial and Fashion-MNIST).

Cases: digits with ResNet-18 v2 x0.5 (val 300 images), 32x32 synthetic with ResNet-18 v2 x0.25
(val 500) on CPU with 1 thread; on CUDA, ResNet-50 v2 at 224 (val 1,000) and ResNet-18 v2 at 32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import DATASET_SETTINGS, sync, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_CASES = [("digits", "resnet18_v2", 0.5), ("synthetic32", "resnet18_v2", 0.25)]
CUDA_CASES = [("synthetic224", "resnet50_v2", 1.0), ("synthetic32", "resnet18_v2", 1.0)]


def _timed(fn, device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(dataset: str, arch: str, width: float, device, threads: int, repeats: int,
            tmp: Path) -> dict:
    from s4l_models.config import TrainConfig
    from s4l_models.evaluate import subset_metrics
    from s4l_models.trainer import Trainer

    cfg = TrainConfig.from_dict({
        "dataset": dataset, "labels": "10%", "arch": arch, "width": width, "epochs": 1,
        "device": device.type, "threads": threads, **DATASET_SETTINGS.get(dataset, {}),
    })
    trainer = Trainer(cfg, tmp / f"{dataset}-{arch}", log=lambda line: None)
    state = trainer.build()
    model = state.eval_model
    splits = trainer.splits

    def score(indices):
        s = trainer.score(model, trainer.source, indices)
        return s["top1"], s["topk"], s["label"]

    score(splits.val)  # warm-up (allocations, cuDNN autotuning)
    top1, top5, _ = score(splits.val)
    out = {
        "dataset": dataset, "arch": arch, "width": width, "device": device.type,
        "val_images": int(len(splits.val)),
        "full_pass_seconds": round(_timed(lambda: score(splits.val), device, repeats), 5),
        "trainer_evaluate_seconds": round(
            _timed(lambda: trainer.evaluate(model, final=False), device, repeats), 5),
        "separate_pass_seconds": {},
        "tiny_from_full_pass_seconds": {},
    }
    for k, sub in splits.tiny.items():
        mask = trainer.val_positions[k]
        out["separate_pass_seconds"][f"{k}_per_class ({len(sub)} images)"] = round(
            _timed(lambda sub=sub: score(sub), device, repeats), 5)
        out["tiny_from_full_pass_seconds"][f"{k}_per_class"] = round(
            _timed(lambda mask=mask: subset_metrics("v", top1, top5, mask), device, repeats), 7)
    extra = sum(out["tiny_from_full_pass_seconds"].values())
    out["tiny_extra_fraction_of_full_pass"] = round(extra / out["full_pass_seconds"], 6)
    out["trial"] = _trial(cfg, len(trainer.labeled), tmp / f"{dataset}-{arch}-trial")
    return out


def _trial(cfg, labeled: int, out: Path, steps: int = 200, batch: int = 64) -> dict:
    """One whole run at the sweep's default cadence: what evaluation costs a trial."""
    import dataclasses

    from s4l_models.run import train
    from tune.sweep_plan import SWEEP_EVALUATIONS

    evaluations = SWEEP_EVALUATIONS["fifo"][0]
    run = dataclasses.replace(cfg, epochs=steps * batch / labeled, batch_size=batch,
                              evaluations=evaluations, warmup_epochs=0.0)
    m = train(run, out, log=lambda line: None)
    return {"steps": m["steps"], "batch_size": batch, "evaluations": evaluations,
            "train_seconds": round(m["train_seconds"], 3),
            "eval_seconds": round(m["eval_seconds"], 3),
            "eval_fraction": round(m["eval_seconds"] / m["train_seconds"], 4)}


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    cases = CUDA_CASES if device.type == "cuda" else CPU_CASES
    results = {}
    with tempfile.TemporaryDirectory(prefix="s4l-tinyval-") as tmp:
        for dataset, arch, width in cases:
            r = measure(dataset, arch, width, device, args.threads, args.repeats, Path(tmp))
            results[f"{dataset}_{arch}_x{width:g}"] = r
            print(f"{dataset} {arch} x{width:g}: full pass {r['full_pass_seconds'] * 1000:.1f} ms "
                  f"({r['val_images']} images); separate passes "
                  + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r["separate_pass_seconds"].items())
                  + f"; tiny sets from the full pass {r['tiny_extra_fraction_of_full_pass']:.2%} "
                  f"of it; a {r['trial']['steps']}-step trial at {r['trial']['evaluations']} "
                  f"evaluations spends {r['trial']['eval_fraction']:.1%} of its "
                  f"{r['trial']['train_seconds']:.1f} s evaluating", flush=True)
    name = "tiny_val_cost" if device.type == "cpu" else "tiny_val_cost_gpu"
    path = write_result(name, {"device": device.type, "cases": results})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
