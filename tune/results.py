"""The sweep's results contract: what a sweep directory holds and how its table is written.

Every writer (the sweep callback, the seed repeats) and every reader (the analysis, `--resume`)
takes the directory's file names (`RESULTS_PARQUET`, `RESULTS_CSV`, `SPACE_JSON`, `TRIALS_DIR`,
`SWEEP_PREDICTIONS`), `RESULTS_VERSION`, the statuses, the metric names and `config_id` from
here; the per-example predictions' layout is `s4l_models/predictions.py`'s. No torch is imported.

`<sweep>/results.parquet` and `<sweep>/results.csv` hold one row per trial (the analysis reads
exactly these columns; `RESULTS_VERSION` changes when they do):

- `trial_id` (str), `config_id` (str: a hash of the trial's settings without its `seed` and the
  runtime settings that do not change a result, `config_id()`; trials that differ only in seed
  share it), `status` (completed | errored | diverged | stopped_early; `running` while a
  sweep is under way or after it was interrupted), `error` (str, "" when none);
- every `TrainConfig` setting of the trial's resolved config, one column each, except one that
  is empty in every row (a setting no trial uses, e.g. `eps_vat` in a supervised sweep); list
  settings (`tiny_k`, `decay_epochs`) as lists in the parquet file and as JSON in the CSV
  (`file_form`). The project's readers (`read_table`, analysis/load.py) turn a table back into
  the form its code works with, every setting a column and lists as JSON strings
  (`internal_form`, what `make_row` builds);
- every metric key of the trainer (`METRIC_KEYS`; NaN when the trial never reported it);
- `epochs_done` (float), `steps_done`, `total_steps`, `short_run` (bool: the run had
  SHORT_RULE, so its scores mean little; the report
  leaves such trials out), `train_seconds` (the run's wall time: the trainer's clock at its
  last evaluation reported to Ray; for a trial that errored or was restarted (by a retry or a
  resume), the time every attempt ran, as its trainer logged it (`logged_seconds`, from the
  trial's train.log: evaluations that never reached Ray and work a restart redid count, they
  were paid for), when that is more; the time from an attempt's last evaluation to its crash,
  and each attempt's start-up before its first step, are recorded nowhere and not counted),
  `eval_seconds` (the part of it spent scoring: validation passes and the final test pass),
  `cpus`, `gpus` (the Ray resources the trial held), `cpu_seconds`, `gpu_seconds` (its
  device-seconds: resources x
  `train_seconds`, what the trial cost whether or not it used them fully), `trial_dir` (the
  trial's trainer directory `<sweep>/trials/<trial_id>`), `code_version` (the s4l-tune version
  that wrote the row, with its git commit and `.dirty` when run from a modified checkout;
  tune/provenance.py), `results_version` (5).

`<sweep>/predictions.npz` holds the per-example correctness (top-1/top-5 on the full validation
split) of every **completed** trial's final evaluation, written with
`s4l_models.predictions.save_sweep_predictions` (trials that stopped early, diverged or errored have
no final evaluation and are left out). Both files are replaced atomically, so a crash never
leaves a half-written table. This module does not import Ray.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s4l_models.config import RESUME_FREE, TrainConfig
from s4l_models.errors import UserError, first_line
from s4l_models.io import atomic_write
from s4l_models.predictions import (
    SWEEP_PREDICTIONS,
    TRIAL_PREDICTIONS,
    load_predictions,
    save_sweep_predictions,
)

from .storage import open_uri

# 2: short_run column; label fractions count over the whole training split
# 3: config_id column (seeds of one configuration share it)
# 4: eval_seconds column and the `evaluations` setting
# 5: cpus, gpus, cpu_seconds, gpu_seconds (cost) and code_version (provenance) columns
RESULTS_VERSION = 5
# Versions the analysis still reads (a version-2 table gets its config_id computed on reading;
# tables before 5 get empty cost and provenance columns).
READABLE_VERSIONS = (2, 3, 4, 5)
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
SPACE_JSON = "space.json"
TRIALS_DIR = "trials"

STATUSES = ("completed", "errored", "diverged", "stopped_early", "running")
# Every metric the trainer reports (tiny subsets are the default tiny_k = (1, 5)); a sweep with
# other tiny_k adds its own val_<k>pc_* columns after these.
METRIC_KEYS = (
    "val_1pc_top1",
    "val_1pc_top5",
    "val_5pc_top1",
    "val_5pc_top5",
    "val_full_top1",
    "val_full_top5",
    "test_top1",
    "test_top5",
)
HEAD_COLUMNS = ("trial_id", "config_id", "status", "error")
# Settings that do not define a configuration: the seed (seeds of one configuration are its
# repeats), where the data lives, and the runtime settings the trainer already declares as not
# changing a result (s4l_models.config.RESUME_FREE: threads, device, evaluation batch, ...).
NOT_CONFIGURATION = frozenset({"seed", "data_dir", *RESUME_FREE})
TAIL_COLUMNS = (
    "epochs_done",
    "steps_done",
    "total_steps",
    "short_run",
    "train_seconds",
    "eval_seconds",
    "cpus",
    "gpus",
    "cpu_seconds",
    "gpu_seconds",
    "trial_dir",
    "code_version",
    "results_version",
)
# Columns a table older than version 5 lacks, and what they read as in it.
ADDED_IN_5 = {"cpus": math.nan, "gpus": math.nan, "cpu_seconds": math.nan,
              "gpu_seconds": math.nan, "code_version": ""}


def metric_keys(tiny_k: Iterable[int] = (1, 5)) -> list[str]:
    """Metric columns for a sweep whose trials use these tiny validation subsets."""
    keys = [f"val_{k}pc_top{t}" for k in sorted(set(int(k) for k in tiny_k)) for t in (1, 5)]
    keys += ["val_full_top1", "val_full_top5", "test_top1", "test_top5"]
    return [*METRIC_KEYS, *(k for k in keys if k not in METRIC_KEYS)]


def columns(tiny_k: Iterable[int] = (1, 5)) -> list[str]:
    """The table's columns, in order."""
    return [*HEAD_COLUMNS, *TrainConfig.field_names(), *metric_keys(tiny_k), *TAIL_COLUMNS]


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return value


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def setting_columns(names: Iterable[str]) -> list[str]:
    """The table columns (of `names`, in order) that are settings of a configuration: the
    `TrainConfig` fields but the runtime ones (`NOT_CONFIGURATION` without the seed). Everything
    else is an outcome or bookkeeping: `HEAD_COLUMNS`, metrics, `TAIL_COLUMNS`."""
    fields = set(TrainConfig.field_names()) - (NOT_CONFIGURATION - {"seed"})
    return [c for c in names if c in fields]


def config_id(settings: Mapping[str, Any]) -> str:
    """A short stable id of a configuration: the trial's settings (as stored in the table,
    tuples as JSON) without `NOT_CONFIGURATION`, hashed. Computable from a table row alone, so
    anyone can recompute it from results.parquet."""
    keys = [k for k in TrainConfig.field_names() if k not in NOT_CONFIGURATION]
    values = {k: _cell(settings.get(k)) for k in keys}
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def trial_status(ray_status: str, last: Mapping[str, Any] | None) -> str:
    """Our status of a trial from Ray's (PENDING/RUNNING/PAUSED/TERMINATED/ERROR) and its last
    reported result: a terminated trial that never reached its last step stopped early."""
    last = last or {}
    if ray_status == "ERROR":
        return "errored"
    if last.get("status") == "diverged":
        return "diverged"
    if ray_status == "TERMINATED":
        step, total = last.get("step"), last.get("total_steps")
        if step is not None and total is not None and int(step) >= int(total):
            return "completed"
        return "stopped_early"
    return "running"


# The trainer's log (s4l_models/trainer.py): each run of Trainer.run (an attempt, or a stage of
# a multi-stage method, whose lines carry a "[stage i/n name] " prefix) starts with a
# "training ..." line, "..., resuming at step N" when it continues from a checkpoint; each
# evaluation line has "step S/T" and ends with the run's clock "| 12.3s" (train_seconds: the
# checkpoint's clock plus this process's time).
_LOG_TAG = re.compile(r"^\[([^\]]*)\] ")
_LOG_CLOCK = re.compile(r"\| (\d+(?:\.\d+)?)s$")
_LOG_STEP = re.compile(r"\bstep (\d+)/\d+")
_LOG_RESUME = re.compile(r"resuming at step (\d+)")


def logged_seconds(trial_dir: str | os.PathLike) -> float | None:
    """Seconds the trial's trainer ran over all its attempts and stages, from its train.log
    (appended by every attempt, never rewritten): per run of the trainer, its last logged clock
    less the clock it started from (0, or for a resumed run the clock its checkpoint's
    evaluation logged). Counts work a crash threw away (evaluations after the last one Ray
    received; a retry redoing the steps after its checkpoint). Not counted, as nothing records
    it: an attempt's time after its last evaluation and before its first step. The log rounds
    to 0.1 s. None without a readable local log (a sweep on an object store)."""
    if "://" in str(trial_dir):
        return None
    try:
        text = (Path(trial_dir) / "train.log").read_text(errors="replace")
    except OSError:
        return None
    total = 0.0
    seen: dict[tuple[str, int], float] = {}  # (tag, step) -> its evaluation's logged clock
    run = None  # [tag, clock started from (None: unknown), last clock] of the current run
    for line in text.splitlines():
        line = line.rstrip()
        m = _LOG_TAG.match(line)
        tag, body = (m.group(1), line[m.end():]) if m else ("", line)
        if body.startswith("training "):
            if run is not None and run[2] is not None:
                total += run[2] - (run[1] if run[1] is not None else run[2])
            resume = _LOG_RESUME.search(body)
            start = seen.get((tag, int(resume.group(1)))) if resume else 0.0
            run = [tag, start, None]
            continue
        clock, step = _LOG_CLOCK.search(body), _LOG_STEP.search(body)
        if run is None or clock is None or step is None or tag != run[0]:
            continue
        value = float(clock.group(1))
        if run[1] is None:  # resumed from an evaluation not in the log: count from its first
            run[1] = value
        run[2] = value
        seen[(tag, int(step.group(1)))] = value
    if run is not None and run[2] is not None:
        total += run[2] - (run[1] if run[1] is not None else run[2])
    return total


def _restarted(last: Mapping[str, Any]) -> bool:
    """Ray restored the trial from a checkpoint at some point (a retry or a resumed sweep):
    its iteration count goes on from the checkpoint, its count since the restore starts over."""
    it, since = last.get("training_iteration"), last.get("iterations_since_restore")
    return it is not None and since is not None and int(it) != int(since)


def make_row(
    trial_id: str,
    status: str,
    config: Mapping[str, Any],
    last: Mapping[str, Any] | None,
    trial_dir: str,
    error: str = "",
    tiny_k: Iterable[int] = (1, 5),
    resources: Mapping[str, float] | None = None,
    code_version: str = "",
) -> dict[str, Any]:
    """One table row from a trial's resolved TrainConfig dict and its last reported result.
    `resources`: the trial's Ray resources ({"cpu": .., "gpu": ..}) for its cost columns."""
    last = dict(last or {})
    row: dict[str, Any] = {"trial_id": str(trial_id), "config_id": config_id(config),
                           "status": status, "error": error or ""}
    if status == "diverged" and not row["error"]:
        row["error"] = str(last.get("message", ""))
    for key in TrainConfig.field_names():
        row[key] = _cell(config.get(key))
    for key in metric_keys(tiny_k):
        row[key] = _float(last.get(key))
    row["epochs_done"] = _float(last.get("epoch", last.get("epochs", 0.0)) or 0.0)
    row["steps_done"] = int(last.get("step", last.get("steps", 0)) or 0)
    total = last.get("total_steps")
    row["total_steps"] = int(total) if total is not None else -1
    row["short_run"] = bool(last.get("short_run", False))
    row["train_seconds"] = _float(last.get("train_seconds", 0.0) or 0.0)
    if status == "errored" or (status != "running" and _restarted(last)):
        # the last report leaves out what a crash threw away; the trainer's log has it
        # (read once: a finished trial's row is kept)
        logged = logged_seconds(trial_dir)
        if logged is not None and logged > row["train_seconds"]:
            row["train_seconds"] = logged
    row["eval_seconds"] = _float(last.get("eval_seconds", 0.0) or 0.0)
    resources = resources or {}
    row["cpus"] = _float(resources.get("cpu"))
    row["gpus"] = _float(resources.get("gpu", 0.0))
    row["cpu_seconds"] = row["cpus"] * row["train_seconds"]
    row["gpu_seconds"] = row["gpus"] * row["train_seconds"]
    row["trial_dir"] = str(trial_dir)
    row["code_version"] = str(code_version or "")
    row["results_version"] = RESULTS_VERSION
    return row


def results_frame(rows: list[dict[str, Any]], tiny_k: Iterable[int] = (1, 5)) -> pd.DataFrame:
    cols = columns(tiny_k)
    df = pd.DataFrame(rows, columns=cols)
    for key in metric_keys(tiny_k) + ["epochs_done", "train_seconds", "eval_seconds", "cpus",
                                      "gpus", "cpu_seconds", "gpu_seconds"]:
        df[key] = df[key].astype(float)
    for key in ("steps_done", "total_steps", "results_version"):
        df[key] = df[key].astype("int64")
    for key in ("trial_id", "config_id", "status", "error", "trial_dir", "code_version"):
        df[key] = df[key].astype(str)
    df["short_run"] = df["short_run"].astype(bool)
    # Settings whose values are all None (e.g. data_dir on digits) stay as object columns;
    # parquet wants one type per column, so mixed None/str columns are stored as strings.
    for key in TrainConfig.field_names():
        col = df[key]
        if col.dtype == object:
            kinds = {type(v) for v in col if v is not None}
            if len(kinds) > 1 or (kinds and kinds <= {str}):
                df[key] = col.map(lambda v: None if v is None else str(v))
    return df


def upgrade_table(df: pd.DataFrame) -> pd.DataFrame:
    """A table of an earlier version in the current format: a version-2 table (no config_id)
    gets each row's config_id computed from its settings; a table before version 5 gets empty
    cost and provenance columns (`ADDED_IN_5`: unknown, not zero). Its rows keep their
    `results_version`: they were written by that version."""
    missing = [c for c in ADDED_IN_5 if c not in df.columns]
    if ("config_id" not in df.columns or missing) and len(df):
        df = df.copy()
        if "config_id" not in df.columns:
            df.insert(1, "config_id", [config_id(r) for r in df.to_dict("records")])
        for c in missing:
            df[c] = ADDED_IN_5[c]
    return df


def read_table(path: str | os.PathLike, columns: list[str] | None = None,
               complete: bool = True) -> pd.DataFrame:
    """Read a results.parquet that the sweep may be replacing at this moment, in the form the
    project's code works with (`internal_form`: list settings as JSON strings, every setting a
    column).

    The file is replaced atomically, so any one version is complete; but `pd.read_parquet(path)`
    opens the path twice (footer, then data) and can pair one version's footer with the next
    one's data (bench/chaos.py saw 312 failures in 11,739 tight-loop reads). Reading through one
    open file reads one version (0 failures in 6,143). `complete=False` leaves out the
    settings the file left out (the analysis, which reads a missing setting as not swept)."""
    import pyarrow as pa

    with open(path, "rb") as f:
        try:
            if columns is not None and not set(columns) & set(TrainConfig.field_names()):
                return pd.read_parquet(f, columns=columns)  # outcome columns are always written
            df = internal_form(pd.read_parquet(f), complete=complete)
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            # a truncated or overwritten file (the sweep itself replaces it atomically)
            raise UnreadableTable(path, first_line(err)) from None
    return df[columns] if columns is not None else df


def resume_rebuilds(sweep_dir) -> str:
    """The advice for an unreadable results table of a sweep that has Ray's state."""
    return (f"`python tune/run_sweep.py --resume {shlex.quote(str(sweep_dir))}` rebuilds it "
            "from the sweep's Ray state")


class UnreadableTable(UserError):
    """results.parquet is not a readable table (truncated, overwritten, a missing column).
    A sweep rebuilds it from Ray's saved state when resumed (tune/run_sweep.py)."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} is not a readable results table ({problem}); "
                         f"{resume_rebuilds(self.path.parent)}")


# Settings whose values are sequences (TrainConfig tuples): lists in results.parquet.
LIST_SETTINGS = ("tiny_k", "decay_epochs")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def file_form(df: pd.DataFrame) -> pd.DataFrame:
    """The table as results.parquet/.csv hold it, for a pandas user: a setting that is empty in
    every row (one that does not apply to any trial, e.g. eps_vat in a supervised sweep) is left
    out, and list settings (`LIST_SETTINGS`) are lists (the CSV writes them as JSON)."""
    empty = [c for c in TrainConfig.field_names() if c in df.columns and df[c].map(_missing).all()]
    out = df.drop(columns=empty)
    for c in LIST_SETTINGS:
        if c in out.columns:
            out[c] = out[c].map(lambda v: None if _missing(v) else
                                json.loads(v) if isinstance(v, str) else list(v))
    return out


def internal_form(df: pd.DataFrame, complete: bool = True) -> pd.DataFrame:
    """The inverse of `file_form` for the project's code: list settings as JSON strings (as
    `make_row` writes them, so rows compare and hash as before) and, when `complete`, every
    setting a column (None where the file left it out)."""
    df = df.copy()
    for c in LIST_SETTINGS:
        if c in df.columns:
            df[c] = df[c].map(lambda v: v if _missing(v) or isinstance(v, str) else
                              json.dumps([x.item() if hasattr(x, "item") else x for x in v]))
    if complete:
        fields = TrainConfig.field_names()
        for c in fields:
            if c not in df.columns:
                df[c] = None
        head = [c for c in df.columns if c in HEAD_COLUMNS]
        rest = [c for c in df.columns if c not in HEAD_COLUMNS and c not in fields]
        df = df[head + list(fields) + rest]  # the order `columns()` gives
    return df


def write_results(sweep_dir: str | os.PathLike, df: pd.DataFrame) -> tuple[Path, Path]:
    """Atomically replace results.parquet and results.csv in `sweep_dir` (in `file_form`)."""
    d = Path(sweep_dir)
    files = file_form(df)
    parquet = atomic_write(d / RESULTS_PARQUET, lambda tmp: files.to_parquet(tmp, index=False))
    csv = atomic_write(d / RESULTS_CSV, lambda tmp: files.to_csv(tmp, index=False))
    return parquet, csv


def write_predictions(
    sweep_dir: str | os.PathLike,
    trial_dirs: Mapping[str, str],
    cache: dict[str, dict[str, np.ndarray]] | None = None,
) -> Path | None:
    """Gather the completed trials' `val_predictions.npz` into `<sweep>/predictions.npz`.

    `trial_dirs` maps trial id -> trainer directory, in table order. `cache` (trial id ->
    loaded predictions) saves re-reading files across rewrites. Returns None when no trial has
    predictions yet.
    """
    cache = {} if cache is None else cache
    ids, top1, top5, preds = [], [], [], []
    index = label = None
    for trial_id, tdir in trial_dirs.items():
        pred = cache.get(trial_id)
        if pred is None:
            if "://" in str(tdir):  # a trial of a sweep on an object store (tune/storage.py)
                try:
                    pred = load_predictions(open_uri(f"{tdir}/{TRIAL_PREDICTIONS}"))
                except (OSError, FileNotFoundError):
                    continue  # not uploaded yet
            else:
                path = Path(tdir) / TRIAL_PREDICTIONS
                if not path.is_file():
                    continue
                pred = load_predictions(path)
            cache[trial_id] = pred
        if index is None:
            index, label = pred["index"], pred["label"]
        elif not np.array_equal(index, pred["index"]):
            continue  # not the sweep's validation split (cannot happen with shared splits)
        ids.append(trial_id)
        top1.append(pred["top1"])
        top5.append(pred["top5"])
        preds.append(pred)
    if not ids:
        return None
    # predicted classes and confidences when every trial has them (older trials have only bits)
    full = all("pred" in p and "conf" in p for p in preds)
    has_rot = np.array(["rot" in p for p in preds])
    zeros = np.zeros(len(index), dtype=np.uint8)
    return save_sweep_predictions(
        Path(sweep_dir) / SWEEP_PREDICTIONS, ids, index, label, np.stack(top1), np.stack(top5),
        pred=np.stack([p["pred"] for p in preds]) if full else None,
        conf=np.stack([p["conf"] for p in preds]) if full else None,
        rot=np.stack([p.get("rot", zeros) for p in preds]) if has_rot.any() else None,
        has_rot=has_rot if has_rot.any() else None,
        unreadable=preds[0].get("unreadable"),
    )


# Ray Tune's own files (experiment state, tuner.pkl, per-trial checkpoints, error.txt) live in
# this subfolder of the sweep directory; ours (space.json, splits, trials/, results.*) beside it.
RAY_SUBDIR = "ray"
# Statuses of a trial that will not change any more.
FINISHED_STATUSES = ("completed", "errored", "diverged", "stopped_early")


def ray_dir(sweep_dir: Path) -> Path:
    """Where Ray Tune's experiment lives: `<sweep>/ray/`, or the sweep directory itself for a
    sweep written before that subfolder existed (it still resumes)."""
    sweep_dir = Path(sweep_dir)
    if (sweep_dir / "tuner.pkl").is_file() and not (sweep_dir / RAY_SUBDIR).is_dir():
        return sweep_dir
    return sweep_dir / RAY_SUBDIR


def has_ray_experiment(sweep_dir: Path) -> bool:
    return (ray_dir(sweep_dir) / "tuner.pkl").is_file()


# What makes a run too short to mean anything (s4l_models/schedule.py `Schedule.short_reason`),
# in the words every message about `short_run` uses.
SHORT_RULE = ("fewer than 50 optimizer steps, every step inside the warmup, or a first lr decay "
              "at or before the warmup's end")


def meaningful(df):
    """Completed trials that are not marked short_run (the ones a best may be chosen from)."""
    done = df["status"] == "completed"
    return done & ~df["short_run"].astype(bool) if "short_run" in df.columns else done


def check_metric(metric: str, tiny_k) -> None:
    keys = metric_keys(tiny_k)
    if metric.startswith("test_"):  # the test split is scored, never selected on
        raise UserError(f"--metric {metric} would choose models on the public test split, "
                        "which model selection never uses; choose a validation metric "
                        "(val_full_top1, the default, or a tiny subset's val_*)")
    if metric not in keys:
        raise UserError(f"--metric {metric!r} is not a metric of the trainer; choose one of {', '.join(keys)}")

__all__ = [
    "RESULTS_VERSION",
    "READABLE_VERSIONS",
    "config_id",
    "setting_columns",
    "read_table",
    "UnreadableTable",
    "upgrade_table",
    "RAY_SUBDIR",
    "FINISHED_STATUSES",
    "SHORT_RULE",
    "resume_rebuilds",
    "ray_dir",
    "has_ray_experiment",
    "meaningful",
    "check_metric",
    "METRIC_KEYS",
    "STATUSES",
    "columns",
    "metric_keys",
    "make_row",
    "logged_seconds",
    "results_frame",
    "trial_status",
    "write_results",
    "write_predictions",
]
