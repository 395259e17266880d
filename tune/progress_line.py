"""The sweep's progress line: the counts, an ETA, the elapsed time and the best trial so far.

`ProgressLine` prints one line: done / diverged (when any) / running / errored of the total, an
ETA and the elapsed time, the best metric so far with its configuration (chosen from the results
table's rows as the end summary chooses; marked when it is a running trial's last evaluation).
It reads the trials, their statuses and their estimated costs from the results table
(tune/results_table.py); the sweep's Ray callback (tune/sweep_callback.py) tells it when trials
start and report. The ETA is the plan's cost model
(`sweep_plan.trial_cost` of every trial) corrected by the speed measured on the trials that
finished or reported, the remaining trials scheduled on the sweep's `concurrency` slots; until
something is measured it is the model's alone, marked "~" (see `ProgressLine.eta`). The line
fits the terminal's width (dropping, in this order, the end of the best's configuration, the
configuration, the long forms, the best value; `fit_line`). On a terminal it is redrawn in
place; in a log (no terminal: CI, nohup) it is printed, without carriage returns, when a trial
finishes and every `log_every_s` seconds, at most LOG_WIDTH (or $COLUMNS) characters wide.

Thousands of short trials: the progress line is recomputed at most once a second (`line()`
walks every trial).
"""

from __future__ import annotations

import heapq
import math
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .results_table import ResultsTable
from .sweep_plan import TRIAL_OVERHEAD_S
from .trainable import decode_value

# A forced progress line (a trial finished) is recomputed at most this often.
MIN_LINE_INTERVAL_S = 1.0
# Width of the progress lines in a log (not a terminal) unless COLUMNS says otherwise.
LOG_WIDTH = 120


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
    ETA of trials not created yet): an explicit subset (a grid's, or random search's draws)
    longest first, as `runner.build_search` orders it; the whole grid in the grid's order. None
    where Optuna suggests the trials (their mean is the mean of those seen) or costs unknown."""
    if not plan.sizes:
        return None
    if plan.points is not None:
        return sorted((plan.cost(p) for p in plan.points), reverse=True)
    if plan.search == "grid" and plan.space.size <= limit:
        return [plan.cost(plan.space.point_at(i)) for i in range(plan.space.size)]
    return None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class Best(NamedTuple):
    """The progress line's best: `value` None when every scored trial was a short run (then
    `n_short` says how many); `note` is empty for a final score, else why it is not one."""

    value: float | None
    config: dict[str, Any]
    trial_id: str
    note: str
    n_short: int


def format_point(point: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(decode_value(v))}" for k, v in point.items())


class ProgressLine:
    # --- the ETA: the plan's cost model, corrected by the measured speed ------------------------
    # Every trial has an estimated cost c (sweep_plan.trial_cost: seconds beside another trial,
    # TRIAL_OVERHEAD_S of it at its start, the rest spread over its steps). The sweep measures
    # r, wall seconds per estimated second, on the trials' reports: between two reports of a
    # trial, this line's clock against the estimated cost of the steps in between (from the
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

    def __init__(
        self,
        table: ResultsTable,
        metric: str,
        axes: list[str],
        log_every_s: float = 30.0,
        quiet: bool = False,
        concurrency: int = 1,
        planned_costs: Sequence[float] | None = None,
    ):
        """`table`: the sweep's trials, their statuses and costs. `concurrency`: trials at a
        time (the ETA schedules the remaining trials on that many slots; more trials seen
        running at once count too). `planned_costs`: the estimated cost of every planned trial
        in the order Ray creates them (see `SweepCallback`)."""
        self.table = table
        self.metric = metric
        self.axes = list(axes)
        self.log_every_s = log_every_s
        self.quiet = quiet
        self._t0 = self.clock()
        self._last_line = ""
        self._last_print = 0.0
        self._tty = bool(getattr(sys.stdout, "isatty", lambda: False)())
        self.concurrency = max(1, int(concurrency or 1))
        self.planned_costs = None if planned_costs is None else tuple(planned_costs)
        self._starts: dict[str, float] = {}  # running trial id -> clock at on_trial_start
        self._marks: dict[str, tuple[float, float]] = {}  # id -> (clock, fraction) of its report
        self._speed: list = [0.0, 0.0, None]  # weighed wall s, estimated s, clock of the last
        self._ends: list = [0.0, 0.0, None]  # a trial's end: weighed seconds, count, clock
        self._gaps: list = [0.0, 0.0, None]  # a freed slot's wait: weighed seconds, count, clock
        self._freed: list[float] = []  # clocks of finishes whose slot no trial took yet
        self._n_observed = 0  # entries of table.finished already measured
        self._peak_running = 0
        self._last_counts: dict | None = None  # of the last line printed to a log

    def start(self) -> None:
        """The sweep starts (the elapsed time counts from now)."""
        self._t0 = self.clock()

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
        return min(TRIAL_OVERHEAD_S, cost / 2) if self.table.sizes else 0.0

    def _cost_done(self, cost: float, fraction: float) -> float:
        """Estimated cost of the part a trial has done: the model's per-trial overhead (it
        comes first: actor, imports, data) and then its steps."""
        if fraction <= 0:
            return 0.0
        head = self._head(cost)
        return head + fraction * (cost - head)

    def _unseen_costs(self, known: list[float]) -> list[float]:
        """Estimated costs of the trials Ray has not created yet, in the order it will."""
        n = max(0, self.table.total - len(known))
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

    def trial_started(self, trial) -> None:
        """Ray started the trial (on_trial_start)."""
        now = self.clock()
        self._observe()  # (a finish Ray reported in the same step: its slot is this one)
        if self._freed:  # a slot a finished trial freed: how long it stayed free
            self._add(self._gaps, now - self._freed.pop(0), 1.0)
        self._starts[trial.trial_id] = now
        self._marks.pop(trial.trial_id, None)

    def trial_reported(self, trial, result) -> None:
        """The trial reported `result` (on_trial_result): measure the speed on its steps."""
        fraction = self._fraction(result)
        if fraction <= 0:
            return
        now, trial_id = self.clock(), trial.trial_id
        cost = self.table.cost(trial)
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
        finished = self.table.finished
        if len(finished) > self._n_observed:
            now = self.clock()
            for trial_id in list(finished)[self._n_observed:]:
                start = self._starts.pop(trial_id, None)
                mark = self._marks.pop(trial_id, None)
                if start is None:
                    continue  # finished in an earlier session
                self._freed.append(now)
                cost = self.table.cached_cost(trial_id)
                if finished[trial_id] != "TERMINATED" or cost is None:
                    continue  # errored
                if mark is not None:
                    if mark[1] >= 1.0:  # its end after its last report (not: stopped early)
                        self._add(self._ends, now - mark[0], 1.0)
                else:  # it never reported a step
                    self._measure(now - start, cost)
            # a slot still free once every slot is (the sweep's end): no gap to measure
            del self._freed[: max(0, len(self._freed) - max(self.concurrency, self._peak_running))]
            self._n_observed = len(finished)

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
            r = 1.0 if self.table.sizes else math.inf  # no cost model: nothing to go on yet
        busy, pending, known = [], [], []
        running = 0
        end = self._mean(self._ends)
        fixed = end + self._mean(self._gaps)  # per trial, beside its cost
        for trial in self.table.trials:
            cost = self.table.cost(trial)
            known.append(cost)
            st = self.table.ray_status(trial)
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

    # --- what the line shows ----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Trials of this phase by state: `done` are those Ray finished that did not diverge
        (completed or stopped early), `diverged` those whose loss became NaN (Ray ends them
        as TERMINATED too; the summary counts them apart, so the line does as well)."""
        out = {"done": 0, "diverged": 0, "running": 0, "errored": 0}
        for trial in self.table.trials:
            st = self.table.ray_status(trial)
            if st == "ERROR":
                out["errored"] += 1
            elif st == "TERMINATED":
                diverged = (trial.last_result or {}).get("status") == "diverged"
                out["diverged" if diverged else "done"] += 1
            elif st in ("RUNNING", "PAUSED"):
                out["running"] += 1
        return out

    def best(self) -> Best | None:
        """The best trial by the metric among the rows the results table writes (so the rows
        an earlier phase left, the search's during its seed repeats, count too), chosen as the
        sweep's summary chooses (tune/summary.py): errored, diverged and short runs never; a
        stopped-early trial only while no trial completed. A running trial's last evaluation
        counts, marked as not final. None when no row has a score; a `Best` without a value
        when every scored candidate was a short run."""
        cols = self.table.columns  # the order of the cells of table.rows()
        if self.metric not in cols:
            return None
        at = {c: cols.index(c) for c in
              ("trial_id", "status", "short_run", "epochs_done", "epochs", "steps_done",
               "total_steps", self.metric)}
        pools: dict[str, list] = {"completed": [], "stopped_early": [], "running": []}
        n_short = 0
        for row in self.table.rows():
            value = row[at[self.metric]]
            status = row[at["status"]]
            if status not in pools or not _finite(value):
                continue
            if bool(row[at["short_run"]]):
                n_short += 1
                continue
            pools[status].append(row)
        final = pools["completed"] or pools["stopped_early"]
        candidates = final + pools["running"]
        if not candidates:
            return Best(None, {}, "", "", n_short) if n_short else None
        # the first of equal scores, in table order, as the summary names it
        top = candidates[max(range(len(candidates)),
                             key=lambda i: (float(candidates[i][at[self.metric]]), -i))]
        status = top[at["status"]]
        note = ""
        if status == "running":
            done, epochs = top[at["epochs_done"]], top[at["epochs"]]
            if _finite(done) and _finite(epochs):
                note = f"running, epoch {float(done):g}/{float(epochs):g}: not final"
            else:
                note = f"running, step {top[at['steps_done']]}/{top[at['total_steps']]}: not final"
        elif status == "stopped_early":
            note = "stopped early: not final"
        config = {k: top[cols.index(k)] for k in self.axes if k in cols}
        return Best(float(top[at[self.metric]]), config, str(top[at["trial_id"]]), note, n_short)

    def progress(self) -> float:
        """Estimated cost done (terminal trials count fully, running ones by step)."""
        done = 0.0
        for trial in self.table.trials:
            st = self.table.ray_status(trial)
            if st in ("TERMINATED", "ERROR"):
                done += self.table.cost(trial)
            else:
                done += self._cost_done(self.table.cost(trial), self._fraction(trial.last_result))
        return done

    def total_cost(self) -> float:
        """Estimated cost of the whole sweep: the trials seen, and the planned costs of those
        Ray has not created yet (or, without a plan, the mean cost of those seen)."""
        known = [self.table.cost(t) for t in self.table.trials]
        return sum(known) + sum(self._unseen_costs(known))

    # --- the progress line ----------------------------------------------------------------------
    def line_width(self) -> int:
        """Characters a progress line may take: the terminal's width less one (a line that
        fills the last column wraps on some terminals); in a log, COLUMNS or LOG_WIDTH."""
        if self._tty:
            return max(20, shutil.get_terminal_size().columns - 1)
        return max(20, shutil.get_terminal_size((LOG_WIDTH, 24)).columns)

    def line(self, width: int | None = None) -> str:
        c = self.counts()
        total = self.table.total
        elapsed = self.clock() - self._t0
        div = (f", {c['diverged']} diverged", f" {c['diverged']} div") if c["diverged"] else ("", "")
        counts = (
            f"{c['done']}/{total} done{div[0]}, {c['running']} running, {c['errored']} errored",
            f"{c['done']}/{total} done{div[1]} {c['running']} run {c['errored']} err",
        )
        if c["done"] + c["diverged"] + c["errored"] >= total:
            eta, measured = 0.0, True
        else:
            eta, measured = self.eta()
        left = ("" if measured or not math.isfinite(eta) else "~") + format_duration(eta)
        eta_parts = (f"ETA {left}, elapsed {format_duration(elapsed)}", f"ETA {left}")
        best, config = self.best(), ""
        value = None
        if best is not None and best.value is None:
            value = (f"no best yet: {best.n_short} short run(s) left out", "no best yet")
        elif best is not None:
            note = f" ({best.note})" if best.note else ""
            short = " (not final)" if best.note else ""
            value = (f"best {self.metric} {best.value:.4f}{note}", f"best {best.value:.4f}{short}")
            config = format_point(best.config) or best.trial_id
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

    def say(self, text: str) -> None:
        """A line of its own (above the progress line on a terminal)."""
        if self.quiet:
            return
        if self._tty:
            sys.stdout.write("\r\x1b[K")
        print(text, flush=True)


__all__ = [
    "Best",
    "LOG_WIDTH",
    "MIN_LINE_INTERVAL_S",
    "ProgressLine",
    "fit_line",
    "format_duration",
    "format_point",
    "planned_costs",
    "schedule_span",
]
