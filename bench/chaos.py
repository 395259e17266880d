"""Chaos: a 2,000-trial sweep through our CLI while trial workers and the driver are SIGKILLed.

    python bench/chaos.py                          # about 5-10 minutes on 2 CPU cores
    python bench/chaos.py --trials 200 --worker-kills 10     # a quicker look

Runs `python tune/run_sweep.py --space baseline_1pct --max-trials 2000 --stand-in-trainer 3
--max-failures 20 --no-report` (every trial reports three evaluations at once instead of
training: tests/stand_in.py) twice, with the same storage and name:

1. undisturbed (the reference table; then the sweep directory is removed);
2. under chaos: random trial workers (the processes of Ray's trial actors, `ray::ImplicitFunc`,
   found among the driver's descendants, never the raylet, GCS or the driver) are SIGKILLed,
   spread over the whole sweep (`--worker-kills`, 50 by default), and the driver itself is
   SIGKILLed once when 40% of the planned trials are completed rows of the results table; what
   is left of its local Ray cluster is cleaned up, then `python tune/run_sweep.py --resume DIR`
   continues it (again and again while it stops short; workers are still killed meanwhile).

During both runs a thread reads results.parquet and results.csv with pandas every 0.2 s and
counts reads that fail (after the file first appeared: it is replaced atomically, so it must
always be readable). The parquet file is read through one open file; `pd.read_parquet(path)`
is counted apart (`path_failures`): pyarrow opens the path twice, footer then pages, and a
rewrite in between fails that read (see READS). Checked at the end:

- every planned trial has exactly one row (unique trial ids and configurations), all completed;
- no completed trial ran again: a stand-in trial appends `<time> <trial id>` to
  trials/stand_in_started.txt when it starts and writes trials/<id>/stand_in_done.json after
  its last report; a trial Ray starts again after that re-reports from the marker without a
  start line, so no start line may follow its completion, and every started trial id must be
  a row of the final table (a completed trial whose id vanished would be run again under
  another id);
- the final table equals the undisturbed one in every column but trial_id, trial_dir and
  train_seconds (rows matched by their configuration).

Writes bench/results/chaos.json (bench/results/chaos.md is its human summary).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the test-only stand-in trainer lives with the tests
from stand_in import (
    DONE_FILE,
    REREPORTED_LOG,
    STARTED_LOG,
    read_time_log,
)

from tune.results import read_table  # noqa: E402

REPORTS = 3
# Columns that differ between two runs of the same sweep by design.
RUN_COLUMNS = ("trial_id", "trial_dir", "train_seconds", "cpu_seconds", "gpu_seconds")
# Trial actors of our trainable: `ray::ImplicitFunc` idle, `ray::ImplicitFunc.train` running.
WORKER_MARKS = ("ImplicitFunc", "run_trial")


# --- processes ---------------------------------------------------------------------------------
def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, start time in clock ticks, command line) of this machine's processes
    (read from /proc; a process that ends while being read is left out)."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(p.name)] = (int(fields[1]), int(fields[19]), cmd.strip())
    return out


def descendants(root: int, table: dict | None = None) -> dict[int, tuple[int, str]]:
    """pid -> (start time, command line) of every descendant of `root`."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in found or pid not in table:
            continue
        found[pid] = (table[pid][1], table[pid][2])
        todo.extend(children.get(pid, []))
    return found


def trial_workers(driver_pid: int) -> dict[int, tuple[int, str]]:
    """The driver's trial worker processes (Ray's actors running our trainable): pid ->
    (start time, process title). Ray's own daemons (raylet, GCS, agents) and idle pooled
    workers (`ray::IDLE`) are not among them."""
    return {
        pid: (start, cmd) for pid, (start, cmd) in descendants(driver_pid).items()
        if cmd.startswith("ray::") and any(m in cmd for m in WORKER_MARKS)
    }


def actor_task(title: str) -> str:
    """The task a trial actor ran when it was killed, from its process title
    (`ray::ImplicitFunc.train` -> train); "none" between tasks."""
    head = title.split()[0] if title else ""
    return head.split(".", 1)[1] if "." in head else "none"


def kill(pid: int, start: int) -> bool:
    """SIGKILL `pid` if it is still the process that started at `start` (no reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if int(stat.rsplit(")", 1)[1].split()[19]) != start:
            return False
        os.kill(pid, signal.SIGKILL)
        return True
    except (OSError, ValueError, IndexError):
        return False


def alive(pid: int, start: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[19]) == start and fields[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


# --- the results table, read while it is written ------------------------------------------------
# The reads of a poll: the parquet table opened once (a file handle, then pandas), the csv
# table, and the parquet table by its path as `pd.read_parquet(path)` reads it: pyarrow opens
# the file once for its footer and again for its pages, so a rewrite between the two (an
# atomic os.replace: a new file under the same name) pairs the old footer with the new pages
# and the read fails ("Page was smaller than expected"); counted apart, as `path_failures`.
READS = ("parquet", "csv", "parquet_by_path")


class TableReader(threading.Thread):
    """Reads `<sweep>/results.parquet` and `.csv` with pandas every `interval` seconds and
    counts the reads that fail (READS says which). A file not there yet is no failure; one
    that disappears after it appeared is (the sweep replaces it atomically, so it never goes
    missing)."""

    def __init__(self, sweep_dir: Path, interval: float = 0.2):
        super().__init__(daemon=True)
        self.sweep_dir = Path(sweep_dir)
        self.interval = interval
        self.stop_event = threading.Event()
        self.polls = 0
        self.reads = {k: 0 for k in READS}
        self.failed = {k: 0 for k in READS}
        self.absent = 0  # reads before the file first appeared
        self.errors: list[str] = []
        self.seen = {"parquet": False, "csv": False}
        self.rows = 0  # rows of the parquet table at the last read
        self.completed = 0  # of them completed
        self.max_rows = 0
        self.row_drops: list[tuple[int, int]] = []  # (rows before, rows after) when it shrank

    @staticmethod
    def _read(kind: str, path: Path):
        import pandas as pd

        if kind == "csv":
            return pd.read_csv(path)
        if kind == "parquet_by_path":
            return pd.read_parquet(path)
        with open(path, "rb") as f:  # one open file: one version of the table
            return pd.read_parquet(f)

    def read_once(self) -> None:
        self.polls += 1
        for kind in READS:
            fmt = "csv" if kind == "csv" else "parquet"
            path = self.sweep_dir / f"results.{fmt}"
            self.reads[kind] += 1
            try:
                df = self._read(kind, path)
                self.seen[fmt] = True
            except FileNotFoundError as err:
                if self.seen[fmt]:
                    self._fail(kind, err)
                else:
                    self.absent += 1
                continue
            except Exception as err:  # noqa: BLE001 - any failure to read counts
                self._fail(kind, err)
                continue
            if kind == "parquet":
                n = len(df)
                if n < self.rows:
                    self.row_drops.append((self.rows, n))
                self.rows, self.max_rows = n, max(self.max_rows, n)
                self.completed = int((df["status"] == "completed").sum())

    def _fail(self, kind: str, err: BaseException) -> None:
        self.failed[kind] += 1
        if len(self.errors) < 10:
            self.errors.append(f"{kind}: {type(err).__name__}: {err}"[:300])

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.read_once()
            self.stop_event.wait(self.interval)

    def stop(self) -> dict:
        self.stop_event.set()
        self.join(timeout=30)
        return {
            "polls": self.polls,
            "reads": sum(self.reads.values()),
            "reads_by_kind": dict(self.reads),
            # parquet through one open file, and csv: the table as written must always read
            "failures": self.failed["parquet"] + self.failed["csv"],
            # pd.read_parquet(path): pyarrow's two opens can straddle a rewrite (READS)
            "path_failures": self.failed["parquet_by_path"],
            "reads_before_the_table_existed": self.absent, "errors": self.errors,
            "times_the_row_count_went_down": len(self.row_drops),
            "row_count_drops": self.row_drops[:10],
        }


# --- the CLI ---------------------------------------------------------------------------------
def sweep_command(storage: Path, name: str, trials: int, max_failures: int = 20,
                  reports: int = REPORTS) -> list[str]:
    return [sys.executable, "tune/run_sweep.py", "--space", "baseline_1pct",
            "--max-trials", str(trials), "--stand-in-trainer", str(reports),
            "--max-failures", str(max_failures), "--no-report",
            "--storage", str(storage), "--name", name]


def resume_command(sweep_dir: Path) -> list[str]:
    return [sys.executable, "tune/run_sweep.py", "--resume", str(sweep_dir), "--no-report"]


def bench_env(tmp: Path) -> dict:
    """The sweeps' environment: Ray's files under `tmp` (short socket paths, our processes
    told apart from other Ray clusters on the machine), no token auth for the throwaway
    local clusters."""
    ray_tmp = Path(tmp) / "ray"
    ray_tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    return env


class Driver:
    """One `tune/run_sweep.py` process, its output collected by a thread."""

    def __init__(self, cmd: list[str], env: dict):
        self.cmd = cmd
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout),
                                        daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


def _started_ids(sweep_dir: Path) -> set[str]:
    return {tid for _, tid in read_time_log(sweep_dir / "trials" / STARTED_LOG)}


def run_calm(storage: Path, name: str, trials: int, env: dict, timeout: float = 1800) -> dict:
    """The sweep with nothing killed: (figures, its results table)."""
    sweep_dir = storage / name
    reader = TableReader(sweep_dir)
    reader.start()
    driver = Driver(sweep_command(storage, name, trials), env)
    rc = driver.wait(timeout=timeout)
    wall = time.perf_counter() - driver.t0
    reads = reader.stop()
    if rc != 0:
        raise RuntimeError(f"the undisturbed sweep exited with {rc}:\n" + "".join(driver.lines[-30:]))
    return {"exit_status": rc, "wall_seconds": round(wall, 1), "reader": reads,
            "last_lines": "".join(driver.lines).strip().splitlines()[-3:]}


def _process_name(cmd: str) -> str:
    """A short name: a Ray process title, or the program (a Python script's file name)."""
    words = cmd.split()
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0]
    scripts = [w for w in words[1:] if w.endswith(".py")]
    return (scripts[0] if scripts else words[0]).rsplit("/", 1)[-1]


def clean_up_after(snapshot: dict[int, tuple[int, str]], ray_tmp: str, wait_s: float = 20.0
                   ) -> dict:
    """After the driver was SIGKILLed: wait for what it had started (its local Ray cluster:
    GCS, raylet, workers, agents) to end by itself, then SIGKILL what is left of it (the
    processes of `snapshot`, and any other whose command line names our Ray directory)."""
    t0 = time.perf_counter()
    left = dict(snapshot)
    while left and time.perf_counter() - t0 < wait_s:
        left = {pid: v for pid, v in left.items() if alive(pid, v[0])}
        if left:
            time.sleep(0.2)
    stray = {
        pid: (start, cmd) for pid, (_, start, cmd) in process_table().items()
        if ray_tmp in cmd and pid not in left and pid != os.getpid()
    }
    lingering = {**left, **stray}
    for pid, (start, _) in lingering.items():
        kill(pid, start)
    names = sorted({_process_name(cmd) for _, cmd in lingering.values() if cmd})
    return {
        "processes_of_the_killed_driver": len(snapshot),
        "lingering_after_s": round(time.perf_counter() - t0, 1),
        "lingering": len(lingering),
        "lingering_names": names,
    }


def run_chaos(
    storage: Path, name: str, trials: int, env: dict, worker_kills: int = 50,
    driver_kill_at: float = 0.4, max_resumes: int = 5, seed: int = 0, poll_s: float = 0.05,
    min_kill_gap_s: float = 0.2, linger_wait_s: float = 20.0, worker_tasks: tuple = (),
    timeout: float = 1800, log=print,
) -> dict:
    """The sweep while workers and (once) the driver are SIGKILLed, resumed until it finishes.

    Worker kill k (0-based) is due once `trials * (0.02 + 0.96 * k / worker_kills)` distinct
    trials have started, so the kills spread over the whole sweep; the driver is killed when
    `driver_kill_at` of the planned trials are completed rows of the table (0: never).
    `worker_tasks`: kill only workers running one of these actor tasks (e.g. ("train",));
    empty: any trial worker."""
    rng = random.Random(seed)
    sweep_dir = storage / name
    ray_tmp = env["RAY_TMPDIR"]
    reader = TableReader(sweep_dir)
    reader.start()
    t0 = time.perf_counter()
    kills: list[dict] = []
    drivers: list[dict] = []
    driver_kills: list[dict] = []
    crashed = failed = 0
    cmd = sweep_command(storage, name, trials)
    started_ids: set[str] = set()
    last_kill = 0.0
    finished = False
    for attempt in range(max_resumes + 1):
        driver = Driver(cmd, env)
        killed_driver = False
        log(f"driver {attempt}: pid {driver.pid}: {' '.join(cmd[1:])}")
        while driver.proc.poll() is None:
            if time.perf_counter() - t0 > timeout:
                driver.proc.kill()
                raise RuntimeError(f"the chaos sweep ran past {timeout:.0f} s")
            time.sleep(poll_s)
            if (not driver_kills and driver_kill_at > 0
                    and reader.completed >= driver_kill_at * trials):
                snapshot = descendants(driver.pid)
                os.kill(driver.pid, signal.SIGKILL)
                driver.wait(timeout=60)
                when = time.perf_counter() - t0
                cleanup = clean_up_after(snapshot, ray_tmp, wait_s=linger_wait_s)
                entry = {"at_seconds": round(when, 1), "completed_rows_then": reader.completed,
                         "distinct_trials_started_then": len(_started_ids(sweep_dir)), **cleanup}
                driver_kills.append(entry)
                killed_driver = True
                log(f"driver killed at {when:.1f}s with {reader.completed} completed rows; "
                    f"{cleanup['lingering']} lingering process(es) cleaned up")
                break
            if len(kills) >= worker_kills or time.perf_counter() - last_kill < min_kill_gap_s:
                continue
            started_ids |= _started_ids(sweep_dir)
            due = trials * (0.02 + 0.96 * len(kills) / max(1, worker_kills))
            if len(started_ids) < due:
                continue
            workers = trial_workers(driver.pid)
            if worker_tasks:
                workers = {p: v for p, v in workers.items() if actor_task(v[1]) in worker_tasks}
            if not workers:
                continue
            pid = rng.choice(sorted(workers))
            start, title = workers[pid]
            if kill(pid, start):
                last_kill = time.perf_counter()
                kills.append({"at": last_kill, "at_seconds": round(last_kill - t0, 2),
                              "driver": attempt, "actor_task": actor_task(title),
                              "distinct_trials_started": len(started_ids)})
        if not killed_driver:
            rc = driver.wait(timeout=60)
        else:
            rc = driver.proc.returncode
        crashed += driver.count("crashed (failure")
        failed += driver.count(" failed: ")
        drivers.append({
            "command": " ".join(driver.cmd[1:]).replace(str(storage), "<tmp>"),
            "exit_status": rc, "killed": killed_driver,
            "seconds": round(time.perf_counter() - driver.t0, 1),
            "last_lines": "".join(driver.lines).strip().splitlines()[-4:],
        })
        if not killed_driver and rc == 0:
            finished = True
            break
        log(f"driver {attempt} ended with {rc}; resuming")
        cmd = resume_command(sweep_dir)
    wall = time.perf_counter() - t0
    time.sleep(0.5)  # one more read of the final table
    reads = reader.stop()
    # What a kill cost: seconds from it to the next trial start (wall clock of the start log).
    epoch = time.time() - time.perf_counter()
    starts = sorted(t for t, _ in read_time_log(sweep_dir / "trials" / STARTED_LOG))
    stalls = []
    for k in kills:
        at = k.pop("at") + epoch
        nxt = next((t for t in starts if t > at), None)
        k["seconds_to_next_trial_start"] = None if nxt is None else round(nxt - at, 2)
        if nxt is not None:
            stalls.append(nxt - at)
    by_task: dict[str, int] = {}
    for k in kills:
        by_task[k["actor_task"]] = by_task.get(k["actor_task"], 0) + 1
    return {
        "finished": finished,
        "wall_seconds": round(wall, 1),
        "worker_kills": len(kills),
        "worker_kills_by_actor_task": by_task,
        "worker_kills_that_hit_a_trial": crashed,
        "median_seconds_from_a_kill_to_the_next_trial_start": (
            round(sorted(stalls)[len(stalls) // 2], 2) if stalls else None),
        "trial_crashes_ray_reported": crashed,
        "trials_errored_ray_reported": failed,
        "driver_kills": len(driver_kills),
        "driver_kill_details": driver_kills,
        "resumes": len(drivers) - 1,
        "drivers": drivers,
        "reader": reads,
        "kills": kills,
    }


# --- checks ----------------------------------------------------------------------------------
def config_columns(df) -> list[str]:
    from s4l_models.config import TrainConfig

    return [c for c in TrainConfig.field_names() if c in df.columns]


def check_sweep(sweep_dir: Path, trials: int) -> dict:
    """The invariants of a finished sweep (see the module docstring)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    df = read_table(sweep_dir / "results.parquet")  # lists as JSON: rows compare and hash
    csv = pd.read_csv(sweep_dir / "results.csv")
    ids = set(df["trial_id"].astype(str))
    cfg = config_columns(df)
    starts = read_time_log(sweep_dir / "trials" / STARTED_LOG)
    rereported = read_time_log(sweep_dir / "trials" / REREPORTED_LOG)
    done_at: dict[str, float] = {}
    for marker in (sweep_dir / "trials").glob(f"*/{DONE_FILE}"):
        doc = json.loads(marker.read_text())
        done_at[marker.parent.name] = float(doc["completed_at"])
    starts_by_id: dict[str, list[float]] = {}
    for t, tid in starts:
        starts_by_id.setdefault(tid, []).append(t)
    reruns = sorted(tid for tid, ts in starts_by_id.items()
                    if tid in done_at and any(t > done_at[tid] for t in ts))
    errored = {}
    for tid in df.loc[df["status"] == "errored", "trial_id"].astype(str):
        try:
            text = (sweep_dir / "ray" / tid / "error.txt").read_text(errors="replace")
        except OSError:
            text = ""
        stamps = [ln.split("occurred at", 1)[-1].strip(" )") for ln in text.splitlines()
                  if ln.startswith("Failure #")]
        errored[tid] = {"failures": len(stamps), "distinct_failure_times": len(set(stamps))}
    started_not_in_table = sorted(set(starts_by_id) - ids)
    completed_not_in_table = sorted(set(done_at) - ids)
    return {
        "rows": len(df),
        "csv_rows": len(csv),
        "planned": trials,
        "unique_trial_ids": len(ids),
        "duplicate_rows": len(df) - len(ids),
        "duplicate_configurations": int(df.duplicated(subset=cfg).sum()),
        "completed": int((df["status"] == "completed").sum()),
        "statuses": {str(k): int(v) for k, v in df["status"].value_counts().items()},
        "trial_starts": len(starts),
        "trials_started_more_than_once": sum(len(ts) > 1 for ts in starts_by_id.values()),
        "completion_markers": len(done_at),
        "rereported_from_marker": len(rereported),
        "errored_trials": errored,
        "reruns_of_completed_trials": len(reruns),
        "rerun_ids": reruns[:20],
        "started_ids_missing_from_table": len(started_not_in_table),
        "completed_ids_missing_from_table": len(completed_not_in_table),
        "missing_ids": (started_not_in_table + completed_not_in_table)[:20],
    }


def compare_tables(reference, other, ignore: tuple[str, ...] = RUN_COLUMNS) -> dict:
    """Whether two results tables of the same sweep hold the same rows, matched by their
    configuration, in every column but `ignore` (floats compared exactly)."""
    import pandas as pd

    cfg = [c for c in config_columns(reference) if c not in ignore]
    keep = [c for c in reference.columns if c not in ignore]
    out: dict = {"columns_compared": len(keep), "columns_ignored": list(ignore)}
    if list(reference.columns) != list(other.columns):
        out.update(equal=False, reason="different columns")
        return out
    if len(reference) != len(other):
        out.update(equal=False, reason=f"{len(reference)} vs {len(other)} rows")
        return out

    def norm(df):
        df = df[keep].copy()
        key = df[cfg].astype(object).map(repr).agg("|".join, axis=1)
        return df.assign(_key=key).sort_values("_key").drop(columns="_key").reset_index(drop=True)

    a, b = norm(reference), norm(other)
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        out.update(equal=True, differing_cells=0, differing_rows=0)
    except AssertionError as err:
        diff = ~((a == b) | (a.isna() & b.isna()))
        rows = diff.any(axis=1)
        out.update(equal=False, differing_cells=int(diff.to_numpy().sum()),
                   differing_rows=int(rows.sum()),
                   differing_rows_status_here={
                       str(k): int(v) for k, v in b.loc[rows, "status"].value_counts().items()
                   } if "status" in b else {},
                   differing_columns=sorted(diff.columns[diff.any()].tolist()),
                   reason=str(err).splitlines()[0][:300])
    return out


def invariants_hold(check: dict, comparison: dict, chaos: dict) -> bool:
    return (
        chaos["finished"]
        and check["rows"] == check["planned"] == check["unique_trial_ids"] == check["completed"]
        and check["csv_rows"] == check["rows"]
        and check["duplicate_rows"] == 0 and check["duplicate_configurations"] == 0
        and check["reruns_of_completed_trials"] == 0
        and check["started_ids_missing_from_table"] == 0
        and check["completed_ids_missing_from_table"] == 0
        and chaos["reader"]["failures"] == 0
        and comparison["equal"]
    )


def bench(tmp: Path, trials: int, worker_kills: int, driver_kill_at: float = 0.4,
          seed: int = 0, parallel: bool = False, linger_wait_s: float = 20.0,
          worker_tasks: tuple = (), log=print) -> dict:
    """The whole benchmark in `tmp`: the undisturbed run, then the same sweep under chaos.

    `parallel` (the quick test): the undisturbed run goes beside the chaos run, in another
    sweep directory (the stand-in's scores do not depend on it; its `splits_path` column is
    then left out of the comparison) instead of before it in the same one."""

    tmp = Path(tmp)
    storage, name = tmp / "runs", "chaos"
    sweep_dir = storage / name
    calm_storage = tmp / "calm" if parallel else storage
    calm_env, chaos_env = bench_env(tmp / "ray-calm"), bench_env(tmp / "ray-chaos")
    calm_box: dict = {}

    def calm_run() -> None:
        try:
            calm_box["figures"] = run_calm(calm_storage, name, trials, calm_env)
            calm_box["table"] = read_table(calm_storage / name / "results.parquet")
            calm_box["check"] = check_sweep(calm_storage / name, trials)
        except BaseException as err:  # noqa: BLE001 - raised in the main thread below
            calm_box["error"] = err

    log(f"undisturbed run of {trials} trials" + (" (beside the chaos run)" if parallel else ""))
    calm_thread = threading.Thread(target=calm_run, daemon=True)
    calm_thread.start()
    if not parallel:
        calm_thread.join()
        if "error" in calm_box:
            raise calm_box["error"]
        log(f"  {calm_box['figures']['wall_seconds']} s; {calm_box['check']['rows']} rows")
        # the chaos run is the same command (same storage and name): the undisturbed sweep
        # moves aside, kept with --keep
        sweep_dir.rename(sweep_dir.with_name(sweep_dir.name + "-undisturbed"))
    log(f"chaos run: {worker_kills} worker kills, the driver killed at {driver_kill_at:.0%} "
        "of the trials completed")
    chaos = run_chaos(storage, name, trials, chaos_env, worker_kills=worker_kills,
                      driver_kill_at=driver_kill_at, seed=seed, linger_wait_s=linger_wait_s,
                      worker_tasks=worker_tasks, log=log)
    calm_thread.join()
    if "error" in calm_box:
        raise calm_box["error"]
    check = check_sweep(sweep_dir, trials)
    ignore = RUN_COLUMNS + (("splits_path",) if parallel else ())
    comparison = compare_tables(calm_box["table"], read_table(sweep_dir / "results.parquet"),
                                ignore=ignore)
    return {
        "trials": trials,
        "reports_per_trial": REPORTS,
        "command": " ".join(sweep_command(Path("<tmp>"), name, trials)[1:]),
        "resume_command": " ".join(resume_command(Path("<tmp>") / name)[1:]),
        "invariants_hold": invariants_hold(check, comparison, chaos),
        "undisturbed": {**calm_box["figures"], "check": calm_box["check"]},
        "chaos": {**{k: v for k, v in chaos.items() if k != "kills"}, "check": check},
        "table_equal_to_undisturbed": comparison,
        "kills": chaos["kills"],
    }


def summary(fig: dict) -> str:
    c, ch = fig["chaos"], fig["chaos"]["check"]
    return (
        f"{ch['rows']} rows of {fig['trials']} planned ({ch['unique_trial_ids']} unique ids, "
        f"{ch['completed']} completed, {ch['duplicate_rows']} duplicates); "
        f"{c['worker_kills']} worker kills (Ray reported {c['worker_kills_that_hit_a_trial']} "
        f"trial crashes, {c['trials_errored_ray_reported']} trials errored), "
        f"{c['driver_kills']} driver kill, {c['resumes']} resume(s); "
        f"{ch['reruns_of_completed_trials']} reruns of completed trials "
        f"({ch['rereported_from_marker']} re-reported from their marker); "
        f"reader: {c['reader']['failures']} failed of {c['reader']['reads']} reads "
        f"({c['reader']['path_failures']} failed pd.read_parquet(path) reads); "
        f"table equal to the undisturbed run's: {fig['table_equal_to_undisturbed']['equal']}; "
        f"chaos {c['wall_seconds']} s vs undisturbed {fig['undisturbed']['wall_seconds']} s"
    )


def merge_result(key: str, fig: dict) -> Path:
    """Store `fig` (with its date and command) under `key` of bench/results/chaos.json."""
    from common import RESULTS, command_line

    path = RESULTS / "chaos.json"
    doc = json.loads(path.read_text())
    doc[key] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": command_line(), **fig}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def main() -> int:
    from common import write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--worker-kills", type=int, default=50)
    ap.add_argument("--driver-kill-at", type=float, default=0.4,
                    help="kill the driver once this fraction of trials are completed rows (0: never)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the sweeps in this folder")
    ap.add_argument("--merge-into", metavar="KEY",
                    help="store this run's figures under KEY of the existing "
                    "bench/results/chaos.json instead of replacing it (e.g. a run with a fix "
                    "applied: with_proposed_ray_fix)")
    args = ap.parse_args()
    if args.keep:
        tmp = Path(args.keep).resolve()
        tmp.mkdir(parents=True, exist_ok=True)
        fig = bench(tmp, args.trials, args.worker_kills, args.driver_kill_at, args.seed,
                    log=lambda s: print(s, flush=True))
    else:
        # short: Ray's socket paths live under it
        with tempfile.TemporaryDirectory(prefix="s4l-chaos-", dir="/tmp") as tmp:
            fig = bench(Path(tmp), args.trials, args.worker_kills, args.driver_kill_at,
                        args.seed, log=lambda s: print(s, flush=True))
    if args.merge_into:
        path = merge_result(args.merge_into, fig)
    else:
        path = write_result("chaos", fig)
    print(summary(fig))
    print(f"invariants hold: {fig['invariants_hold']} -> {path}")
    return 0 if fig["invariants_hold"] else 1


if __name__ == "__main__":
    sys.exit(main())
