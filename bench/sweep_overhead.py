"""Ray Tune's overhead: the same 16 short trials through the sweep and in a plain Python loop.

    python bench/sweep_overhead.py          # about 7 minutes on 2 CPU cores

The 16 trials are 16 (wd, lr) points of baseline_10pct on digits with ResNet-18 v1 x0.5,
batch 32 and 20 epochs pinned (about 11 s each on one core since the scaled protocol), at the
sweep's FIFO cadence (tune.sweep_plan.SWEEP_EVALUATIONS: the loop trains the same configs). The loop calls
`s4l_models.trainer.train` for each, one after the other, one thread each (what one Ray trial
gets); its total divided by the concurrency (2) is the ideal parallel time. The sweep runs
`tune.run_sweep.main` (Tuner, checkpoints at every evaluation, results table, predictions)
on a Ray instance started beforehand; Ray's start-up is reported separately.

Overhead = sweep wall / ideal parallel time - 1 (goal: <= 20%). On a shared machine the runs
compete with other work, so two parallel trials do not run at twice the speed of one: the same
trials are also run on a plain pool of 2 warm processes (no Ray, imports and data loaded
before the clock starts), and the sweep is compared with that too (`overhead_vs_plain_pool`:
what Ray and our callbacks cost over the parallelism the machine actually gives). Load
averages around each run are recorded, and the CPU seconds the driver and Ray's own processes
(GCS, raylet; not the trial workers) used during the sweep.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from common import processes_with, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PINS = {"arch": "resnet18_v1", "width": "0.5", "epochs": "20", "batch_size": "32"}
TRIALS = 16
CONCURRENCY = 2
GOAL = 0.20


def sweep_args(storage: Path, name: str) -> list[str]:
    args = ["--space", "baseline_10pct", "--max-trials", str(TRIALS), "--no-report",
            "--quiet", "--storage", str(storage), "--name", name,
            "--concurrency", str(CONCURRENCY), "--cpus-per-trial", "1"]
    for k, v in PINS.items():
        args += ["--set", f"{k}={v}"]
    return args


def _warm() -> None:
    from s4l_models.data.datasets import load_dataset
    from s4l_models.run import train  # noqa: F401

    load_dataset("digits", None)


def _ready(_: int) -> bool:
    time.sleep(0.5)  # both workers take one
    return True


def _train_one(job) -> float:
    from s4l_models.config import TrainConfig
    from s4l_models.run import train

    values, out = job
    t0 = time.perf_counter()
    train(TrainConfig.from_dict(values), out, log=lambda line: None)
    return time.perf_counter() - t0


def _cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ray_daemons(marker: str) -> dict[int, float]:
    """CPU seconds so far of Ray's own processes (not the trial workers) under `marker`."""
    out: dict[int, float] = {}
    for pid, cmd in processes_with(marker).items():
        if "default_worker.py" in cmd:
            continue
        try:
            out[pid] = _cpu_seconds(pid)
        except (OSError, IndexError):
            continue  # ended meanwhile
    return out


def main() -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import pandas as pd
    import ray

    from s4l_models.config import TrainConfig
    from s4l_models.run import train
    from tune.run_sweep import main as sweep_main
    from tune.sweep_plan import make_plan

    plan = make_plan("baseline_10pct", raw_set=PINS, max_trials=TRIALS)
    with tempfile.TemporaryDirectory(prefix="s4l-overhead-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("RAY_TMPDIR", str(tmp / "ray"))
        os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)
        load0 = os.getloadavg()

        # 1. the sweep, on a Ray instance started first (its start-up timed on its own)
        t0 = time.perf_counter()
        ray.init(num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        daemons0 = _ray_daemons(os.environ["RAY_TMPDIR"])
        driver0 = _cpu_seconds("self")
        t0 = time.perf_counter()
        rc = sweep_main(sweep_args(tmp, "sweep"))
        sweep_wall = time.perf_counter() - t0
        driver_cpu = _cpu_seconds("self") - driver0
        daemons1 = _ray_daemons(os.environ["RAY_TMPDIR"])
        daemons_cpu = sum(v - daemons0.get(k, 0.0) for k, v in daemons1.items())
        ray.shutdown()
        if rc != 0:
            return 1
        df = pd.read_parquet(tmp / "sweep" / "results.parquet")
        splits = tmp / "sweep"
        load1 = os.getloadavg()

        # 2. the same configurations, one after the other, in this process
        seq = []
        t_all = time.perf_counter()
        for i, point in enumerate(plan.points):
            cfg = TrainConfig.from_dict(
                {**plan.trial_config(point), "threads": 1, "splits_path": str(splits)}
            )
            t0 = time.perf_counter()
            train(cfg, tmp / "loop" / str(i), log=lambda line: None)
            seq.append(time.perf_counter() - t0)
        loop_wall = time.perf_counter() - t_all
        load2 = os.getloadavg()

        # 3. the same configurations on a plain pool of CONCURRENCY warm processes (no Ray,
        #    imports done): the parallel speed this machine gives (its cores share caches and
        #    memory bandwidth, and other work may share them too)
        ctx = multiprocessing.get_context("spawn")
        jobs = [
            ({**plan.trial_config(p), "threads": 1, "splits_path": str(splits)},
             str(tmp / "pool" / str(i)))
            for i, p in enumerate(plan.points)
        ]
        with ctx.Pool(CONCURRENCY, initializer=_warm) as pool:
            pool.map(_ready, range(CONCURRENCY), chunksize=1)  # imports and data loaded
            t0 = time.perf_counter()
            pool.map(_train_one, jobs, chunksize=1)
            pool_wall = time.perf_counter() - t0
        load3 = os.getloadavg()

    ideal = loop_wall / CONCURRENCY
    overhead = sweep_wall / ideal - 1.0
    figures = {
        "trials": TRIALS,
        "concurrency": CONCURRENCY,
        "pinned": PINS,
        "completed_in_sweep": int((df["status"] == "completed").sum()),
        "ray_start_seconds": round(ray_start, 2),
        "sweep_wall_seconds": round(sweep_wall, 2),
        "sweep_sum_trial_train_seconds": round(float(df["train_seconds"].sum()), 2),
        "loop_wall_seconds": round(loop_wall, 2),
        "loop_trial_seconds_mean": round(sum(seq) / len(seq), 2),
        "ideal_parallel_seconds": round(ideal, 2),
        "overhead_vs_ideal": round(overhead, 3),
        "overhead_with_ray_start": round((sweep_wall + ray_start) / ideal - 1.0, 3),
        "driver_cpu_seconds_during_sweep": round(driver_cpu, 2),
        "ray_daemons_cpu_seconds_during_sweep": round(daemons_cpu, 2),
        "pool_wall_seconds": round(pool_wall, 2),
        "overhead_vs_plain_pool": round(sweep_wall / pool_wall - 1.0, 3),
        "goal_overhead": GOAL,
        "meets_goal": overhead <= GOAL,
        "load_average": {
            "start": [round(x, 2) for x in load0],
            "after_sweep": [round(x, 2) for x in load1],
            "after_loop": [round(x, 2) for x in load2],
            "after_pool": [round(x, 2) for x in load3],
        },
    }
    path = write_result("sweep_overhead", figures)
    print(
        f"sweep {sweep_wall:.1f}s vs ideal {ideal:.1f}s (loop {loop_wall:.1f}s / {CONCURRENCY}): "
        f"overhead {overhead:+.0%} (goal <= {GOAL:.0%}); plain 2-process pool {pool_wall:.1f}s "
        f"(sweep {sweep_wall / pool_wall - 1:+.0%}); Ray start {ray_start:.1f}s; CPU seconds "
        f"during the sweep: driver {driver_cpu:.1f}, Ray's daemons {daemons_cpu:.1f} -> {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
