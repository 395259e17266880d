"""The Ray Tune function trainable: one trial = one `s4l_models.trainer.train` call.

`run_trial(config, setup)` reads only its config (the trial's axis values; non-scalar values
arrive JSON-encoded and are parsed by `TrainConfig`) and `setup` (constants shared by the sweep,
given through `tune.with_parameters`: the fixed settings, the sweep directory, the shared split
files, torch threads) and `data` (the in-memory dataset the driver loaded, shared through Ray's
object store). The trainer writes into `<sweep>/trials/<trial_id>/` and calls back at
every evaluation; the callback forwards the metrics and the trainer's checkpoint directory to
`tune.report`. A trial restarted by Ray (a crash under `FailureConfig(max_failures=...)`, a
resumed sweep, HyperBand/PBT pausing) resumes from `tune.get_checkpoint()`. When PBT hands a
trial another trial's checkpoint with mutated hyperparameters (lr, wd, ...), the checkpoint is
adapted to the new values before the trainer loads it. Ray's copy of a checkpoint is the only one kept (the trainer's own is
removed once reported).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from s4l_models.checkpoint import CHECKPOINT_FILE, RETARGETED_DIR, retarget
from s4l_models.config import TrainConfig
from s4l_models.data.datasets import adopt_dataset
from s4l_models.predictions import TRIAL_PREDICTIONS
from s4l_models.run import train
from s4l_models.trainer import finished_result
from tune.results import RAY_SUBDIR
from tune.storage import RemoteSweep, fetch_splits

ENCODED_PREFIX = "json:"
# The test-only stand-in trainer (the sweep's hidden --stand-in-trainer N, for the machinery's
# tests and benchmarks) is test code, not installed: it lives in a source checkout's tests/ and
# is loaded from there by file path (driver and workers are on one file system).
STAND_IN_FILE = Path(__file__).resolve().parents[1] / "tests" / "stand_in.py"


def encode_value(value: Any) -> Any:
    """Axis values Ray and Optuna can carry: scalars as they are, others as a JSON string."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return ENCODED_PREFIX + json.dumps(list(value) if isinstance(value, tuple) else value)


def decode_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(ENCODED_PREFIX):
        return json.loads(value[len(ENCODED_PREFIX):])
    return value


def decode_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: decode_value(v) for k, v in config.items()}


def resolve_config(config: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """The trial's full settings: fixed settings, its axis values, then the driver's settings."""
    return {**setup["fixed"], **decode_config(config), **setup["runtime"]}


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalars only (Ray flattens and logs them); NaN for missing floats keeps columns typed."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
    return out


def drop_reported_state(checkpoint_dir: Path) -> None:
    """After `tune.report` copied a checkpoint into the trial's storage (the copy every resume
    reads), drop the trainer's own state.pt: it writes a fresh one at its next evaluation, so
    one copy stays on disk, not two. The rest of the directory stays: a multi-stage method keeps
    its pipeline state, starting weights and pseudo-labels there, and every later checkpoint
    must carry them."""
    (checkpoint_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


# A trainer's files a restarted trial of a sweep on an object store takes back from the store.
TRIAL_FILES = ("config.json", "progress.jsonl", "train.log", "metrics.json", TRIAL_PREDICTIONS)


def working_directory(context) -> Path:
    """The trial's working directory, the folder Ray uploads as its artifacts
    (`StorageContext.trial_working_directory`; Ray also makes it the process's working
    directory, the fallback where the storage context is not exposed)."""
    storage = getattr(context, "get_storage", None)
    try:
        return Path(storage().trial_working_directory) if storage else Path.cwd()
    except Exception:  # noqa: BLE001 - another Ray: the working directory Ray set
        return Path.cwd()


def trial_dirname(trial) -> str:
    """Ray's directory of a trial: its id (our trainer directory is trials/<id>)."""
    return trial.trial_id


# Object references of shared datasets this worker process has already adopted.
_ADOPTED: set[str] = set()


def adopt_shared_dataset(cfg: TrainConfig, ref) -> None:
    """Fetch the driver's in-memory dataset once per worker process and serve it to the trainer."""
    if ref.hex() not in _ADOPTED:
        import ray

        adopt_dataset(cfg.dataset, cfg.data_dir, ray.get(ref))
        _ADOPTED.add(ref.hex())


def run_trial(config: dict[str, Any], setup: dict[str, Any], data=None) -> None:
    """Ray Tune function trainable (wrap with `tune.with_parameters(run_trial, setup=...)`).

    `data`: None, or a one-item list holding the object reference of the sweep's in-memory
    dataset as the driver loaded it; the trainer then uses it instead of reading the files.
    """
    # Ray is imported here, in the worker, not with the module: the sweep command imports this
    # module (through tune/memory_plan.py) before it sets Ray's environment (its loopback
    # address, its token authentication), which Ray reads when it is first imported.
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    # Test-only fault injection (run_sweep --fail-at-step): a trial that starts fresh dies like
    # a killed process at its first evaluation at or after that step, before reporting it; a
    # trial restarted from a checkpoint runs normally.
    checkpoint = tune.get_checkpoint()
    crash_at = setup.get("fail_at_step") if checkpoint is None else None
    values = resolve_config(config, setup)
    checkpoint_dir = None  # the trainer's default, out_dir/checkpoint
    if setup.get("remote_uri"):
        # A sweep on an object store (tune/storage.py): the trainer writes into the trial's
        # working directory, which the trial itself uploads to the store (SyncConfig
        # sync_artifacts, tune/runner.py) from whichever node runs it, at every checkpoint and
        # at its end. (Not get_trial_dir(): that is the driver's staging folder for a fresh
        # worker but the working directory for a reused one, and the driver uploads only its
        # own staging folder, so the files of trials on reused workers or other nodes never
        # reached the store.) The live checkpoint is written outside it: Ray uploads it as the
        # trial's checkpoint, and inside it would be uploaded twice and deleted under the upload.
        # The shared splits come from the store, once per node.
        key = hashlib.sha1(setup["remote_uri"].encode()).hexdigest()[:12]
        out_dir = working_directory(tune.get_context()) / "trainer"
        checkpoint_dir = Path(tempfile.gettempdir()) / "s4l-tune-checkpoints" / key / trial_id
        cache = Path(tempfile.gettempdir()) / "s4l-tune-splits" / key
        values["splits_path"] = str(fetch_splits(setup["remote_uri"], cache))
        if checkpoint is not None and not out_dir.is_dir():
            # a trial restarted in a fresh working directory (another node, a new Ray session):
            # its files from the store first, so that its log and progress go on from them and
            # a trial that had completed re-reports its result instead of training again (a
            # trial that never reported a checkpoint has uploaded nothing: no store round trips)
            RemoteSweep(f"{setup['remote_uri']}/{RAY_SUBDIR}/{trial_id}/trainer", out_dir).pull(
                *TRIAL_FILES)
    else:
        out_dir = Path(setup["trials_dir"]) / str(trial_id)
    cfg = TrainConfig.from_dict(values)
    log_path = out_dir / "train.log"

    def log(line: str) -> None:
        with open(log_path, "a") as f:
            f.write(line + "\n")

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if crash_at is not None and int(metrics.get("step", -1)) >= crash_at:
            os._exit(17)
        metrics = _clean(metrics)
        metric = setup.get("metric")
        if metric and not isinstance(metrics.get(metric), (int, float)):
            metrics[metric] = math.nan  # e.g. a run that diverged before its first evaluation
        has_ckpt = checkpoint_dir is not None and (Path(checkpoint_dir) / CHECKPOINT_FILE).is_file()
        ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir)) if has_ckpt else None
        tune.report(metrics, checkpoint=ckpt)
        if has_ckpt:
            drop_reported_state(Path(checkpoint_dir))

    if setup.get("stand_in"):
        # test-only (bench/grid_scale.py, bench/chaos.py): no training, a few instant reports
        # (tests/stand_in.py); one that already completed re-reports its final evaluation, as
        # finished_result below makes real trials do
        _stand_in().run_stand_in(
            cfg, int(setup["stand_in"]), report, Path(setup["trials_dir"]), trial_id
        )
        return
    done = finished_result(out_dir)
    if done is not None:
        # Finished before the driver was killed (Ray's saved state predates it): report the
        # final evaluation again instead of training again.
        log("already finished (metrics.json): reporting its final evaluation, not training again")
        report(done, None)
        return
    if data:
        adopt_shared_dataset(cfg, data[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    # a checkpoint PBT re-targets goes beside the live one (outside the uploaded folder)
    scratch = (checkpoint_dir.parent / f"{trial_id}-pbt" if checkpoint_dir is not None
               else out_dir)
    try:
        if checkpoint is None:
            train(cfg, out_dir, report=report, log=log, checkpoint_dir=checkpoint_dir)
            return
        # On local or shared storage the checkpoint is read in place; the trainer reads it once
        # at the start, so Ray may later delete it (CheckpointConfig.num_to_keep).
        with checkpoint.as_directory() as ckpt_dir:
            resume_from = retarget(Path(ckpt_dir), cfg, scratch,
                                   tuple(setup.get("mutable", ())))
            log(f"resuming from {ckpt_dir}")
            train(cfg, out_dir, report=report, resume_from=resume_from, log=log,
                  checkpoint_dir=checkpoint_dir)
    finally:
        shutil.rmtree(scratch / RETARGETED_DIR, ignore_errors=True)
        if checkpoint_dir is not None:  # reported to the store already
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


_STAND_IN = []  # the loaded stand-in module, once per worker process


def _stand_in():
    if not _STAND_IN:
        spec = importlib.util.spec_from_file_location("s4l_stand_in", STAND_IN_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _STAND_IN.append(module)
    return _STAND_IN[0]


__all__ = ["run_trial", "trial_dirname", "encode_value", "decode_value", "decode_config", "resolve_config"]
