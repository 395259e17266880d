"""The sweep's results table as trials finish: `results.parquet`/`.csv` and `predictions.npz`.

`ResultsTable` owns the sweep's per-trial state on the driver: the trials Ray holds, those it
finished, each trial's resolved config, estimated cost and error text. It rewrites
`results.parquet`/`.csv` atomically when a trial finishes or errors (and at most every
`table_every_s` seconds while results arrive) and gathers the completed trials' per-example
correctness into `predictions.npz`. The sweep's Ray callback (tune/sweep_callback.py) feeds it
Ray's events; the progress line (tune/progress_line.py) reads the trials, statuses and costs
from it.

Thousands of short trials: a table rewrite costs time in proportion to the rows, so after a
rewrite that took d seconds the next one waits at least TABLE_COST_FACTOR * d (the table then
costs at most ~5% of the driver's time; a small table is still rewritten at every finished
trial). A finished trial's row is kept as a tuple of cells and its resolved config is dropped,
so the driver holds ~1 KB per finished trial (bench/grid_scale.py measures it).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s4l_models.config import TrainConfig
from s4l_models.errors import DiskFullError

from .memory_plan import gib
from .ray_fixes import MEMORY_KILL_TEXT
from .results import (
    FINISHED_STATUSES,
    RAY_SUBDIR,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SWEEP_PREDICTIONS,
    columns,
    make_row,
    results_frame,
    trial_status,
    write_predictions,
    write_results,
)
from .sweep_plan import Sizes, trial_cost
from .trainable import resolve_config

# A table rewrite that took d seconds is followed by at least TABLE_COST_FACTOR * d seconds
# without one (so rewriting costs at most 1 / TABLE_COST_FACTOR of the driver's time).
TABLE_COST_FACTOR = 20.0


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
        f"killed by Ray's memory monitor (node low on memory{where}){needs}: a bigger node, "
        "or a new sweep with a lower --concurrency or batch_size/width, gives it room "
        "(--resume --retry-errored reruns it as it was)"
    )


class ResultsTable:
    def __init__(
        self,
        sweep_dir: str,
        setup: dict[str, Any],
        total: int,
        sizes: Sizes | None,
        tiny_k: tuple[int, ...] = (1, 5),
        table_every_s: float = 10.0,
        predictions_every_s: float = 30.0,
        on_disk_full: Callable[[], None] | None = None,
        after_write: Callable[[list[str]], None] | None = None,
    ):
        """`total`: the trials the sweep runs. `sizes`: the cost model's (`trial_cost`; None:
        every trial costs 1). `on_disk_full`: called once when a rewrite inside Ray's loop
        meets a full disk (`write_in_sweep`)."""
        self.sweep_dir = Path(sweep_dir)
        self.setup = setup
        self.total = int(total)
        self.sizes = sizes
        self.tiny_k = tuple(tiny_k)
        self.table_every_s = table_every_s
        self.predictions_every_s = predictions_every_s
        self.on_disk_full = on_disk_full
        # called with the files a write replaced (the upload of a sweep on an object store)
        self.after_write = after_write
        self.trials: list = []
        # Trials Ray finished (completed, stopped by a scheduler, errored). A sweep interrupted
        # by Ctrl-C has Ray mark its running trials TERMINATED without finishing them; they
        # resume with --resume, so the table shows them as running.
        self.finished: dict[str, str] = {}  # trial id -> TERMINATED | ERROR
        self._seen_first_step = False
        self._configs: dict[str, tuple] = {}  # unfinished trial id -> (config, resolved)
        self._costs: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._columns = columns(self.tiny_k)
        self._rows: dict[str, tuple] = {}  # finished trial id -> its row's cells, in column order
        self._table_wait = 0.0  # seconds the next rewrite waits after the last one
        self._dirty_table = False
        self._pred_cache: dict = {}
        self._last_table = 0.0
        self._last_pred = 0.0
        self._dirty_pred = False
        self.disk_full: DiskFullError | None = None
        self._carried: dict[str, tuple] = {}  # trial id -> row of a resumed sweep's old table
        self._versions: dict[str, str] = {}  # trial id -> code_version of a finished carried row
        self._kept: list[tuple] = []  # rows of an earlier phase (the search, before seed repeats)
        self.written_finished = 0  # completed trials in the table last written (live report)

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's column order (`results.columns(tiny_k)`): the cells of every row that
        `rows()` returns are in this order."""
        return tuple(self._columns)

    # --- per-trial facts -------------------------------------------------------------------
    def resolved(self, trial) -> dict[str, Any]:
        """The trial's full TrainConfig dict (recomputed when PBT changes its config)."""
        cached = self._configs.get(trial.trial_id)
        if cached is None or cached[0] != trial.config:
            values = resolve_config(dict(trial.config), self.setup)
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
        """The trial's estimated cost (`sweep_plan.trial_cost`; 1 without a cost model)."""
        if trial.trial_id not in self._costs:
            self.resolved(trial)
        return self._costs[trial.trial_id]

    def cached_cost(self, trial_id: str) -> float | None:
        """The trial's estimated cost if it was computed already, else None (computes none)."""
        return self._costs.get(trial_id)

    def resources_of(self, trial) -> dict[str, float]:
        """The CPUs and GPUs Ray reserved for the trial (its cost is these x its wall time)."""
        try:
            req = trial.placement_group_factory.required_resources
            return {"cpu": float(req.get("CPU", 0.0)), "gpu": float(req.get("GPU", 0.0))}
        except Exception:  # no placement group (a test's trial object): the sweep's flags
            return dict(self.setup.get("resources") or {})

    def trial_dir(self, trial) -> str:
        """The trial's trainer directory: `<sweep>/trials/<id>`, or for a sweep on an object
        store the URI its files are uploaded to, `<uri>/ray/<id>/trainer` (tune/storage.py)."""
        if self.setup.get("remote_uri"):
            return f"{self.setup['remote_uri']}/{RAY_SUBDIR}/{trial.trial_id}/trainer"
        return str(Path(self.setup["trials_dir"]) / trial.trial_id)

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

    def adopt_finished(self, trials) -> None:
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

    def finish(self, trial, status: str) -> None:
        """Ray finished the trial (`status` TERMINATED or ERROR): the table is due a rewrite,
        and the predictions too when it completed."""
        self.finished[trial.trial_id] = status
        self._dirty_table = True
        if status == "TERMINATED":
            self._dirty_pred = True

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
            records = previous.to_dict("records")
            self._carried = {
                str(r["trial_id"]): tuple(r[c] for c in self._columns) for r in records
            }
            # a trial that had finished was trained by the code of its session, not this one's
            self._versions = {
                str(r["trial_id"]): r["code_version"] for r in records
                if r["status"] in FINISHED_STATUSES and r.get("code_version")
            }

    def keep_rows(self, previous) -> None:
        """Rows (a DataFrame) of an earlier, finished phase of the sweep (the search, when this
        table follows its seed repeats): they head every table this one writes."""
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
                           self.trial_dir(trial), error=error, tiny_k=self.tiny_k,
                           resources=self.resources_of(trial),
                           code_version=self._versions.get(
                               trial.trial_id, self.setup.get("code_version", "")))
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
        written = [RESULTS_PARQUET, RESULTS_CSV]
        i_status = self._columns.index("status")
        self.written_finished = sum(1 for r in rows if r[i_status] == "completed")
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
            written.append(SWEEP_PREDICTIONS)
        if self.after_write is not None:
            self.after_write(written)

    def maybe_write(self) -> None:
        """Rewrite the table if it changed and the last rewrite is long enough ago."""
        if self._dirty_table and time.monotonic() - self._last_table >= self._table_wait:
            self.write_in_sweep()

    def write_if_due(self) -> None:
        """Results arrived: rewrite the table if the last rewrite is `table_every_s` (and at
        least its cost's wait) ago."""
        if time.monotonic() - self._last_table >= max(self.table_every_s, self._table_wait):
            self.write_in_sweep()

    def write_in_sweep(self, final: bool = False) -> None:
        """`write`, from inside Ray's loop. Ray would take a callback's exception for the trial's
        and restart it, so a full disk is kept (`self.disk_full`, raised by the driver after
        the loop) and `on_disk_full` is called: the sweep callback stops the sweep the way
        Ctrl-C stops it (Ray saves its state, the unfinished trials resume with --resume, the
        table on disk is the last one written)."""
        if self.disk_full is not None:
            return  # the sweep is stopping; nothing more is written
        try:
            self.write(final=final)
        except DiskFullError as err:
            self.disk_full = err
            if self.on_disk_full is not None:
                self.on_disk_full()


__all__ = ["TABLE_COST_FACTOR", "ResultsTable", "memory_kill_message"]
