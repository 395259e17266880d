"""Checkpoints on disk during a sweep: prune each finished trial's as it finishes.

Ray keeps one checkpoint per trial (`CheckpointConfig(num_to_keep=1)`) and, left alone, keeps it
until the sweep ends: the 24-trial main command held 4.4 GB of them at its peak and a whole grid
would need on the order of a terabyte. `CheckpointPruner` is a Ray Tune callback that removes a
trial's checkpoints as soon as the trial finishes, except the best meaningful completed trial's
(the one a user would load), so the disk holds about one checkpoint per running trial plus one.
Nothing that can still be read is removed:
- a running or paused trial (ASHA/HyperBand pause and resume from it) is never touched;
- an errored trial keeps its checkpoint: `--resume --retry-errored` continues from it;
- under PBT every checkpoint stays until the end (PBT clones other trials' checkpoints);
- with `--keep-checkpoints` nothing is removed.
The sweep's final pass (`prune_finished`, also used after a resumed sweep) applies the same rule
to the results table and removes trial folders left empty.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from ray import tune

from s4l_models.checkpoint import CHECKPOINT_DIR
from tune.reseed import RAY_SUBDIR as RESEED_SUBDIR
from tune.results import RESULTS_PARQUET, meaningful, ray_dir, read_table

CHECKPOINT_GLOB = "checkpoint_*"


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def remove_checkpoints(trial_dir: Path) -> int:
    """Remove a trial's checkpoint folders; returns the bytes freed."""
    freed = 0
    for ckpt in sorted(Path(trial_dir).glob(CHECKPOINT_GLOB)):
        freed += dir_bytes(ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)
    return freed


def remove_if_empty(trial_dir: Path) -> None:
    try:
        Path(trial_dir).rmdir()  # only succeeds when nothing is left in it
    except OSError:
        pass


def selectable(last: dict) -> bool:
    """A trial whose last result may be chosen as the best: it ran to its last step, did not
    diverge and is not a short run (tune/results.py's `completed`, less `short_run`)."""
    step, total = last.get("step"), last.get("total_steps")
    return (
        step is not None and total is not None and int(step) >= int(total)
        and last.get("status") != "diverged" and not last.get("short_run", False)
    )


class CheckpointPruner(tune.Callback):
    """Keep the best completed trial's checkpoint; remove every other finished trial's."""
    def __init__(self, metric: str, enabled: bool = True):
        self.metric = metric
        self.enabled = enabled
        self.best: tuple[float, str, Path] | None = None  # (value, trial id, trial folder)
        self.freed = 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not self.enabled:
            return
        folder = Path(trial.path)
        last = trial.last_result or {}
        value = last.get(self.metric)
        good = selectable(last) and isinstance(value, (int, float)) and math.isfinite(value)
        if good and (self.best is None or value > self.best[0]):
            if self.best is not None:  # the previous best is no longer needed
                self.freed += remove_checkpoints(self.best[2])
            self.best = (float(value), trial.trial_id, folder)
            return
        self.freed += remove_checkpoints(folder)


def prune_finished(ray_dir: Path, rows, best_id: str | None, keep_all: bool) -> int:
    """The end-of-sweep pass: remove the checkpoints of every finished trial but `best_id`
    (errored and unfinished trials keep theirs) and folders left empty (Ray's trial folders,
    the trainers' emptied `checkpoint/` folders); returns bytes freed.
    `rows`: (trial_id, status, trainer directory) of the results table's trials."""
    freed = 0
    for trial_id, status, trainer_dir in rows:
        folder = Path(ray_dir) / str(trial_id)
        if not keep_all and trial_id != best_id and status in (
            "completed", "stopped_early", "diverged"
        ):
            freed += remove_checkpoints(folder)
        remove_if_empty(folder)
        if status != "running" and trainer_dir:
            remove_if_empty(Path(trainer_dir) / CHECKPOINT_DIR)
    return freed


def prune_checkpoints(sweep_dir: Path, metric: str, keep_all: bool, freed: int = 0) -> str:
    """After a finished sweep, keep only the best trial's checkpoint (unless keep_all) and the
    errored trials' (--retry-errored resumes from them); `freed`: bytes the sweep's
    CheckpointPruner already removed as trials finished."""
    df = read_table(sweep_dir / RESULTS_PARQUET)
    pool = df[meaningful(df) & df[metric].notna()]
    best = str(pool.loc[pool[metric].idxmax(), "trial_id"]) if not pool.empty else None

    kept = []
    for rdir in (ray_dir(sweep_dir), sweep_dir / RESEED_SUBDIR):  # the search's, the repeats'
        if rdir.is_dir():
            rows = zip(df["trial_id"], df["status"], df["trial_dir"])
            freed += prune_finished(rdir, rows, best, keep_all)
            kept += sorted(rdir.glob(f"{best}/{CHECKPOINT_GLOB}")) if best else []
    if keep_all:
        return f"checkpoints: every trial's last one is kept (best trial: {kept[-1] if kept else '-'})"
    where = f"the best trial's: {kept[-1]}" if kept else "none"
    return (
        f"checkpoints kept: {where} (removed the others' {freed / 2**20:,.0f} MiB as trials "
        "finished; --keep-checkpoints keeps all)"
    )


__all__ = ["CheckpointPruner", "prune_finished", "remove_checkpoints", "dir_bytes", "selectable",
           "prune_checkpoints"]
