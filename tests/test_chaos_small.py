"""bench/chaos.py scaled down: 40 stand-in trials through the CLI while trial workers and the
driver are SIGKILLed, resumed with --resume; the same invariants as the benchmark.

Trial workers are killed only while they run a trial's `train` task: a worker killed while
Ray Tune resets it for its next trial (reuse_actors) makes Ray 2.60 error that trial after one
death, whatever --max-failures (bench/results/chaos.md; the fix is
`count_actor_deaths_once` proposed there), which this test would hit at random.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import chaos


@pytest.mark.slow
def test_a_sweep_survives_killed_workers_and_a_killed_driver_with_one_row_per_trial():
    # short paths: Ray's socket files live under the Ray directory
    tmp = Path(tempfile.mkdtemp(prefix="s4l-chaos-", dir="/tmp"))
    try:
        fig = chaos.bench(tmp, trials=40, worker_kills=3, driver_kill_at=0.4, parallel=True,
                          linger_wait_s=2.0, worker_tasks=("train",), log=lambda s: None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run, check = fig["chaos"], fig["chaos"]["check"]
    assert run["finished"] and run["worker_kills"] == 3 and run["driver_kills"] == 1
    assert run["resumes"] >= 1 and run["drivers"][-1]["exit_status"] == 0
    # every kill hit a worker inside a trial's train task (chosen that way); Ray's report of it
    # ("crashed (failure") is printed by the driver once it notices, so a kill shortly before
    # the driver's own SIGKILL can go unreported (seen once in CI: 2 of 3): at least one report
    # shows the crash path ran
    assert run["worker_kills_by_actor_task"] == {"train": 3}
    assert run["worker_kills_that_hit_a_trial"] >= 1
    # every planned trial: exactly one row, completed
    assert check["rows"] == check["csv_rows"] == check["unique_trial_ids"] == 40
    assert check["completed"] == 40, check["statuses"]
    assert check["duplicate_rows"] == 0 and check["duplicate_configurations"] == 0
    # no completed trial ran again; every started or completed trial is a row
    assert check["reruns_of_completed_trials"] == 0, check["rerun_ids"]
    assert check["started_ids_missing_from_table"] == 0
    assert check["completed_ids_missing_from_table"] == 0
    # the table was readable at every poll, and ends equal to the undisturbed run's
    assert run["reader"]["failures"] == 0, run["reader"]["errors"]
    assert run["reader"]["polls"] > 20
    assert fig["table_equal_to_undisturbed"]["equal"], fig["table_equal_to_undisturbed"]
    assert fig["undisturbed"]["check"]["completed"] == 40
    assert fig["invariants_hold"]
