"""The sweep machinery at the paper's scale: the whole 8,640-point baseline_1pct grid.

    python bench/grid_scale.py                     # about 10-15 minutes on 2 CPU cores
    python bench/grid_scale.py --trials 1000 --cluster-trials 0   # a quicker look

Runs `python tune/run_sweep.py --space baseline_1pct --max-trials all` (every one of the 8,640
configurations) as a user would, except for the test-only flag `--stand-in-trainer 3`: each
trial reports three evaluations at once instead of training (tests/stand_in.py). What is left is
what a cluster-wide sweep pays besides training: Ray Tune's scheduling, our trainable, callback,
results table and progress line. Resources are the CLI's defaults on this machine: a local Ray
with 2 CPUs, 1 CPU per trial, 2 trials at a time.

While the command runs, the driver process is sampled every 0.5 s: its resident memory
(/proc/PID/status) against the number of trials started (each stand-in trial appends its start
time and id to trials/stand_in_started.txt), and the memory of Ray's GCS server. Figures: trials per second (whole command, and steady state
between 10% and 90% of the trials started), wall time, the driver's peak memory and its growth
per 1,000 trials over the second half of the sweep (flat = the driver does not keep per-trial
state that grows), the GCS's, and the size of results.parquet / results.csv.

Then the same command against Ray's simulated multi-node cluster (`ray.cluster_utils.Cluster`
in this machine: a head node with no CPUs, which only schedules, like a real cluster's head,
and 2 worker nodes of 1 CPU each, so 2 trials at a time, one per node) with `--address`, on the
first `--cluster-trials` configurations.

Goal: >= 20 trials/s scheduled, and driver memory that stays flat as trials grow.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import processes_with, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the test-only stand-in trainer lives with the tests
from stand_in import read_time_log

GOAL_TRIALS_PER_S = 20.0
REPORTS = 3


def _rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _started(sweep_dir: Path) -> int:
    """Trials started so far (lines `<time> <trial id>` of the stand-in's start log)."""
    try:
        return (sweep_dir / "trials" / "stand_in_started.txt").read_bytes().count(b"\n")
    except OSError:
        return 0


def run_grid(storage: Path, name: str, trials: int | None, env: dict,
             address: str | None = None, marker: str = "") -> dict:
    cmd = [sys.executable, "tune/run_sweep.py", "--space", "baseline_1pct",
           "--max-trials", "all" if trials is None else str(trials),
           "--stand-in-trainer", str(REPORTS), "--no-report", "--quiet",
           "--storage", str(storage), "--name", name]
    if address:
        cmd += ["--address", address]
    sweep_dir = storage / name
    samples: list[tuple[float, int, float, float]] = []  # (t, trials started, driver MB, gcs MB)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    peak = 0.0
    gcs: list[int] = []
    while proc.poll() is None:
        time.sleep(0.5)
        rss = _rss_mb(proc.pid)
        hwm = _rss_mb(proc.pid, "VmHWM")
        if hwm:
            peak = max(peak, hwm)
        if not gcs:
            gcs = list(processes_with("gcs_server", marker))
        gcs_mb = sum(_rss_mb(p) or 0.0 for p in gcs)
        if rss is not None:
            samples.append((time.perf_counter() - t0, _started(sweep_dir), rss, gcs_mb))
    wall = time.perf_counter() - t0
    reader.join(timeout=5)
    if proc.returncode != 0:
        print("".join(out)[-3000:], file=sys.stderr)
        raise SystemExit(f"the sweep exited with {proc.returncode}")
    import pandas as pd

    df = pd.read_parquet(sweep_dir / "results.parquet")
    n = len(df)

    def at_fraction(f: float) -> tuple[float, float, float]:
        for t, k, mb, g in samples:
            if k >= f * n:
                return t, mb, g
        t, _, mb, g = samples[-1]
        return t, mb, g

    starts = sorted(t for t, _ in read_time_log(sweep_dir / "trials" / "stand_in_started.txt"))
    i10, i90 = int(0.1 * (len(starts) - 1)), int(0.9 * (len(starts) - 1))
    span = starts[i90] - starts[i10]
    steady = (i90 - i10) / span if span > 0 else float("nan")
    _, mem50, gcs50 = at_fraction(0.50)
    mem_end = max(mb for _, k, mb, _ in samples if k >= 0.95 * n) if samples else float("nan")
    gcs_end = max(g for _, k, _, g in samples if k >= 0.95 * n) if samples else float("nan")
    return {
        "command": " ".join(cmd[1:]).replace(str(storage), "<tmp>"),
        "trials": n,
        "completed": int((df["status"] == "completed").sum()),
        "wall_seconds": round(wall, 1),
        "trials_per_second": round(n / wall, 2),
        "first_trial_started_after_seconds": round(
            next((t for t, k, _, _ in samples if k > 0), float("nan")), 1),
        "steady_trials_per_second_10_to_90pct": round(steady, 2),
        "driver_peak_rss_mb": round(peak, 1),
        "driver_rss_mb_at": {
            f"{int(f * 100)}pct": round(at_fraction(f)[1], 1) for f in (0.1, 0.25, 0.5, 0.75)
        } | {"end": round(mem_end, 1)},
        "driver_rss_growth_mb_per_1000_trials_second_half": round(
            (mem_end - mem50) / (0.5 * n / 1000.0), 2
        ),
        "gcs_rss_mb_at_50pct_and_end": [round(gcs50, 1), round(gcs_end, 1)],
        "results_parquet_kb": round((sweep_dir / "results.parquet").stat().st_size / 1024, 1),
        "results_csv_kb": round((sweep_dir / "results.csv").stat().st_size / 1024, 1),
        "samples_every_10pct": [
            {"seconds": round(t, 1), "trials_started": k, "driver_rss_mb": round(mb, 1),
             "gcs_rss_mb": round(g, 1)}
            for t, k, mb, g in samples[:: max(1, len(samples) // 10)]
        ],
        "last_lines": "".join(out).strip().splitlines()[-3:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=None, help="first N configurations (default all)")
    ap.add_argument("--cluster-trials", type=int, default=1000,
                    help="configurations on the simulated cluster (0 skips it)")
    args = ap.parse_args()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    figures: dict = {"goal_trials_per_second": GOAL_TRIALS_PER_S, "reports_per_trial": REPORTS}
    with tempfile.TemporaryDirectory(prefix="s4l-grid-") as tmp:
        tmp = Path(tmp)
        env["RAY_TMPDIR"] = str(tmp / "ray")
        os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
        single = run_grid(tmp / "runs", "grid", args.trials, env, marker=str(tmp))
        figures["single_node"] = single
        print(f"single node: {single['trials']} trials in {single['wall_seconds']}s = "
              f"{single['trials_per_second']} trials/s (steady "
              f"{single['steady_trials_per_second_10_to_90pct']}); driver peak "
              f"{single['driver_peak_rss_mb']} MB, growth "
              f"{single['driver_rss_growth_mb_per_1000_trials_second_half']} MB/1000 trials",
              flush=True)
        if args.cluster_trials:
            os.environ.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=env["RAY_TMPDIR"])
            from ray.cluster_utils import Cluster

            cluster = Cluster(initialize_head=True, connect=False,
                              head_node_args={"num_cpus": 0, "include_dashboard": False})
            try:
                for _ in range(2):
                    cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                multi = run_grid(tmp / "runs", "cluster", args.cluster_trials, env,
                                 address=cluster.address, marker=str(tmp))
            finally:
                cluster.shutdown()
            multi["nodes"] = "head (0 CPUs) + 2 workers (1 CPU each)"
            figures["simulated_cluster"] = multi
            print(f"simulated 3-node cluster: {multi['trials']} trials in "
                  f"{multi['wall_seconds']}s = {multi['trials_per_second']} trials/s", flush=True)
    rate = figures["single_node"]["steady_trials_per_second_10_to_90pct"]
    figures["meets_goal_trials_per_second"] = rate >= GOAL_TRIALS_PER_S
    path = write_result("grid_scale", figures)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
