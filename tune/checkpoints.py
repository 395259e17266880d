"""Checkpoints on disk during a sweep: prune each finished trial's as it finishes.

Ray keeps one checkpoint per trial (`CheckpointConfig(num_to_keep=1)`) and, left alone, keeps it
until the sweep ends: the 24-trial main command held 4.4 GB of them at its peak and a whole grid
would need on the order of a terabyte. `CheckpointPruner` is a Ray Tune callback that removes a
trial's checkpoints as soon as the trial finishes, except the best meaningful completed trial's
(the one a user would load), so the disk holds about one checkpoint per running trial plus one.
During seed repeats the best trial of each configuration keeps its checkpoint, and the final
pass also keeps the best remaining one of the configuration the summary recommends by its seed
mean (which need not hold the single best trial). On an object-store sweep the same happens in
the store (Ray's trial paths are inside its filesystem).
Nothing that can still be read is removed:
- a running or paused trial (ASHA/HyperBand pause and resume from it) is never touched;
- an errored trial keeps its checkpoint: `--resume --retry-errored` continues from it;
- under PBT every checkpoint stays until the end (PBT clones other trials' checkpoints);
- with `--keep-checkpoints` nothing is removed.
The sweep's final pass (`prune_finished`, also used after a resumed sweep) applies the same rule
to the results table and removes trial folders left empty.
"""

from __future__ import annotations

import fnmatch
import math
import shutil
from pathlib import Path

from ray import tune

from s4l_models.checkpoint import CHECKPOINT_DIR
from tune.reseed import RAY_SUBDIR as RESEED_SUBDIR
from tune.results import RAY_SUBDIR, RESULTS_PARQUET, meaningful, ray_dir, read_table
from tune.summary import best_config_by_seed_mean

CHECKPOINT_GLOB = "checkpoint_*"


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def remove_checkpoints(trial_dir: Path | str, fs=None) -> int:
    """Remove a trial's checkpoint folders; returns the bytes freed. `fs`: the pyarrow
    filesystem of an object-store sweep, where `trial_dir` is a path inside it."""
    if fs is not None:
        return _remove_stored(fs, str(trial_dir))
    freed = 0
    for ckpt in sorted(Path(trial_dir).glob(CHECKPOINT_GLOB)):
        freed += dir_bytes(ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)
    return freed


def stored_checkpoints(fs, trial_dir: str) -> list[str]:
    """The checkpoint folders of a trial in an object store (paths inside `fs`)."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_dir, allow_not_found=True))
    except OSError:
        return []
    return sorted(i.path for i in infos if i.type == pafs.FileType.Directory
                  and fnmatch.fnmatch(i.base_name, CHECKPOINT_GLOB))


def _remove_stored(fs, trial_dir: str) -> int:
    import pyarrow.fs as pafs

    freed = 0
    for ckpt in stored_checkpoints(fs, trial_dir):
        try:
            files = fs.get_file_info(pafs.FileSelector(ckpt, recursive=True))
            fs.delete_dir(ckpt)
        except OSError:
            continue  # a store that refuses: the checkpoint stays, as with --keep-checkpoints
        freed += sum(f.size or 0 for f in files if f.type == pafs.FileType.File)
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
    """Keep the best completed trial's checkpoint; remove every other finished trial's.
    `fs`: an object-store sweep's pyarrow filesystem (Ray's trial paths are inside it)."""
    def __init__(self, metric: str, enabled: bool = True, fs=None, per_config: bool = False):
        self.metric = metric
        self.enabled = enabled
        self.fs = fs
        # seed repeats (per_config): the best trial of each configuration (its settings less
        # the seed) keeps its checkpoint, since the configuration recommended by its seed mean
        # need not hold the single best trial
        self.per_config = per_config
        self.best: dict[tuple, tuple[float, str, Path]] = {}  # group -> (value, id, folder)
        self.freed = 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not self.enabled:
            return
        folder = Path(trial.path) if self.fs is None else trial.path
        last = trial.last_result or {}
        value = last.get(self.metric)
        good = selectable(last) and isinstance(value, (int, float)) and math.isfinite(value)
        group = (tuple(sorted((k, str(v)) for k, v in (trial.config or {}).items()
                              if k != "seed")) if self.per_config else ())
        held = self.best.get(group)
        if good and (held is None or value > held[0]):
            if held is not None:  # the group's previous best is no longer needed
                self.freed += remove_checkpoints(held[2], self.fs)
            self.best[group] = (float(value), trial.trial_id, folder)
            return
        self.freed += remove_checkpoints(folder, self.fs)


def prune_finished(ray_dir: Path | str, rows, keep_ids: set[str], keep_all: bool,
                   fs=None) -> int:
    """The end-of-sweep pass: remove the checkpoints of every finished trial but `keep_ids`
    (errored and unfinished trials keep theirs) and folders left empty (Ray's trial folders,
    the trainers' emptied `checkpoint/` folders); returns bytes freed.
    `rows`: (trial_id, status, trainer directory) of the results table's trials. `fs`: an
    object-store sweep's filesystem, `ray_dir` a path inside it (a store has no empty folders)."""
    freed = 0
    for trial_id, status, trainer_dir in rows:
        folder = f"{ray_dir}/{trial_id}" if fs is not None else Path(ray_dir) / str(trial_id)
        if not keep_all and str(trial_id) not in keep_ids and status in (
            "completed", "stopped_early", "diverged"
        ):
            freed += remove_checkpoints(folder, fs)
        if fs is not None:
            continue
        remove_if_empty(folder)
        if status != "running" and trainer_dir:
            remove_if_empty(Path(trainer_dir) / CHECKPOINT_DIR)
    return freed


def prune_checkpoints(sweep_dir: Path, metric: str, keep_all: bool, freed: int = 0,
                      remote=None) -> str:
    """After a finished sweep, keep only the best trial's checkpoint (unless keep_all), with
    seed repeats also the best remaining one of the configuration recommended by its seed mean
    (`best_config_by_seed_mean`, as the summary names it), and the errored trials' (--retry-
    errored resumes from them); `freed`: bytes the sweep's CheckpointPruner already removed as
    trials finished. `remote`: the sweep's object store (tune/storage.py RemoteSweep), where Ray
    keeps its checkpoints then."""
    df = read_table(sweep_dir / RESULTS_PARQUET)
    pool = df[meaningful(df) & df[metric].notna()]
    best = str(pool.loc[pool[metric].idxmax(), "trial_id"]) if not pool.empty else None
    cid = best_config_by_seed_mean(pool, metric)
    of_config = [str(t) for t in pool.loc[pool["config_id"] == cid].sort_values(
        metric, ascending=False, kind="stable")["trial_id"]] if cid is not None else []

    def held(trial_id: str) -> list:
        """The checkpoints a trial still has (paths, or URIs in a store)."""
        if remote is not None:
            return [remote.uri_of(f"{sub}/{trial_id}/{p.rsplit('/', 1)[-1]}")
                    for sub in (RAY_SUBDIR, RESEED_SUBDIR)
                    for p in stored_checkpoints(remote.fs, remote.remote(f"{sub}/{trial_id}"))]
        return [p for rdir in (ray_dir(sweep_dir), sweep_dir / RESEED_SUBDIR)
                for p in sorted(rdir.glob(f"{trial_id}/{CHECKPOINT_GLOB}"))]

    # the recommended configuration's best trial that still has a checkpoint (while trials
    # finished, the search kept only its best, the repeats the best of each configuration)
    config_best = (next((t for t in of_config if held(t)), None)
                   if best not in of_config else None)
    keep = {t for t in (best, config_best) if t is not None}
    rows = list(zip(df["trial_id"], df["status"], df["trial_dir"]))
    if remote is not None:  # Ray's experiments in the store: the search's, the repeats'
        for sub in (RAY_SUBDIR, RESEED_SUBDIR):
            freed += prune_finished(remote.remote(sub), rows, keep, keep_all, remote.fs)
    else:
        for rdir in (ray_dir(sweep_dir), sweep_dir / RESEED_SUBDIR):
            if rdir.is_dir():
                freed += prune_finished(rdir, rows, keep, keep_all)
    kept = held(best) if best else []
    if keep_all:
        return f"checkpoints: every trial's last one is kept (best trial: {kept[-1] if kept else '-'})"
    where = f"the best trial's: {kept[-1]}" if kept else "none"
    if config_best is not None:
        where += (f"; the best configuration's by its seed mean ({cid}): "
                  f"{held(config_best)[-1]}")
    return (
        f"checkpoints kept: {where} (removed the others' {freed / 2**20:,.0f} MiB as trials "
        "finished; --keep-checkpoints keeps all)"
    )


__all__ = ["CheckpointPruner", "prune_finished", "remove_checkpoints", "dir_bytes", "selectable",
           "prune_checkpoints", "stored_checkpoints"]
