"""The checkpoint format and when a checkpoint may be resumed.

A run's checkpoint is `<run>/checkpoint/state.pt` (CHECKPOINT_DIR / CHECKPOINT_FILE): one
`torch.save` dict with the model and head weights, optimiser and schedule state, step, RNG
states, the run's config (`TrainConfig.to_dict()`), its evaluation history and, with Polyak
averaging, the average; a multi-stage method adds its stage and keeps its pipeline files
beside it (`s4l_models.stages`). Checkpoints are data, never code: every read is
`weights_only`.

A checkpoint resumes a run whose settings are equal except those in `RESUME_FREE`
(`resume_differences`; the trainer, the multi-stage pipeline and the sweep all use this one
check). The one exception is PBT: `retarget` copies another trial's checkpoint with PBT's
mutated hyperparameters put into its optimiser and schedule.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RESUME_FREE, TrainConfig
from .errors import UserError, first_line
from .io import atomic_write

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
RETARGETED_DIR = "pbt_checkpoint"  # in the trial's directory: a checkpoint PBT re-targeted


def resume_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Settings (sorted) in which a checkpoint's config differs from the run resuming it,
    leaving out `RESUME_FREE`: a resume is compatible when this is empty."""
    return sorted(k for k in now if k not in RESUME_FREE and saved.get(k) != now[k])


def check_resumable(saved: dict[str, Any], now: dict[str, Any], where: str | os.PathLike) -> None:
    """Refuse (a UserError naming the settings) a checkpoint made with other settings."""
    diff = resume_differences(saved, now)
    if diff:
        raise UserError(
            f"the checkpoint in {where} was made with other settings ({', '.join(diff)}); "
            "resume with the same settings or use another --out"
        )


def read_state(path: str | os.PathLike, device: torch.device | str = "cpu", **kw) -> dict:
    """The saved dict of a state.pt (weights only: a checkpoint is data, never code); a
    truncated or damaged file is a one-line UserError, not torch's traceback."""
    try:
        return torch.load(path, map_location=device, weights_only=True, **kw)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        raise UserError(f"the checkpoint {path} is unreadable ({first_line(err)[:120]}): it "
                        "was cut short or damaged; start afresh with another --out") from None


def write_state(directory: Path, payload: dict) -> Path:
    """Write `payload` as `directory`/state.pt atomically; returns the directory."""
    atomic_write(directory / CHECKPOINT_FILE, lambda tmp: torch.save(payload, tmp))
    return directory


def checkpoint_file(path: str | os.PathLike) -> Path:
    """state.pt of a run directory, a checkpoint directory or the file itself."""
    p = Path(path)
    for candidate in (p / CHECKPOINT_DIR / CHECKPOINT_FILE, p / CHECKPOINT_FILE, p):
        if candidate.is_file():
            return candidate
    raise UserError(f"no checkpoint at {p} (expected a run directory, checkpoint/ or a .pt file)")


def load_weights(path: str | os.PathLike, device: torch.device) -> dict[str, Any]:
    """{'model', 'heads', 'config'} of a checkpoint; the Polyak average when it holds one."""
    payload = read_state(checkpoint_file(path), device)
    if "model" not in payload:
        raise UserError(f"{path} is not a checkpoint of s4l-train (it has no model weights)")
    if payload.get("polyak"):
        avg = payload["polyak"]
        model = {k[len("model.") :]: v for k, v in avg.items() if k.startswith("model.")}
        heads = {k[len("heads.") :]: v for k, v in avg.items() if k.startswith("heads.")}
    else:
        model, heads = payload["model"], payload.get("heads", {})
    return {"model": model, "heads": heads, "config": payload.get("config")}


def load_matching(module: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load the entries whose name and shape match; returns the names left at their init."""
    own = module.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def retarget(src: Path, cfg: TrainConfig, out_dir: Path, mutable: tuple[str, ...]) -> Path:
    """Return a checkpoint the trainer accepts for `cfg`.

    A checkpoint of this trial is used as it is. One made with other values of PBT's mutable
    hyperparameters (PBT exploited another trial) is copied into `out_dir`/RETARGETED_DIR with
    those values replaced: the optimiser's weight decay and momentum, the schedule's peak
    learning rate (lr x batch / 256). Other differences are left for the trainer to refuse.
    """
    path = src / CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"the checkpoint {src} holds no {CHECKPOINT_FILE}")
    payload = read_state(path)
    saved, now = payload["config"], cfg.to_dict()
    diff = resume_differences(saved, now)
    if not diff or not set(diff) <= set(mutable):
        return src
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
    return write_state(out_dir / RETARGETED_DIR, payload)


__all__ = [
    "CHECKPOINT_DIR", "CHECKPOINT_FILE", "RETARGETED_DIR", "check_resumable", "checkpoint_file",
    "load_matching", "load_weights", "read_state", "resume_differences", "retarget",
    "write_state",
]
