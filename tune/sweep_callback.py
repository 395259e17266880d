"""The driver's Ray Tune callback: the results table as trials finish, and one progress line.

`SweepCallback` sees every trial event of the sweep. It rewrites `results.parquet`/`.csv`
atomically when a trial finishes or errors (and at most every `table_every_s` seconds while
results arrive), gathers the completed trials' per-example correctness into `predictions.npz`,
and prints one progress line: done / running / errored of the total, an ETA and the elapsed
time, the best metric so far with its configuration. The ETA is the plan's cost model
(`sweep_plan.trial_cost` of every trial) corrected by the speed measured on the trials that
finished or reported, the remaining trials scheduled on the sweep's `concurrency` slots; until
something is measured it is the model's alone, marked "~" (see `SweepCallback.eta`). The line
fits the terminal's width (dropping, in this order, the end of the best's configuration, the
configuration, the long forms, the best value; `fit_line`). On a terminal it is redrawn in
place; in a log (no terminal: CI, nohup) it is printed, without carriage returns, when a trial
finishes and every `log_every_s` seconds, at most LOG_WIDTH (or $COLUMNS) characters wide.

Thousands of short trials: a table rewrite costs time in proportion to the rows, so after a
rewrite that took d seconds the next one waits at least TABLE_COST_FACTOR * d (the table then
costs at most ~5% of the driver's time; a small table is still rewritten at every finished
trial), and the progress line is recomputed at most once a second (`line()` walks every trial).
A finished trial's row is kept as a tuple of cells and its resolved config is dropped, so the
driver holds ~1 KB per finished trial (bench/grid_scale.py measures it).
"""

from __future__ import annotations

import heapq
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from s4l_models.config import TrainConfig
from s4l_models.errors import DiskFullError

from .memory_plan import gib
from .ray_fixes import MEMORY_KILL_TEXT
from .results import (
    columns,
    make_row,
    results_frame,
    trial_status,
    write_predictions,
    write_results,
)
from .sweep_plan import TRIAL_OVERHEAD_S, Sizes, trial_cost
from .trainable import decode_value, resolve_config

# A table rewrite that took d seconds is followed by at least TABLE_COST_FACTOR * d seconds
# without one (so rewriting costs at most 1 / TABLE_COST_FACTOR of the driver's time).
TABLE_COST_FACTOR = 20.0
# A forced progress line (a trial finished) is recomputed at most this often.
MIN_LINE_INTERVAL_S = 1.0
# Width of the progress lines in a log (not a terminal) unless COLUMNS says otherwise.
LOG_WIDTH = 120


def memory_kill_message(text: str, need: float | None = None) -> str | None:
    """One line for a trial whose worker Ray's memory monitor killed (its last error), with
    what the trial needs and the fix; None for any other error."""
    last = text.rsplit("Failure #", 1)[-1]
    if MEMORY_KILL_TEXT not in last:
        return None

    node = re.search(r"was ([\d.]+ ?[KMGT]?B) used / ([\d.]+ ?[KMGT]?B) limit", last)
    where = f": {node.group(1)} used of {node.group(2)}" if node else ""
    needs = f"; this trial needs about {gib(need)}" if need else ""
    return (
        f"killed by Ray's memory monitor (node low on memory{where}){needs}: lower "
        "--concurrency or the trial's batch_size/width, or give it a bigger node"
    )


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


def schedule_span(busy: list[float], queue: Iterable[float], slots: int) -> float:
    """Seconds until `slots` workers, busy for `busy` seconds (one running job each), have also
    run every job of `queue` in order, each starting on the first free worker (Ray's FIFO)."""
    slots = max(1, int(slots), len(busy))
    free = sorted([max(0.0, float(b)) for b in busy] + [0.0] * (slots - len(busy)))
    queue = list(queue)
    if len(queue) > 20_000:  # a long queue evens the workers out: its mean is close enough
        return (sum(free) + sum(queue)) / slots + max(queue)
    heapq.heapify(free)
    for job in queue:
        heapq.heapreplace(free, free[0] + max(0.0, float(job)))
    return max(free)


def ellipsis(stream=None) -> str:
    """'…' where the stream's encoding can write it, else '...'."""
    try:
        "…".encode(getattr(stream or sys.stdout, "encoding", None) or "ascii")
        return "…"
    except (UnicodeEncodeError, LookupError):
        return "..."


def clip(text: str, width: int, mark: str = "…") -> str:
    """`text` cut to `width` characters, the cut marked with `mark`."""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(mark))] + mark if width > len(mark) else text[:width]


def fit_line(width: int, counts: tuple[str, str], eta: tuple[str, str],
             best: tuple[str, str] | None = None, config: str = "", mark: str = "…") -> str:
    """The progress line in at most `width` characters. Parts by priority: the counts, the
    ETA, the best value, its configuration; each given long and short. What does not fit goes
    in reverse order: the configuration is cut (marked) then dropped, then the long forms of
    the best value and the ETA (with the elapsed time), then the best value; the counts last."""
    head = "sweep: "
    long_best = f" | {best[0]}" if best else ""
    short_best = f" | {best[1]}" if best else ""
    base = f"{head}{counts[0]} | {eta[0]}{long_best}"
    if config:
        room = width - len(base) - len(" ()")
        if room >= len(config):
            return f"{base} ({config})"
        if room >= 12:  # a few settings still say something; fewer are noise
            return f"{base} ({clip(config, room, mark)})"
    for text in (
        base,
        f"{head}{counts[0]} | {eta[1]}{short_best}",
        f"{head}{counts[0]} | {eta[1]}",
        f"{head}{counts[1]} | {eta[1]}",
        f"{counts[1]} | {eta[1]}",
    ):
        if len(text) <= width:
            return text
    return clip(f"{counts[1]} | {eta[1]}", width, mark)


def planned_costs(plan, limit: int = 100_000) -> list[float] | None:
    """The estimated cost of every trial a plan runs, in the order Ray creates them (for the
    ETA of trials not created yet): an explicit subset longest first, as
    `run_sweep.build_search` orders it; the whole grid in the grid's order. None where the
    trials are sampled (random, optuna: their mean is the mean of those seen) or costs unknown."""
    if not plan.sizes:
        return None
    if plan.points is not None:
        return sorted((plan.cost(p) for p in plan.points), reverse=True)
    if plan.search == "grid" and plan.space.size <= limit:
        return [plan.cost(plan.space.point_at(i)) for i in range(plan.space.size)]
    return None


def format_point(point: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(decode_value(v))}" for k, v in point.items())


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
              planned_costs=None) -> None:
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
        self._t0 = self.clock()
        self._init_eta(concurrency, planned_costs)
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
        self.disk_full: DiskFullError | None = None
        self._carried: dict[str, tuple] = {}  # trial id -> row of a resumed sweep's old table
        self._kept: list[tuple] = []  # rows of an earlier phase (the search, before seed repeats)

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
                if not text and trial.error_file:
                    # Ray writes error.txt into the driver's staging directory and copies it
                    # into the sweep at its next experiment snapshot: read it where it is.
                    text = Path(trial.error_file).read_text(errors="replace")
            except Exception:
                pass
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            # The last line of a traceback names the exception; skip Ray's framing lines.
            useful = [ln for ln in lines if not ln.startswith(("Failure #", "Traceback"))]
            msg = useful[-1] if useful else "the trial failed (see its error.txt)"
            # Ray's memory monitor writes a page about the node; one line says what to do, with
            # the memory the trial asked Ray for (its estimate, tune/memory_plan.py).
            need = None
            try:
                need = trial.placement_group_factory.required_resources.get("memory")
            except Exception:
                pass
            msg = memory_kill_message(text, need) or msg
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

    def carry_rows(self, previous) -> None:
        """Resuming: keep the previous table's rows (a DataFrame) until Ray recreates their
        trials. Ray's saved state can be seconds older than the table a killed driver left, so
        trials that finished in between come back only when the search generates them again;
        without this the table would shrink meanwhile. The table of a finished sweep holds Ray's
        trials only."""
        if set(self._columns) <= set(previous.columns):
            self._carried = {
                str(r["trial_id"]): tuple(r[c] for c in self._columns)
                for r in previous.to_dict("records")
            }

    def keep_rows(self, previous) -> None:
        """Rows (a DataFrame) of an earlier, finished phase of the sweep (the search, when this
        callback watches its seed repeats): they head every table this callback writes."""
        self._kept = [tuple(r.get(c) for c in self._columns) for r in previous.to_dict("records")]

    def rows(self, final: bool = False) -> list[tuple]:
        """The table's rows (cells in `columns(tiny_k)` order): an earlier phase's first, then
        this phase's in trial creation order (rows carried over from a resumed sweep's previous
        table last, unless the sweep finished)."""
        rows = self._kept + self._rows_of_trials()
        if self._carried and not (final and self.all_finished()):
            i_id = self._columns.index("trial_id")
            present = {r[i_id] for r in rows}
            rows += [r for tid, r in self._carried.items() if tid not in present]
        return rows

    def _rows_of_trials(self) -> list[tuple]:
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
        rows = self.rows(final=final)
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
            self.write_in_sweep()

    def write_in_sweep(self, final: bool = False) -> None:
        """`write`, from inside Ray's loop. Ray would take a callback's exception for the trial's
        and restart it, so a full disk is kept (`self.disk_full`, raised by the driver after
        the loop) and the sweep is stopped the way Ctrl-C stops it: Ray saves its state, the
        unfinished trials resume with --resume, the table on disk is the last one written."""
        if self.disk_full is not None:
            return  # the sweep is stopping; nothing more is written
        try:
            self.write(final=final)
        except DiskFullError as err:
            self.disk_full = err
            self.say("the disk is full: stopping the sweep (the error follows at the end)")
            stop_ray_tune_loop()

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
                done += self._cost_done(self.cost(trial), self._fraction(trial.last_result))
        return done

    def total_cost(self) -> float:
        """Estimated cost of the whole sweep: the trials seen, and the planned costs of those
        Ray has not created yet (or, without a plan, the mean cost of those seen)."""
        known = [self.cost(t) for t in self.trials]
        return sum(known) + sum(self._unseen_costs(known))

    # --- the ETA: the plan's cost model, corrected by the measured speed ------------------------
    # Every trial has an estimated cost c (sweep_plan.trial_cost: seconds beside another trial,
    # TRIAL_OVERHEAD_S of it at its start, the rest spread over its steps). The sweep measures
    # r, wall seconds per estimated second, on the trials' reports: between two reports of a
    # trial, this callback's clock against the estimated cost of the steps in between (from the
    # step each report gives); up to a trial's first report, the trainer's own train_seconds
    # against the cost of its steps so far (a new worker's start-up, once per worker, would
    # otherwise count against a tenth of a trial). Two fixed costs per trial are measured
    # apart, as means: its end (from its last report to Ray's completion event) and the gap
    # before the next trial starts on the freed slot. Older measurements weigh less, half as
    # much every `_half_life()` seconds (a twentieth of the elapsed time, 20 s to 5 min), so
    # the speed follows a machine whose load changes (within a minute or so of the change).
    # Before any measurement r is 1 (the model as it is; the ETA is shown with a "~"). The
    # remaining trials, r * c seconds plus the fixed costs each (a running one: what its last
    # report left of r * c, less the time since, plus its end), are scheduled on the sweep's
    # slots in Ray's order (`schedule_span`): the tail of the sweep, one long trial left on one
    # slot, counts as such, not as the remaining cost / slots.
    clock = staticmethod(time.monotonic)  # injectable (tests)

    def _init_eta(self, concurrency: int, planned_costs) -> None:
        self.concurrency = max(1, int(concurrency or 1))
        self.planned_costs = None if planned_costs is None else tuple(planned_costs)
        self._starts: dict[str, float] = {}  # running trial id -> clock at on_trial_start
        self._marks: dict[str, tuple[float, float]] = {}  # id -> (clock, fraction) of its report
        self._speed: list = [0.0, 0.0, None]  # weighed wall s, estimated s, clock of the last
        self._ends: list = [0.0, 0.0, None]  # a trial's end: weighed seconds, count, clock
        self._gaps: list = [0.0, 0.0, None]  # a freed slot's wait: weighed seconds, count, clock
        self._freed: list[float] = []  # clocks of finishes whose slot no trial took yet
        self._n_observed = 0  # entries of self.finished already measured
        self._peak_running = 0
        self._last_counts: dict | None = None  # of the last line printed to a log

    @staticmethod
    def _fraction(result) -> float:
        result = result or {}
        step, total = result.get("step"), result.get("total_steps")
        try:
            return min(1.0, max(0.0, float(step) / float(total))) if step and total else 0.0
        except (TypeError, ValueError):
            return 0.0

    def _head(self, cost: float) -> float:
        """The part of a trial's estimated cost that comes before its first step."""
        return min(TRIAL_OVERHEAD_S, cost / 2) if self.sizes else 0.0

    def _cost_done(self, cost: float, fraction: float) -> float:
        """Estimated cost of the part a trial has done: the model's per-trial overhead (it
        comes first: actor, imports, data) and then its steps."""
        if fraction <= 0:
            return 0.0
        head = self._head(cost)
        return head + fraction * (cost - head)

    def _unseen_costs(self, known: list[float]) -> list[float]:
        """Estimated costs of the trials Ray has not created yet, in the order it will."""
        n = max(0, self.total - len(known))
        if not n:
            return []
        planned = self.planned_costs
        if planned and len(planned) >= n:
            return list(planned[len(planned) - n:])
        mean = sum(known) / len(known) if known else (
            sum(planned) / len(planned) if planned else 1.0)
        return [mean] * n

    def _half_life(self, now: float) -> float:
        return min(300.0, max(20.0, (now - self._t0) / 20.0))

    def _add(self, sums: list, value: float, weight: float) -> None:
        """Add (value, weight) to decayed sums [values, weights, clock of the last]."""
        now = self.clock()
        if sums[2] is not None:
            keep = 0.5 ** (max(0.0, now - sums[2]) / self._half_life(now))
            sums[0], sums[1] = sums[0] * keep, sums[1] * keep
        sums[0] += max(0.0, value)
        sums[1] += max(0.0, weight)
        sums[2] = now

    def _measure(self, seconds: float, cost: float) -> None:
        """One measurement: `seconds` of wall time did `cost` estimated seconds of work."""
        self._add(self._speed, seconds, cost)

    @staticmethod
    def _mean(sums: list) -> float:
        return sums[0] / sums[1] if sums[1] > 0 else 0.0

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        now = self.clock()
        self._observe()  # (a finish Ray reported in the same step: its slot is this one)
        if self._freed:  # a slot a finished trial freed: how long it stayed free
            self._add(self._gaps, now - self._freed.pop(0), 1.0)
        self._starts[trial.trial_id] = now
        self._marks.pop(trial.trial_id, None)

    def _note_result(self, trial, result) -> None:
        fraction = self._fraction(result)
        if fraction <= 0:
            return
        now, trial_id = self.clock(), trial.trial_id
        cost = self.cost(trial)
        steps = cost - self._head(cost)
        mark = self._marks.get(trial_id)
        if mark is not None:
            if fraction > mark[1]:  # (not: a new stage, or a restart from a checkpoint)
                self._measure(now - mark[0], (fraction - mark[1]) * steps)
        else:
            seconds = (result or {}).get("train_seconds")
            start = self._starts.get(trial_id)
            if isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0:
                self._measure(float(seconds), fraction * steps)
            elif start is not None:
                self._measure(now - start, self._cost_done(cost, fraction))
        self._marks[trial_id] = (now, fraction)

    def _observe(self) -> None:
        """Measure the trials that finished since the last call (cheap: only new ones)."""
        if len(self.finished) > self._n_observed:
            now = self.clock()
            for trial_id in list(self.finished)[self._n_observed:]:
                start = self._starts.pop(trial_id, None)
                mark = self._marks.pop(trial_id, None)
                if start is None:
                    continue  # finished in an earlier session
                self._freed.append(now)
                if self.finished[trial_id] != "TERMINATED" or trial_id not in self._costs:
                    continue  # errored
                if mark is not None:
                    if mark[1] >= 1.0:  # its end after its last report (not: stopped early)
                        self._add(self._ends, now - mark[0], 1.0)
                else:  # it never reported a step
                    self._measure(now - start, self._costs[trial_id])
            # a slot still free once every slot is (the sweep's end): no gap to measure
            del self._freed[: max(0, len(self._freed) - max(self.concurrency, self._peak_running))]
            self._n_observed = len(self.finished)

    def speed(self) -> float | None:
        """Measured wall seconds per estimated second (None before any measurement)."""
        self._observe()
        wall, est, _ = self._speed
        return wall / est if est > 0 and wall > 0 else None

    def eta(self) -> tuple[float, bool]:
        """(seconds left, measured): False while the estimate is the cost model's alone."""
        self._observe()
        now = self.clock()
        r = self.speed()
        measured = r is not None
        if r is None:
            r = 1.0 if self.sizes else math.inf  # no cost model: nothing to go on yet
        busy, pending, known = [], [], []
        running = 0
        end = self._mean(self._ends)
        fixed = end + self._mean(self._gaps)  # per trial, beside its cost
        for trial in self.trials:
            cost = self.cost(trial)
            known.append(cost)
            st = self.ray_status(trial)
            if st in ("TERMINATED", "ERROR"):
                continue
            if st not in ("RUNNING", "PAUSED"):
                pending.append(r * cost + fixed)
                continue
            running += st == "RUNNING"
            mark = self._marks.get(trial.trial_id)
            start = self._starts.get(trial.trial_id)
            if mark is not None:  # what its last report left, less the time since
                left = r * (cost - self._cost_done(cost, mark[1])) - (now - mark[0])
            elif start is not None:
                left = r * cost - (now - start)
            else:
                left = r * (cost - self._cost_done(cost, self._fraction(trial.last_result)))
            # running past its estimate: a little longer (never 0 while it runs)
            busy.append(max(left, 0.02 * r * cost, 1.0) + end)
        self._peak_running = max(self._peak_running, running)
        slots = max(self.concurrency, self._peak_running)
        pending += [r * c + fixed for c in self._unseen_costs(known)]
        if not busy and not pending:
            return 0.0, True
        return schedule_span(busy, pending, slots), measured

    # --- the progress line ----------------------------------------------------------------------
    def line_width(self) -> int:
        """Characters a progress line may take: the terminal's width less one (a line that
        fills the last column wraps on some terminals); in a log, COLUMNS or LOG_WIDTH."""
        if self._tty:
            return max(20, shutil.get_terminal_size().columns - 1)
        return max(20, shutil.get_terminal_size((LOG_WIDTH, 24)).columns)

    def line(self, width: int | None = None) -> str:
        c = self.counts()
        elapsed = self.clock() - self._t0
        counts = (
            f"{c['done']}/{self.total} done, {c['running']} running, {c['errored']} errored",
            f"{c['done']}/{self.total} done {c['running']} run {c['errored']} err",
        )
        if c["done"] + c["errored"] >= self.total:
            eta, measured = 0.0, True
        else:
            eta, measured = self.eta()
        left = ("" if measured or not math.isfinite(eta) else "~") + format_duration(eta)
        eta_parts = (f"ETA {left}, elapsed {format_duration(elapsed)}", f"ETA {left}")
        best, config = self.best(), ""
        value = None
        if best is not None:
            value = (f"best {self.metric} {best[0]:.4f}", f"best {best[0]:.4f}")
            cfg = {k: best[1].config.get(k) for k in self.axes if k in best[1].config}
            config = format_point(cfg) or str(best[1].trial_id)
        return fit_line(width or self.line_width(), counts, eta_parts, value, config,
                        ellipsis())

    def print_progress(self, force: bool = False) -> None:
        """Redraw the line (terminal: at most every second), or print it (log: when a trial
        finished and the counts changed, else every log_every_s seconds)."""
        self._observe()  # (also when quiet: it drops the finished trials' marks)
        if self.quiet:
            return
        now = self.clock()
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
        counts = self.counts()
        if due or counts != self._last_counts:
            text = self.line()
            print(text, flush=True)
            self._last_line, self._last_print, self._last_counts = text, now, counts

    def end_line(self) -> None:
        """Finish the progress line (newline on a terminal)."""
        if self.quiet:
            return
        self._observe()
        if self._tty:
            sys.stdout.write("\r\x1b[K" + self.line() + "\n")
            sys.stdout.flush()
        else:
            text = self.line()
            if text != self._last_line:
                print(text, flush=True)

    # --- Ray Tune hooks -------------------------------------------------------------------------
    def setup(self, **info) -> None:
        self._t0 = self.clock()

    def _adopt_finished(self, trials) -> None:
        """On the first event of a (resumed) session: the trials Ray already holds as
        TERMINATED/ERROR finished in an earlier session (Ray restores unfinished ones as
        PENDING), so they are finished, not interrupted."""
        if not self._seen_first_step:
            self._seen_first_step = True
            self.finished.update(
                (t.trial_id, str(t.status))
                for t in trials
                if str(t.status) in ("TERMINATED", "ERROR")
            )

    def on_step_begin(self, iteration, trials, **info) -> None:
        self._adopt_finished(trials)
        self.trials = trials

    def on_step_end(self, iteration, trials, **info) -> None:
        self.trials = trials
        self.maybe_write()
        self.print_progress()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.trials = trials
        self._note_result(trial, result)
        if time.monotonic() - self._last_table >= max(self.table_every_s, self._table_wait):
            self.write_in_sweep()

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
        self._adopt_finished(trials)  # a resumed sweep with nothing left to run has no steps
        self.trials = trials
        self.write_in_sweep(final=True)


__all__ = ["SweepCallback", "fit_line", "format_duration", "format_point", "schedule_span"]
