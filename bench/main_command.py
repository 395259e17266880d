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
  10 classes), wall time <= 600 s, peak memory of the process tree <= 8 GB, the progress line's
  ETA within +-30% of the time actually left once 20% of the sweep has run;
- the ETA over time: the sweep's output is read as it comes (a pipe: the progress line is
  printed as whole lines when a trial finishes and every 30 s), each line's ETA compared with
  the time then left until the last trial finished (the first "N/N done" line). The window is
  from 20% of the sweep (from the "running N trials" line to that end) to its last 5% (there a
  trial a second off its estimate is a large share of the few seconds left; the error over
  every line after 20% is reported too);
- the peak disk use of the sweep directory (`du` every 3 s: checkpoints, trial directories,
  Ray's experiment state) and of Ray's temporary directory;
- the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
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
    "eta_max_abs_error": 0.30,
}
CHANCE = 0.10
DU_EVERY_S = 3.0
# "sweep: 5/24 done, 2 running, 0 errored | ETA ~4m10s, elapsed 1m02s | best ..." (long form)
# or "5/24 done 2 run 0 err | ETA 4m10s" (the short form of a narrow terminal or log)
PROGRESS = re.compile(
    r"(?P<done>\d+)/(?P<total>\d+) done,? (?P<running>\d+) run(?:ning)?,? (?P<errored>\d+) err"
    r".*?ETA (?P<approx>~?)(?P<eta>[0-9hms?]+)"
)


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


def parse_duration(text: str) -> float:
    """Seconds of tune.progress_line.format_duration's text ("1h05m", "4m10s", "9s", "?")."""
    if text == "?":
        return float("inf")
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise ValueError(f"not a duration: {text!r}")
    h, m, s = (int(g or 0) for g in parts.groups())
    return 3600.0 * h + 60.0 * m + s


def disk_bytes(path: Path) -> int:
    """Bytes allocated under `path` (du; 0 while it does not exist)."""
    if not path.exists():
        return 0
    got = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True)
    try:
        return int(got.stdout.split()[0]) * 1024
    except (IndexError, ValueError):
        return 0


class DiskPeak(threading.Thread):
    """Samples the disk use of some directories every DU_EVERY_S seconds until stopped."""

    def __init__(self, paths: dict[str, Path]):
        super().__init__(daemon=True)
        self.paths, self.peak = paths, {k: 0 for k in paths}
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            for key, path in self.paths.items():
                self.peak[key] = max(self.peak[key], disk_bytes(path))
            if self.stop.wait(DU_EVERY_S):
                return


def read_lines(stream, log, t0: float, lines: list) -> None:
    """Copy the child's output to `log`, keeping (seconds since t0, line) of every line."""
    for line in stream:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        log.write(line)
    log.flush()


def eta_accuracy(lines: list[tuple[float, str]]) -> dict:
    """Each progress line's ETA against the time left until the last trial finished."""
    start = next((t for t, ln in lines if ln.startswith("running ") and " trials, " in ln), None)
    samples = []
    for t, ln in lines:
        m = PROGRESS.search(ln)
        if m:
            samples.append((t, int(m["done"]) + int(m["errored"]), int(m["total"]),
                            parse_duration(m["eta"]), bool(m["approx"])))
    end = next((t for t, n, total, _, _ in samples if n >= total), None)
    if start is None or end is None or end <= start:
        return {"error": "no sweep start or end in the output", "samples": len(samples)}
    span = end - start
    rows = []
    for t, n, total, eta, approx in samples:
        if t > end:
            break
        left = end - t
        rows.append({
            "at_s": round(t - start, 1), "share": round((t - start) / span, 3), "finished": n,
            "eta_s": eta if eta != float("inf") else None,  # None: "?" (no estimate)
            "approx": approx, "actual_left_s": round(left, 1),
            "error": round((eta - left) / left, 3) if left >= 1.0 and eta != float("inf")
            else None,
        })

    def worst(rs):
        errs = [abs(r["error"]) for r in rs if r["error"] is not None]
        return max(errs) if errs else None

    after = [r for r in rows if r["share"] >= 0.2]
    window = [r for r in after if r["share"] <= 0.95]
    first = next((r for r in rows if r["eta_s"] is not None), None)
    return {
        "trials_seconds": round(span, 1),
        "lines": len(rows),
        "max_abs_error_20_to_95pct": worst(window),
        "max_abs_error_after_20pct": worst(after),
        "max_abs_error_seconds_after_20pct": max(
            (abs(r["eta_s"] - r["actual_left_s"]) for r in after if r["eta_s"] is not None),
            default=None),
        "first_eta_at_s": first["at_s"] if first else None,
        "unknown_eta_lines": sum(r["eta_s"] is None for r in rows),
        "approx_lines": sum(r["approx"] for r in rows),
        "first_measured_at_s": next(
            (r["at_s"] for r in rows if not r["approx"] and r["eta_s"] is not None), None),
        "series": rows,
    }


def trial_rows(sweep: Path) -> list[dict]:
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from s4l_models.config import TrainConfig
    from tune.sweep_plan import make_plan, trial_cost

    sizes = make_plan("baseline_1pct").sizes
    df = pd.read_parquet(sweep / "results.parquet")
    rows = []
    for _, r in df.iterrows():
        config = {k: r[k] for k in TrainConfig.field_names() if k in r and r[k] is not None}
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
            "eval_seconds": round(float(r.get("eval_seconds", metrics.get("eval_seconds", 0.0))), 1),
            "checkpoint_seconds": round(float(metrics.get("checkpoint_seconds", 0.0)), 1),
            # the cost model's seconds (sweep_plan.trial_cost, what the ETA starts from)
            "estimated_seconds": round(trial_cost(config, sizes), 1),
        })
    return rows


def split_of(wall: float, rows: list[dict], slots: int) -> dict:
    """Where the sweep's slot-seconds (wall x concurrent trials) went: the trainer's steps,
    its evaluations (validation passes, the final test pass), its checkpoints, and the rest
    (Ray and the driver starting, workers importing, slots left idle at the sweep's tail)."""
    total = wall * slots
    train = sum(r["train_seconds"] for r in rows)
    evals = sum(r["eval_seconds"] for r in rows)
    ckpt = sum(r["checkpoint_seconds"] for r in rows)
    steps = train - evals - ckpt
    return {
        "slot_seconds": round(total, 1), "training_seconds": round(steps, 1),
        "evaluation_seconds": round(evals, 1), "checkpoint_seconds": round(ckpt, 1),
        "overhead_seconds": round(total - train, 1),
        "training_share": round(steps / total, 4), "evaluation_share": round(evals / total, 4),
        "checkpoint_share": round(ckpt / total, 4),
        "overhead_share": round((total - train) / total, 4),
        "evaluation_of_trial_time": round(evals / train, 4) if train else None,
    }


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
        env["PYTHONUNBUFFERED"] = "1"  # lines arrive when printed (the sweep flushes anyway)
        load_before = os.getloadavg()
        log = open(Path(tmp) / "log", "w")
        disk = DiskPeak({"sweep_dir": storage / "main", "ray_tmpdir": Path(env["RAY_TMPDIR"])})
        disk.start()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *COMMAND[1:], "--storage", str(storage), "--name", "main"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: list[tuple[float, str]] = []
        reader = threading.Thread(target=read_lines, args=(proc.stdout, log, t0, lines))
        reader.start()
        peak = 0
        while proc.poll() is None:
            peak = max(peak, pss_bytes(descendants(proc.pid)))
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        reader.join()
        disk.stop.set()
        disk.join()
        log.close()
        out = (Path(tmp) / "log").read_text()
        load_after = os.getloadavg()
        if proc.returncode != 0:
            print(out[-3000:], file=sys.stderr)
            return 1
        rows = trial_rows(storage / "main")
    eta = eta_accuracy(lines)
    speeds = [r["train_seconds"] / r["estimated_seconds"] for r in rows]
    acc = sorted(r["val_full_top1"] for r in rows)
    best = max(rows, key=lambda r: r["val_full_top1"])
    quart = lambda q: acc[min(len(acc) - 1, int(q * (len(acc) - 1) + 0.5))]  # noqa: E731
    figures = {
        "readme_command": " ".join(COMMAND),
        "wall_seconds": round(wall, 1),
        "peak_memory_gb": round(peak / 2**30, 2),
        "peak_disk_gb": {k: round(v / 2**30, 3) for k, v in disk.peak.items()},
        "eta": eta,
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
            "eta_max_abs_error": (eta.get("max_abs_error_20_to_95pct") or 9.9)
            <= GOALS["eta_max_abs_error"],
        },
        "sum_trial_train_seconds": round(sum(r["train_seconds"] for r in rows), 1),
        "split": split_of(wall, rows, 2),
        # how steady the machine was: each trial's seconds per estimated second (0.56-0.72 on
        # the idle 2-core machine; other jobs make it vary, and no ETA can foresee that)
        "seconds_per_estimated_second": {
            "min": round(min(speeds), 2), "median": round(statistics.median(speeds), 2),
            "max": round(max(speeds), 2),
        },
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
    print(f"ETA: max |error| {eta.get('max_abs_error_20_to_95pct')} from 20% to 95% of the "
          f"trials' {eta.get('trials_seconds')} s ({eta.get('max_abs_error_after_20pct')} "
          f"after 20% to the end), first shown at {eta.get('first_eta_at_s')} s, measured from "
          f"{eta.get('first_measured_at_s')} s; peak disk: sweep dir "
          f"{figures['peak_disk_gb']['sweep_dir']} GB, Ray tmp {figures['peak_disk_gb']['ray_tmpdir']} GB")
    s = figures["split"]
    print(f"split of 2 x {wall:.0f} slot-seconds: training {s['training_share']:.1%}, evaluation "
          f"{s['evaluation_share']:.1%}, checkpoints {s['checkpoint_share']:.1%}, outside the "
          f"trainer (start-up, Ray, idle slots) {s['overhead_share']:.1%}")
    print("meets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in figures["meets"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
