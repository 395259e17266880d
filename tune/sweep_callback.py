"""The driver's Ray Tune callback: the results table as trials finish, and one progress line.

`SweepCallback` sees every trial event of the sweep and hands it on: to the results table
(`ResultsTable`, tune/results_table.py: results.parquet/.csv and predictions.npz, rewritten
when a trial finishes or errors and at most every `table_every_s` seconds while results
arrive) and to the progress line (`ProgressLine`, tune/progress_line.py: done / running /
errored of the total, an ETA and the elapsed time, the best metric so far). The table owns the
per-trial state (the trials, those finished, their configs and costs); the progress line reads
it from there. The callback itself trims Ray's per-trial statistics of finished trials
(`release`), prints a line when a trial fails or is restarted, stops the sweep the way Ctrl-C
does when the disk is full, and pickles as its constructor's arguments (Ray saves it with the
run config).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import tune

from s4l_models.errors import DiskFullError
from s4l_models.io import atomic_write

from .live_report import LiveReport
from .progress_line import ProgressLine
from .results_table import ResultsTable
from .storage import RemoteSweep
from .sweep_plan import Sizes


def stop_ray_tune_loop() -> None:
    """Ask Ray Tune's loop to end as Ctrl-C does (it saves the experiment and leaves unfinished
    trials resumable): Ray listens for SIGUSR1 as well as SIGINT while it runs in the main
    thread. Elsewhere (no handler) the signal would kill the process, so it is not sent; the
    driver then stops at the end of the loop."""
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGUSR1)
    if callable(handler):
        os.kill(os.getpid(), signal.SIGUSR1)


class SweepCallback(tune.Callback):
    def __init__(
        self,
        sweep_dir: str,
        setup: dict[str, Any],
        metric: str,
        axes: list[str],
        total: int,
        sizes: Sizes | None,
        tiny_k: tuple[int, ...] = (1, 5),
        table_every_s: float = 10.0,
        log_every_s: float = 30.0,
        predictions_every_s: float = 30.0,
        quiet: bool = False,
        concurrency: int = 1,
        planned_costs: Sequence[float] | None = None,
        live_report: bool = False,
    ):
        """`concurrency`: trials at a time (the ETA schedules the remaining trials on that many
        slots; more trials seen running at once count too). `planned_costs`: the estimated cost
        (`sweep_plan.trial_cost`) of every planned trial in the order Ray creates them, so that
        the ETA counts trials Ray has not created yet at their own cost (without it, at the mean
        cost of those it has)."""
        self._args = dict(
            sweep_dir=sweep_dir, setup=setup, metric=metric, axes=axes, total=total, sizes=sizes,
            tiny_k=tiny_k, table_every_s=table_every_s, log_every_s=log_every_s,
            predictions_every_s=predictions_every_s, quiet=quiet, concurrency=concurrency,
            planned_costs=None if planned_costs is None else tuple(map(float, planned_costs)),
            live_report=live_report,
        )
        self._init(**self._args)

    # Ray pickles the run config (with its callbacks) into the experiment directory.
    def __getstate__(self) -> dict:
        return {"_args": self._args}

    def __setstate__(self, state: dict) -> None:
        self._args = state["_args"]
        self._init(**self._args)

    def _init(self, sweep_dir, setup, metric, axes, total, sizes, tiny_k, table_every_s,
              log_every_s, predictions_every_s, quiet, concurrency=1,
              planned_costs=None, live_report=False) -> None:
        self.metric = metric
        # a sweep on an object store: every file the table writes is uploaded after it
        remote = (RemoteSweep(setup["remote_uri"], Path(sweep_dir))
                  if setup.get("remote_uri") else None)
        self.table_remote = remote is not None
        self.table = ResultsTable(
            sweep_dir, setup, total, sizes, tiny_k, table_every_s=table_every_s,
            predictions_every_s=predictions_every_s, on_disk_full=self._stop_on_full_disk,
            after_write=(lambda names: remote.push(*names)) if remote is not None else None,
        )
        self.progress = ProgressLine(
            self.table, metric, axes, log_every_s=log_every_s, quiet=quiet,
            concurrency=concurrency, planned_costs=planned_costs,
        )
        # the report rebuilt while the sweep runs (tune/live_report.py); None: no report
        self.live = LiveReport(
            sweep_dir, on_built=(lambda: remote.push("report")) if remote is not None else None,
        ) if live_report else None

    # --- what the driver reads and calls (tune/runner.py) ---------------------------------------
    @property
    def trials(self) -> list:
        return self.table.trials

    @trials.setter
    def trials(self, trials: list) -> None:
        self.table.trials = trials

    @property
    def disk_full(self) -> DiskFullError | None:
        """The full disk met while writing the table inside Ray's loop (raised after it)."""
        return self.table.disk_full

    @disk_full.setter
    def disk_full(self, err: DiskFullError | None) -> None:
        self.table.disk_full = err

    def all_finished(self) -> bool:
        return self.table.all_finished()

    def carry_rows(self, previous) -> None:
        self.table.carry_rows(previous)

    def keep_rows(self, previous) -> None:
        self.table.keep_rows(previous)

    def write(self, final: bool = False) -> None:
        self.table.write(final=final)

    def end_line(self) -> None:
        self.progress.end_line()

    # --- Ray Tune hooks -------------------------------------------------------------------------
    def setup(self, **info) -> None:
        self.progress.start()

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.table.adopt_finished(trials)
        self.table.trials = trials

    def on_step_end(self, iteration, trials, **info) -> None:
        self.table.trials = trials
        self.table.maybe_write()
        self.progress.print_progress()
        if self.live is not None and self.table.written_finished:
            self.live.maybe_start(self.table.written_finished)

    def stop_live_report(self) -> None:
        """Before the final report: a live rebuild still running would overwrite it."""
        if self.live is not None:
            self.live.stop()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.progress.trial_started(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.table.trials = trials
        self.progress.trial_reported(trial, result)
        self.table.write_if_due()

    def release(self, trial) -> None:
        """Drop Ray Tune's running statistics of a finished trial's metrics.

        For every numeric value it was ever sent (all metrics, Ray's timers, the config) Ray
        keeps min/max/avg/last-n averages plus two deques, and re-encodes them whenever it
        saves the experiment: ~90 KB per trial, the driver's memory growing with the number of
        trials (bench/grid_scale.py). Only `ResultGrid.get_best_result` reads them, for the
        sweep's metric, so that one is kept; the last result (our table's row) stays as it is.
        """
        meta = getattr(trial, "run_metadata", None)
        analysis = getattr(meta, "metric_analysis", None)
        if not isinstance(analysis, dict):
            return  # another Ray version: leave its internals alone
        meta.metric_analysis = {k: v for k, v in analysis.items() if k == self.metric}
        meta.metric_n_steps = {}

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.table.trials = trials
        self.release(trial)
        self.table.finish(trial, "TERMINATED")
        self.table.maybe_write()
        self.progress.print_progress(force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.table.trials = trials
        self.release(trial)
        self.table.finish(trial, "ERROR")
        self.table.maybe_write()
        self.progress.say(f"trial {trial.trial_id} failed: {self.table.error_of(trial)} "
                          f"(traceback: {self.error_file(trial)})")
        self.progress.print_progress(force=True)

    def error_file(self, trial) -> str:
        """The failed trial's error.txt to name: the sweep's own `<sweep>/ray/<trial>/error.txt`.
        Ray 2.60 writes it first into its driver staging folder under the Ray session's temp
        directory (`trial.local_path`, gone with the session) and copies that folder into the
        sweep only at its next experiment snapshot; it is copied now so that the path printed
        exists. A sweep on an object store (Ray uploads it there) names the staging file."""
        staged = Path(str(trial.local_path or "")) / "error.txt"
        if self.table_remote or not trial.path or "://" in str(trial.path):
            return str(staged)
        durable = Path(str(trial.path)) / "error.txt"
        try:
            if staged.is_file() and staged.resolve() != durable.resolve():
                durable.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(durable, lambda tmp: shutil.copyfile(staged, tmp))
        except (OSError, DiskFullError):
            pass  # the staged file stays readable; Ray copies it at its next snapshot
        return str(durable if durable.is_file() else staged)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.table.trials = trials
        self.progress.say(f"trial {trial.trial_id} crashed (failure {trial.num_failures}); Ray "
                          "restarts it from its last checkpoint")

    def on_experiment_end(self, trials, **info) -> None:
        self.table.adopt_finished(trials)  # a resumed sweep with nothing left to run has no steps
        self.table.trials = trials
        self.table.write_in_sweep(final=True)

    def _stop_on_full_disk(self) -> None:
        """The table met a full disk inside Ray's loop (it keeps the error, `disk_full`, for the
        driver to raise after the loop): stop the sweep the way Ctrl-C stops it."""
        self.progress.say("the disk is full: stopping the sweep (the error follows at the end)")
        stop_ray_tune_loop()


__all__ = ["SweepCallback", "stop_ray_tune_loop"]
