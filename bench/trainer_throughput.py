"""Training throughput: our trainer vs a minimal hand-written PyTorch loop, side by side.

    python bench/trainer_throughput.py                 # the cases of this machine's device
    python bench/trainer_throughput.py --device cuda   # the GPU cases (ResNet-50 at 224, ...)

Both sides train the same model (`s4l_models.resnet.create_model`) on the same in-memory uint8
images, with the same batch size, precision (bf16 autocast and channels_last on CUDA, fp32 on
CPU), SGD with momentum and weight decay, and the same augmentation work: an inception crop +
flip of every image done as one affine_grid/grid_sample over the batch, then normalisation.

- "trainer": `s4l_models.trainer.Trainer` (the supervised method) as a sweep trial runs it,
  evaluating and checkpointing once, at the end. Its images/s count the training loop only:
  the trainer's own `train_seconds` minus its `eval_seconds` and `checkpoint_seconds`.
- "hand loop": ~25 lines of plain PyTorch: random indices drawn on the device, the crop
  parameters drawn on the device, forward, cross-entropy, backward, step; no bookkeeping.

Runs alternate (trainer, loop, trainer, loop, ...) in one process so that both see the same
machine state; each side's images/s is the median of its runs, and `ratio` = trainer / loop
(goal >= 0.95). `paired_ratios` are the ratios of each trainer run to the loop run right after
it: where the machine's speed swings from run to run (a launch-bound GPU step of ~10 ms), their
spread says whether a gap is the trainer's or the machine's. On CUDA each timed region ends
with a synchronize.

    python bench/trainer_throughput.py --device cuda --only synthetic32_resnet18_v2_b256 \
        --repeats 9 --steps 900     # one case again, longer and more often

`--only` replaces that case in the existing results file and keeps the others (each case
records its own command and date).

Cases: CPU (1 torch thread, what one sweep trial gets by default): digits (8x8 grey, the
embedded dataset) with ResNet-18 v2 x0.5, batch 64; 32x32 synthetic with ResNet-18 v2 x0.25,
batch 64; a host-bound proxy of the launch-bound GPU case (digits, ResNet-18 v2 x0.0625,
batch 4: the step is almost all per-operation overhead). CUDA: ResNet-50 v2 at 224 (synthetic224), batch 256; ResNet-18 v2 at 32x32
(synthetic32), batch 256.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import DATASET_SETTINGS, RESULTS, command_line, sync, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_RATIO = 0.95
# ResNet-50 v2 at 224, bf16, on one H100/H200-class GPU: NVIDIA publishes 2,470 images/s on an A100
# with AMP; MLPerf-tuned MXNet+DALI reaches ~7,950 per H200.
GOAL_R50_GPU = 4000


@dataclass
class Case:
    name: str
    dataset: str
    arch: str
    width: float
    batch: int
    steps: int


CPU_CASES = [
    Case("digits_resnet18_v2_x0.5_b64", "digits", "resnet18_v2", 0.5, 64, 120),
    Case("synthetic32_resnet18_v2_x0.25_b64", "synthetic32", "resnet18_v2", 0.25, 64, 60),
    # host-bound: a ~7 ms step that is nearly all per-operation dispatch and Python, as the
    # launch-bound ResNet-18 32x32 GPU step is; a trainer doing more host work per step than
    # the hand loop would show here first
    Case("digits_resnet18_v2_x0.0625_b4_hostbound", "digits", "resnet18_v2", 0.0625, 4, 300),
]
CUDA_CASES = [
    Case("synthetic224_resnet50_v2_b256", "synthetic224", "resnet50_v2", 1.0, 256, 120),
    Case("synthetic32_resnet18_v2_b256", "synthetic32", "resnet18_v2", 1.0, 256, 300),
]


def run_trainer(case: Case, device, threads: int, out: Path) -> dict:
    """One trainer run of (about) case.steps steps; images/s of its training loop."""
    from s4l_models.config import TrainConfig
    from s4l_models.data.datasets import load_dataset
    from s4l_models.trainer import Trainer

    data = load_dataset(case.dataset, None)
    n_train = len(data.train)
    val = data.spec.default_val_size
    labeled = n_train - val
    epochs = case.steps * case.batch / labeled
    cfg = TrainConfig.from_dict({
        "method": "supervised", "dataset": case.dataset, "labels": "100%", "arch": case.arch,
        "width": case.width, "batch_size": case.batch, "epochs": epochs, "eval_every": epochs,
        "warmup_epochs": 0, "decay_epochs": [], "lr": 0.1, "wd": 1e-4, "device": device.type,
        "threads": threads, "eval_batch_size": 1024, **DATASET_SETTINGS.get(case.dataset, {}),
    })
    trainer = Trainer(cfg, out, log=lambda line: None)
    sync(device)
    m = trainer.run()
    sync(device)
    loop_s = m["train_seconds"] - m["eval_seconds"] - m["checkpoint_seconds"]
    return {"steps": m["steps"], "seconds": loop_s, "images_per_s": m["steps"] * case.batch / loop_s,
            "eval_seconds": m["eval_seconds"], "checkpoint_seconds": m["checkpoint_seconds"]}


def run_hand_loop(case: Case, device, steps: int) -> dict:
    """The minimal loop: same model, data, batch, precision and augmentation work."""
    import torch
    import torch.nn.functional as F

    from s4l_models.data.datasets import load_dataset
    from s4l_models.resnet import create_model

    data = load_dataset(case.dataset, None)
    spec = data.spec
    cuda = device.type == "cuda"
    images = data.train.images.to(device)
    labels = data.train.labels.to(device)
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    torch.manual_seed(0)
    model = create_model(case.arch, width=case.width, num_classes=spec.num_classes,
                         image_size=spec.image_size, in_chans=spec.channels).to(device)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * case.batch / 256, momentum=0.9,
                          weight_decay=1e-4)
    b, size, lo = case.batch, spec.image_size, spec.crop_scale[0]
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (b,), device=device)
        x = images[idx].float().div_(255.0)
        # inception crop + flip: one affine grid per image, parameters drawn on the device
        area = lo + (1 - lo) * torch.rand(b, device=device)
        r = torch.exp((torch.rand(b, device=device) * 2 - 1) * math.log(4 / 3))
        w, h = torch.sqrt(area * r).clamp(max=1), torch.sqrt(area / r).clamp(max=1)
        sign = torch.where(torch.rand(b, device=device) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 1, 1] = w * sign, h
        theta[:, 0, 2] = (torch.rand(b, device=device) * 2 - 1) * (1 - w)
        theta[:, 1, 2] = (torch.rand(b, device=device) * 2 - 1) * (1 - h)
        grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = ((x - mean) / std).contiguous(memory_format=fmt)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    seconds = time.perf_counter() - t0
    return {"steps": steps, "seconds": seconds, "images_per_s": steps * b / seconds}


def measure(case: Case, device, threads: int, repeats: int, tmp: Path) -> dict:
    import torch

    torch.set_num_threads(threads)
    trainer_runs, loop_runs = [], []
    # one untimed run of each first: library loading, cuDNN autotuning caches, data on device
    warm = Case(case.name, case.dataset, case.arch, case.width, case.batch, max(4, case.steps // 10))
    run_trainer(warm, device, threads, tmp / f"{case.name}-warm")
    run_hand_loop(warm, device, warm.steps)
    for i in range(repeats):
        t = run_trainer(case, device, threads, tmp / f"{case.name}-{i}")
        trainer_runs.append(t)
        loop_runs.append(run_hand_loop(case, device, t["steps"]))
        print(f"  {case.name} run {i + 1}: trainer {t['images_per_s']:.0f} img/s, "
              f"loop {loop_runs[-1]['images_per_s']:.0f} img/s", flush=True)
    ours = statistics.median(r["images_per_s"] for r in trainer_runs)
    hand = statistics.median(r["images_per_s"] for r in loop_runs)
    paired = [t["images_per_s"] / h["images_per_s"] for t, h in zip(trainer_runs, loop_runs)]
    return {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "dataset": case.dataset, "arch": case.arch, "width": case.width, "batch": case.batch,
        "steps_per_run": trainer_runs[0]["steps"], "repeats": repeats, "threads": threads,
        "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "fp32",
        "trainer_images_per_s": round(ours, 1),
        "loop_images_per_s": round(hand, 1),
        "trainer_runs_images_per_s": [round(r["images_per_s"], 1) for r in trainer_runs],
        "loop_runs_images_per_s": [round(r["images_per_s"], 1) for r in loop_runs],
        "trainer_eval_seconds": round(statistics.median(r["eval_seconds"] for r in trainer_runs), 3),
        "trainer_checkpoint_seconds": round(
            statistics.median(r["checkpoint_seconds"] for r in trainer_runs), 3),
        "ratio": round(ours / hand, 3),
        "paired_ratios": [round(r, 3) for r in paired],
        "paired_ratio_median": round(statistics.median(paired), 3),
    }


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1)")
    ap.add_argument("--only", action="append", metavar="CASE",
                    help="run only this case (repeatable); the file's other cases are kept")
    ap.add_argument("--steps", type=int, help="training steps per run (default: the case's)")
    args = ap.parse_args()
    device = torch.device(args.device)
    cases = CUDA_CASES if device.type == "cuda" else CPU_CASES
    name = "trainer_throughput" if device.type == "cpu" else "trainer_throughput_gpu"
    results = {}
    if args.only:
        unknown = sorted(set(args.only) - {c.name for c in cases})
        if unknown:
            print(f"error: unknown case {unknown[0]} for {device.type}; choose from "
                  f"{', '.join(c.name for c in cases)}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c.name in args.only]
        old = RESULTS / f"{name}.json"
        if old.is_file():  # keep the other cases' figures, each with its own command and date
            prev = json.loads(old.read_text())
            for k, v in prev.get("cases", {}).items():
                v.setdefault("command", prev.get("command"))
                v.setdefault("date", prev.get("date"))
                results[k] = v
    if args.steps:
        cases = [dataclasses.replace(c, steps=args.steps) for c in cases]
    with tempfile.TemporaryDirectory(prefix="s4l-throughput-") as tmp:
        for case in cases:
            results[case.name] = measure(case, device, args.threads, args.repeats, Path(tmp))
            r = results[case.name]
            print(f"{case.name}: trainer {r['trainer_images_per_s']:.0f} img/s, hand loop "
                  f"{r['loop_images_per_s']:.0f} img/s, ratio {r['ratio']:.3f}", flush=True)
    figures = {
        "device": device.type,
        "goal_ratio": GOAL_RATIO,
        "cases": results,
        "meets_goal": all(r["ratio"] >= GOAL_RATIO for r in results.values()),
    }
    if device.type == "cuda":
        r50 = results.get("synthetic224_resnet50_v2_b256")
        figures["goal_resnet50_224_images_per_s"] = GOAL_R50_GPU
        figures["resnet50_224_meets_goal"] = bool(r50 and r50["trainer_images_per_s"] >= GOAL_R50_GPU)
    path = write_result(name, figures)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
