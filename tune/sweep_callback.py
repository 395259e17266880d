"""The driver's Ray Tune callback: the results table as trials finish, and one progress line.

`SweepCallback` sees every trial event of the sweep. It rewrites `results.parquet`/`.csv`
atomically when a trial finishes or errors (and at most every `table_every_s` seconds while
results arrive), gathers the completed trials' per-example correctness into `predictions.npz`,
and prints one progress line: done / running / errored of the total, the best metric so far with
its configuration, elapsed time and an ETA (from the trials' estimated costs, see
`sweep_plan.trial_cost`). On a terminal the line is redrawn in place; in a log it is printed
when a trial finishes and every `log_every_s` seconds.

Thousands of short trials: a table rewrite costs time in proportion to the rows, so after a
rewrite that took d seconds the next one waits at least TABLE_COST_FACTOR * d (the table then
costs at most ~5% of the driver's time; a small table is still rewritten at every finished
trial), and the progress line is recomputed at most once a second (`line()` walks every trial).
A finished trial's row is kept as a tuple of cells and its resolved config is dropped, so the
driver holds ~1 KB per finished trial (bench/grid_scale.py measures it).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from s4l_models.config import TrainConfig

from .results import (
    columns,
    make_row,
    results_frame,
    trial_status,
    write_predictions,
    write_results,
)
from .sweep_plan import Sizes, trial_cost
from .trainable import decode_value, resolve_config


# A table rewrite that took d seconds is followed by at least TABLE_COST_FACTOR * d seconds
# without one (so rewriting costs at most 1 / TABLE_COST_FACTOR of the driver's time).
TABLE_COST_FACTOR = 20.0
# A forced progress line (a trial finished) is recomputed at most this often.
MIN_LINE_INTERVAL_S = 1.0


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def format_point(point: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(decode_value(v))}" for k, v in point.items())


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
    ):
        self._args = dict(
            sweep_dir=sweep_dir, setup=setup, metric=metric, axes=axes, total=total, sizes=sizes,
            tiny_k=tiny_k, table_every_s=table_every_s, log_every_s=log_every_s,
            predictions_every_s=predictions_every_s, quiet=quiet,
        )
        self._init(**self._args)

    # Ray pickles the run config (with its callbacks) into the experiment directory.
    def __getstate__(self) -> dict:
        return {"_args": self._args}

    def __setstate__(self, state: dict) -> None:
        self._args = state["_args"]
        self._init(**self._args)

    def _init(self, sweep_dir, setup, metric, axes, total, sizes, tiny_k, table_every_s,
              log_every_s, predictions_every_s, quiet) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.setup_ = setup
        self.metric = metric
        self.axes = list(axes)
        self.total = int(total)
        self.sizes = sizes
        self.tiny_k = tuple(tiny_k)
        self.table_every_s = table_every_s
        self.log_every_s = log_every_s
        self.predictions_every_s = predictions_every_s
        self.quiet = quiet
        self.trials: list = []
        self._configs: dict[str, tuple] = {}  # unfinished trial id -> (config, resolved)
        self._costs: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._columns = columns(self.tiny_k)
        self._rows: dict[str, tuple] = {}  # finished trial id -> its row's cells, in column order
        self._table_wait = 0.0  # seconds the next rewrite waits after the last one
        self._dirty_table = False
        self._pred_cache: dict = {}
        self._t0 = time.monotonic()
        self._progress0: float | None = None
        self._last_table = 0.0
        self._last_pred = 0.0
        self._last_line = ""
        self._last_print = 0.0
        self._tty = bool(getattr(sys.stdout, "isatty", lambda: False)())
        self._dirty_pred = False
        # Trials Ray finished (completed, stopped by a scheduler, errored). A sweep interrupted
        # by Ctrl-C has Ray mark its running trials TERMINATED without finishing them; they
        # resume with --resume, so the table shows them as running.
        self.finished: dict[str, str] = {}  # trial id -> TERMINATED | ERROR
        self._seen_first_step = False

    # --- per-trial facts -------------------------------------------------------------------
    def resolved(self, trial) -> dict[str, Any]:
        """The trial's full TrainConfig dict (recomputed when PBT changes its config)."""
        cached = self._configs.get(trial.trial_id)
        if cached is None or cached[0] != trial.config:
            values = resolve_config(dict(trial.config), self.setup_)
            try:
                resolved = TrainConfig.from_dict(values).to_dict()
            except Exception:  # shown as the trial's error; keep the raw values in the table
                resolved = values
            cost = 1.0
            if self.sizes:
                try:
                    cost = trial_cost(resolved, self.sizes)
                except Exception:
                    pass
            cached = (dict(trial.config), resolved)
            self._configs[trial.trial_id] = cached
            self._costs[trial.trial_id] = cost
        return cached[1]

    def cost(self, trial) -> float:
        if trial.trial_id not in self._costs:
            self.resolved(trial)
        return self._costs[trial.trial_id]

    def trial_dir(self, trial) -> str:
        return str(Path(self.setup_["trials_dir"]) / trial.trial_id)

    def error_of(self, trial) -> str:
        if trial.trial_id not in self._errors:
            text = ""
            try:
                text = str(trial.get_error() or "")
            except Exception:
                pass
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            # The last line of a traceback names the exception; skip Ray's framing lines.
            useful = [ln for ln in lines if not ln.startswith(("Failure #", "Traceback"))]
            msg = useful[-1] if useful else "the trial failed (see its error.txt)"
            self._errors[trial.trial_id] = msg[:500]
        return self._errors[trial.trial_id]

    def ray_status(self, trial) -> str:
        """Ray's status, corrected: finished trials (Ray calls back before it updates the
        status) are TERMINATED/ERROR; interrupted ones, which Ray marks TERMINATED, RUNNING."""
        if trial.trial_id in self.finished:
            return self.finished[trial.trial_id]
        st = str(trial.status)
        return "RUNNING" if st in ("TERMINATED", "ERROR") else st

    def status_of(self, trial) -> str:
        return trial_status(self.ray_status(trial), trial.last_result)

    def all_finished(self) -> bool:
        """Every trial of the sweep ran to its end (none interrupted, none left to start)."""
        return len(self.trials) >= self.total and all(
            t.trial_id in self.finished for t in self.trials
        )

    # --- the table ---------------------------------------------------------------------------
    @staticmethod
    def _order(trial) -> tuple:
        """Creation order: Ray's experiment tag starts with the trial's number (a resumed
        sweep lists its trials in another order)."""
        head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
        return (int(head) if head.isdigit() else math.inf, str(trial.trial_id))

    def rows(self) -> list[tuple]:
        """The table's rows (cells in `columns(tiny_k)` order), in trial creation order."""
        rows = []
        for trial in sorted(self.trials, key=self._order):
            cached = self._rows.get(trial.trial_id)
            if cached is not None and trial.trial_id in self.finished:
                rows.append(cached)  # a finished trial's row no longer changes
                continue
            last = trial.last_result or {}
            if str(trial.status) == "PENDING" and not last:
                continue  # never started (yet): it gets a row once it reports
            status = self.status_of(trial)
            error = self.error_of(trial) if status == "errored" else ""
            row = make_row(trial.trial_id, status, self.resolved(trial), last,
                           self.trial_dir(trial), error=error, tiny_k=self.tiny_k)
            cells = tuple(row[c] for c in self._columns)
            if trial.trial_id in self.finished:
                self._rows[trial.trial_id] = cells
                self._configs.pop(trial.trial_id, None)  # the row holds what is needed
            rows.append(cells)
        return rows

    def write(self, final: bool = False) -> None:
        t0 = time.monotonic()
        rows = self.rows()
        write_results(self.sweep_dir, results_frame(rows, self.tiny_k))
        now = time.monotonic()
        self._last_table, self._dirty_table = now, False
        self._table_wait = TABLE_COST_FACTOR * (now - t0)
        if final or self._dirty_pred and now - self._last_pred > self.predictions_every_s:
            i_id, i_status, i_dir = (
                self._columns.index(c) for c in ("trial_id", "status", "trial_dir")
            )
            dirs = {r[i_id]: r[i_dir] for r in rows if r[i_status] == "completed"}
            write_predictions(self.sweep_dir, dirs, self._pred_cache)
            self._last_pred = time.monotonic()
            self._dirty_pred = False

    def maybe_write(self) -> None:
        """Rewrite the table if it changed and the last rewrite is long enough ago."""
        if self._dirty_table and time.monotonic() - self._last_table >= self._table_wait:
            self.write()

    # --- progress ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {"done": 0, "running": 0, "errored": 0}
        for trial in self.trials:
            st = self.ray_status(trial)
            if st == "ERROR":
                out["errored"] += 1
            elif st == "TERMINATED":
                out["done"] += 1
            elif st in ("RUNNING", "PAUSED"):
                out["running"] += 1
        return out

    def best(self) -> tuple[float, Any] | None:
        best = None
        for trial in self.trials:
            last = trial.last_result or {}
            value = last.get(self.metric)
            if self.ray_status(trial) == "ERROR" or last.get("status") == "diverged":
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                if best is None or value > best[0]:
                    best = (float(value), trial)
        return best

    def progress(self) -> float:
        """Estimated cost done (terminal trials count fully, running ones by step)."""
        done = 0.0
        for trial in self.trials:
            st = self.ray_status(trial)
            if st in ("TERMINATED", "ERROR"):
                done += self.cost(trial)
            else:
                last = trial.last_result or {}
                step, total = last.get("step"), last.get("total_steps")
                if step and total:
                    done += self.cost(trial) * min(1.0, float(step) / float(total))
        return done

    def total_cost(self) -> float:
        known = [self.cost(t) for t in self.trials]
        mean = sum(known) / len(known) if known else 1.0
        return sum(known) + max(0, self.total - len(known)) * mean

    def line(self) -> str:
        c = self.counts()
        elapsed = time.monotonic() - self._t0
        parts = [
            f"{c['done']}/{self.total} done, {c['running']} running, {c['errored']} errored"
        ]
        best = self.best()
        if best is not None:
            cfg = {k: best[1].config.get(k) for k in self.axes if k in best[1].config}
            parts.append(f"best {self.metric} {best[0]:.4f} ({format_point(cfg) or best[1].trial_id})")
        progress, total = self.progress(), self.total_cost()
        if self._progress0 is None:
            self._progress0 = progress
        rate = (progress - self._progress0) / elapsed if elapsed > 0 else 0.0
        eta = (total - progress) / rate if rate > 0 else math.inf
        if c["done"] + c["errored"] >= self.total:
            eta = 0.0
        parts.append(f"elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}")
        return "sweep: " + " | ".join(parts)

    def print_progress(self, force: bool = False) -> None:
        """Redraw the line (terminal: at most every second), or print it (log: when a trial
        finished and the counts changed, else every log_every_s seconds)."""
        if self.quiet:
            return
        now = time.monotonic()
        if force and now - self._last_print < MIN_LINE_INTERVAL_S:
            force = False  # many trials finishing at once: one line a second is enough
        if self._tty:
            if force or now - self._last_print >= 1.0:
                sys.stdout.write("\r\x1b[K" + self.line())
                sys.stdout.flush()
                self._last_print = now
            return
        due = now - self._last_print >= self.log_every_s
        if not (force or due):
            return
        text = self.line()
        same = text.split(" | elapsed")[0] == self._last_line.split(" | elapsed")[0]
        if due or not same:
            print(text, flush=True)
            self._last_line, self._last_print = text, now

    def end_line(self) -> None:
        """Finish the progress line (newline on a terminal)."""
        if self.quiet:
            return
        if self._tty:
            sys.stdout.write("\r\x1b[K" + self.line() + "\n")
            sys.stdout.flush()
        else:
            text = self.line()
            if text != self._last_line:
                print(text, flush=True)

    # --- Ray Tune hooks -------------------------------------------------------------------------
    def setup(self, **info) -> None:
        self._t0 = time.monotonic()

    def on_step_begin(self, iteration, trials, **info) -> None:
        if not self._seen_first_step:  # trials a resumed sweep had already finished
            self._seen_first_step = True
            self.finished.update(
                (t.trial_id, str(t.status))
                for t in trials
                if str(t.status) in ("TERMINATED", "ERROR")
            )
        self.trials = trials

    def on_step_end(self, iteration, trials, **info) -> None:
        self.trials = trials
        if self._progress0 is None and trials:
            self._progress0 = self.progress()
        self.maybe_write()
        self.print_progress()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.trials = trials
        if time.monotonic() - self._last_table >= max(self.table_every_s, self._table_wait):
            self.write()

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
        self.trials = trials
        self.release(trial)
        self.finished[trial.trial_id] = "TERMINATED"
        self._dirty_pred = self._dirty_table = True
        self.maybe_write()
        self.print_progress(force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.trials = trials
        self.release(trial)
        self.finished[trial.trial_id] = "ERROR"
        self._dirty_table = True
        self.maybe_write()
        self.say(f"trial {trial.trial_id} failed: {self.error_of(trial)} "
                 f"(traceback: {trial.local_path}/error.txt)")
        self.print_progress(force=True)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.trials = trials
        self.say(f"trial {trial.trial_id} crashed (failure {trial.num_failures}); Ray restarts it "
                 "from its last checkpoint")

    def say(self, text: str) -> None:
        """A line of its own (above the progress line on a terminal)."""
        if self.quiet:
            return
        if self._tty:
            sys.stdout.write("\r\x1b[K")
        print(text, flush=True)

    def on_experiment_end(self, trials, **info) -> None:
        self.trials = trials
        self.write(final=True)


__all__ = ["SweepCallback", "format_duration", "format_point"]
