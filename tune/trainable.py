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

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from s4l_models.config import TrainConfig, resume_differences
from s4l_models.errors import UserError
from s4l_models.io import atomic_write
from tune.stand_in import run_stand_in

ENCODED_PREFIX = "json:"


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


def _adapt_checkpoint(src: Path, cfg: TrainConfig, out_dir: Path, mutable: tuple[str, ...]) -> Path:
    """Return a checkpoint the trainer accepts for `cfg`.

    A checkpoint of this trial is used as it is. One made with other values of PBT's mutable
    hyperparameters (PBT exploited another trial) is copied with those values replaced: the
    optimiser's weight decay and momentum, the schedule's peak learning rate (lr x batch / 256).
    """
    import torch

    from s4l_models.trainer import CHECKPOINT_FILE

    path = src / CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"the checkpoint {src} holds no {CHECKPOINT_FILE}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved, now = payload["config"], cfg.to_dict()
    diff = resume_differences(saved, now)
    if not diff:
        return src
    if not set(diff) <= set(mutable):
        return src  # the trainer refuses it with a message naming the settings
    peak = cfg.lr * cfg.batch_size / 256.0
    for group in payload["optimizer"]["param_groups"]:
        factor = group["lr"] / group["initial_lr"] if group.get("initial_lr") else 1.0
        group["initial_lr"] = peak
        group["lr"] = peak * factor
        if group.get("decay", True):  # the kernels' group; biases and BN never decay
            group["weight_decay"] = cfg.wd
        group["momentum"] = cfg.momentum
    sched = payload["scheduler"]
    if "base_lrs" in sched:
        sched["base_lrs"] = [peak for _ in sched["base_lrs"]]
    if "_last_lr" in sched:
        sched["_last_lr"] = [g["lr"] for g in payload["optimizer"]["param_groups"]]
    payload["config"] = {**saved, **{k: now[k] for k in diff}}
    dst = out_dir / "pbt_checkpoint"
    atomic_write(dst / CHECKPOINT_FILE, lambda tmp: torch.save(payload, tmp))
    return dst


def drop_reported_state(checkpoint_dir: Path) -> None:
    """After `tune.report` copied a checkpoint into the trial's storage (the copy every resume
    reads), drop the trainer's own state.pt: it writes a fresh one at its next evaluation, so
    one copy stays on disk, not two. The rest of the directory stays: a multi-stage method keeps
    its pipeline state, starting weights and pseudo-labels there, and every later checkpoint
    must carry them."""
    from s4l_models.trainer import CHECKPOINT_FILE

    (checkpoint_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


def trial_dirname(trial) -> str:
    """Ray's directory of a trial: its id (our trainer directory is trials/<id>)."""
    return trial.trial_id


# Object references of shared datasets this worker process has already adopted.
_ADOPTED: set[str] = set()


def adopt_shared_dataset(cfg: TrainConfig, ref) -> None:
    """Fetch the driver's in-memory dataset once per worker process and serve it to the trainer."""
    import ray

    from s4l_models.data.datasets import adopt_dataset

    if ref.hex() not in _ADOPTED:
        adopt_dataset(cfg.dataset, cfg.data_dir, ray.get(ref))
        _ADOPTED.add(ref.hex())


def run_trial(config: dict[str, Any], setup: dict[str, Any], data=None) -> None:
    """Ray Tune function trainable (wrap with `tune.with_parameters(run_trial, setup=...)`).

    `data`: None, or a one-item list holding the object reference of the sweep's in-memory
    dataset as the driver loaded it; the trainer then uses it instead of reading the files.
    """
    from ray import tune

    from s4l_models.trainer import CHECKPOINT_FILE, finished_result, train

    trial_id = tune.get_context().get_trial_id()
    # Test-only fault injection (run_sweep --fail-at-step): a trial that starts fresh dies like
    # a killed process at its first evaluation at or after that step, before reporting it; a
    # trial restarted from a checkpoint runs normally.
    crash_at = setup.get("fail_at_step") if tune.get_checkpoint() is None else None
    out_dir = Path(setup["trials_dir"]) / str(trial_id)
    cfg = TrainConfig.from_dict(resolve_config(config, setup))
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
        # (tune/stand_in.py); one that already completed re-reports its final evaluation, as
        # finished_result below makes real trials do
        run_stand_in(cfg, int(setup["stand_in"]), report, Path(setup["trials_dir"]), trial_id)
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
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        train(cfg, out_dir, report=report, log=log)
        return
    # On local or shared storage the checkpoint is read in place; the trainer reads it once at
    # the start, so Ray may later delete it (CheckpointConfig.num_to_keep).
    with checkpoint.as_directory() as ckpt_dir:
        resume_from = _adapt_checkpoint(Path(ckpt_dir), cfg, out_dir, tuple(setup.get("mutable", ())))
        log(f"resuming from {ckpt_dir}")
        train(cfg, out_dir, report=report, resume_from=resume_from, log=log)
    shutil.rmtree(out_dir / "pbt_checkpoint", ignore_errors=True)


__all__ = ["run_trial", "trial_dirname", "encode_value", "decode_value", "decode_config", "resolve_config"]
