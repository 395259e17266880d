"""The README's main command, measured: does every trial train, how long, how much memory.

    python bench/main_command.py            # about 6.5 minutes on 2 CPU cores
    python bench/main_command.py --keep runs  # also keep the sweep (runs/main), e.g. for docs/

Runs `python tune/run_sweep.py --space baseline_1pct` (digits, the scaled protocol, the default
seeded 24-trial subset, 2 concurrent 1-CPU trials) into a temporary --storage exactly as a user
would, samples the memory of the whole process tree (the driver, Ray's servers and its trial
workers: the sum of their proportional set sizes, PSS, from /proc/<pid>/smaps_rollup, so shared
pages count once) every half second, and writes bench/results/main_command.json:

- per trial: optimizer steps, warmup steps and the share of steps after warmup, peak learning
  rate (lr x batch / 256), batch size, epochs, architecture, width, full-split validation and
  test top-1, its training seconds, whether it is marked short_run;
- the targets: every trial >= 200 optimizer steps with >= 90% of them after warmup, the best
  val_full_top1 >= 0.85, accuracies spread over a real range (not a cluster at chance, 0.10 on
  10 classes), wall time <= 600 s, peak memory of the process tree <= 8 GB;
- the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["python", "tune/run_sweep.py", "--space", "baseline_1pct"]
GOALS = {
    "min_steps": 200,
    "min_after_warmup": 0.9,
    "best_val_full_top1": 0.85,
    "wall_seconds": 600.0,
    "peak_memory_gb": 8.0,
}
CHANCE = 0.10


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (Ray's servers and workers are the driver's children)."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo.extend(children.get(q, []))
    return out


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def trial_rows(sweep: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_parquet(sweep / "results.parquet")
    rows = []
    for _, r in df.iterrows():
        metrics = json.loads((Path(r["trial_dir"]) / "metrics.json").read_text())
        total, warm = int(metrics["total_steps"]), int(metrics["warmup_steps"])
        rows.append({
            "trial_id": r["trial_id"],
            "status": r["status"],
            "arch": r["arch"],
            "width": float(r["width"]),
            "epochs": float(r["epochs"]),
            "batch_size": int(r["batch_size"]),
            "lr_per_256": float(r["lr"]),
            "peak_lr": float(r["lr"]) * int(r["batch_size"]) / 256.0,
            "wd": float(r["wd"]),
            "color_aug": bool(r["color_aug"]),
            "steps": total,
            "warmup_steps": warm,
            "after_warmup": round((total - warm) / total, 4),
            "short_run": bool(r["short_run"]),
            "val_full_top1": float(r["val_full_top1"]),
            "test_top1": float(r["test_top1"]),
            "train_seconds": round(float(r["train_seconds"]), 1),
        })
    return rows


def main() -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", metavar="STORAGE", help="write the sweep to STORAGE/main and keep it")
    args = p.parse_args()
    env = {**os.environ}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="s4l-main-") as tmp:
        env.setdefault("RAY_TMPDIR", os.path.join(tmp, "ray"))
        os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
        storage = Path(args.keep).resolve() if args.keep else Path(tmp) / "runs"
        load_before = os.getloadavg()
        log = open(Path(tmp) / "log", "w")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *COMMAND[1:], "--storage", str(storage), "--name", "main"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, pss_bytes(descendants(proc.pid)))
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        log.close()
        out = (Path(tmp) / "log").read_text()
        load_after = os.getloadavg()
        if proc.returncode != 0:
            print(out[-3000:], file=sys.stderr)
            return 1
        rows = trial_rows(storage / "main")
    acc = sorted(r["val_full_top1"] for r in rows)
    best = max(rows, key=lambda r: r["val_full_top1"])
    quart = lambda q: acc[min(len(acc) - 1, int(q * (len(acc) - 1) + 0.5))]  # noqa: E731
    figures = {
        "readme_command": " ".join(COMMAND),
        "wall_seconds": round(wall, 1),
        "peak_memory_gb": round(peak / 2**30, 2),
        "trials": len(rows),
        "completed": sum(r["status"] == "completed" for r in rows),
        "short_runs": sum(r["short_run"] for r in rows),
        "min_steps": min(r["steps"] for r in rows),
        "min_after_warmup": min(r["after_warmup"] for r in rows),
        "val_full_top1": {
            "best": best["val_full_top1"], "min": acc[0], "q25": quart(0.25),
            "median": quart(0.5), "q75": quart(0.75),
            "at_chance": sum(a <= CHANCE + 0.05 for a in acc),
        },
        "goals": GOALS,
        "meets": {
            "min_steps": min(r["steps"] for r in rows) >= GOALS["min_steps"],
            "min_after_warmup": min(r["after_warmup"] for r in rows) >= GOALS["min_after_warmup"],
            "best_val_full_top1": best["val_full_top1"] >= GOALS["best_val_full_top1"],
            "wall_seconds": wall <= GOALS["wall_seconds"],
            "peak_memory_gb": peak / 2**30 <= GOALS["peak_memory_gb"],
        },
        "sum_trial_train_seconds": round(sum(r["train_seconds"] for r in rows), 1),
        "concurrency": 2,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "best": best,
        "trials_table": rows,
        "first_lines": out.strip().splitlines()[:3],
        "last_lines": out.strip().splitlines()[-5:],
    }
    path = write_result("main_command", figures)
    print(f"main command: {wall:.0f}s wall, peak {peak / 2**30:.2f} GB, "
          f"{figures['completed']}/{len(rows)} completed, steps >= {figures['min_steps']}, "
          f">= {figures['min_after_warmup']:.1%} after warmup, best val_full_top1 "
          f"{best['val_full_top1']:.3f}, median {quart(0.5):.3f} -> {path}")
    print("meets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in figures["meets"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
