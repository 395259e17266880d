"""A test-only stand-in for the trainer: a trial that reports a few epochs instantly.

Not a user feature. It exists to measure and test the sweep machinery itself (Ray Tune, our
callback, the results table) at the scale of the paper's grids, where real training would hide
it: `bench/grid_scale.py` runs the whole 8,640-point `baseline_1pct` grid through
`tune/run_sweep.py` with the hidden flag `--stand-in-trainer N`, which makes every trial call
`run_stand_in` instead of `s4l_models.trainer.train`. It is not installed: the sweep loads this
file by its path in a source checkout (`tune.trainable.STAND_IN_FILE`).

A stand-in trial reports N evaluations with no checkpoint. Its only files: one line
`<start time> <trial id>` in `<sweep>/trials/stand_in_started.txt` when it starts, and after
its last report a small completion marker `<sweep>/trials/<trial_id>/stand_in_done.json`
(written atomically, like the real trainer's metrics.json). A stand-in trial that Ray starts
again after its marker was written (a driver killed before Ray saved the trial as finished, a
worker killed after the last report) re-reports its final evaluation from the marker and does
not run again, as `s4l_models.trainer.finished_result` makes real trials do; it appends
`<time> <trial id>` to `<sweep>/trials/stand_in_rereported.txt` instead of a start line
(bench/chaos.py checks with these files that no completed trial runs again). Its scores are a smooth,
deterministic function of the configuration (best near lr 0.1 and wd 1e-3, better with more
epochs) plus seeded per-trial noise, and they rise with the evaluation number, so schedulers
(ASHA, HyperBand) and the analysis see a plausible landscape. The tiny-subset scores are the
full score plus more noise, as with real 1- and 5-image-per-class subsets.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s4l_models.config import TrainConfig
from s4l_models.io import atomic_write_text

# Where a trial's files are, not what it trains: left out of its noise, so that the same
# configuration scores the same in any sweep directory (bench/chaos.py compares two sweeps).
_NOT_CONFIGURATION = ("splits_path", "data_dir")


def _noise(cfg: TrainConfig) -> np.random.Generator:
    values = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_CONFIGURATION}
    key = json.dumps(values, sort_keys=True, default=str).encode()
    return np.random.default_rng(zlib.crc32(key))


def stand_in_metrics(cfg: TrainConfig, evaluation: int, evaluations: int) -> dict[str, Any]:
    """The metrics of evaluation `evaluation` (1-based) of `evaluations` for `cfg`."""
    rng = _noise(cfg)
    quality = (
        0.9
        - 0.08 * (math.log10(cfg.lr) + 1.0) ** 2
        - 0.04 * (math.log10(max(cfg.wd, 1e-8)) + 3.0) ** 2
        - 0.1 / math.sqrt(max(cfg.epochs, 1.0))
    )
    progress = evaluation / evaluations
    full = float(np.clip(quality * (0.5 + 0.5 * progress) + rng.normal(0, 0.01), 0.0, 1.0))
    metrics: dict[str, Any] = {}
    for k, sd in ((k, 0.15 / math.sqrt(k)) for k in cfg.tiny_k):
        top1 = float(np.clip(full + rng.normal(0, sd), 0.0, 1.0))
        metrics[f"val_{k}pc_top1"] = top1
        metrics[f"val_{k}pc_top5"] = float(min(1.0, top1 + 0.08))
    metrics.update(
        val_full_top1=full,
        val_full_top5=float(min(1.0, full + 0.08)),
        test_top1=float(np.clip(full + rng.normal(0, 0.01), 0.0, 1.0)),
        test_top5=float(min(1.0, full + 0.08)),
        epoch=cfg.epochs * progress,
        step=evaluation,
        total_steps=evaluations,
        train_seconds=0.0,
        status="completed" if evaluation == evaluations else "running",
    )
    return metrics


STARTED_LOG = "stand_in_started.txt"  # in <sweep>/trials/: "<start time> <trial id>" lines
REREPORTED_LOG = "stand_in_rereported.txt"  # same, for trials answered from their marker
DONE_FILE = "stand_in_done.json"  # in <sweep>/trials/<trial id>/: the completion marker


def _append_line(path: Path, trial_id: str | None) -> None:
    """One `<time> <trial id>` line, in one small O_APPEND write (whole lines even from
    concurrent trials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"{time.time():.3f} {trial_id or '-'}\n")


def read_time_log(path: Path) -> list[tuple[float, str]]:
    """The (time, trial id) lines of a start or re-report log (a line of the older format,
    a time alone, gets the id '-')."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if parts:
            out.append((float(parts[0]), parts[1] if len(parts) > 1 else "-"))
    return out


def stand_in_finished(out_dir: str | Path) -> dict[str, Any] | None:
    """The final evaluation a stand-in trial recorded in `out_dir` when it completed, else
    None (no marker, or an unreadable one: it is written atomically, so only a missing one)."""
    try:
        doc = json.loads((Path(out_dir) / DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    final = doc.get("final") if isinstance(doc, dict) else None
    if doc.get("status") != "completed" or not isinstance(final, dict):
        return None
    return final


def stand_in_trial(
    cfg: TrainConfig,
    evaluations: int,
    report: Callable[[dict[str, Any], None], None],
    started_log: Path | None = None,
    trial_id: str | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Report `evaluations` results at once (no checkpoints); returns the last.

    With `started_log`, first appends `<wall-clock start time> <trial_id>` as one line: the
    benchmarks' trial clock. With `out_dir`, writes the completion marker there after the last
    report (`stand_in_finished` reads it).
    """
    if started_log is not None:
        _append_line(Path(started_log), trial_id)
    metrics: dict[str, Any] = {}
    for i in range(1, evaluations + 1):
        metrics = stand_in_metrics(cfg, i, evaluations)
        report(dict(metrics), None)
    if out_dir is not None:
        doc = {"status": "completed", "trial_id": trial_id, "completed_at": time.time(),
               "final": metrics}
        atomic_write_text(Path(out_dir) / DONE_FILE, json.dumps(doc))
    return metrics


def run_stand_in(
    cfg: TrainConfig,
    evaluations: int,
    report: Callable[[dict[str, Any], None], None],
    trials_dir: Path,
    trial_id: str,
) -> dict[str, Any]:
    """A stand-in trial as the sweep's trainable runs it: one that already completed (its
    marker is there) re-reports its final evaluation without running again; any other runs."""
    trials_dir = Path(trials_dir)
    out_dir = trials_dir / str(trial_id)
    done = stand_in_finished(out_dir)
    if done is not None:
        _append_line(trials_dir / REREPORTED_LOG, trial_id)
        report(dict(done), None)
        return done
    return stand_in_trial(cfg, evaluations, report, started_log=trials_dir / STARTED_LOG,
                          trial_id=trial_id, out_dir=out_dir)


__all__ = [
    "DONE_FILE", "REREPORTED_LOG", "STARTED_LOG", "read_time_log", "run_stand_in",
    "stand_in_finished", "stand_in_metrics", "stand_in_trial",
]
