"""`s4l-sweep` / `python tune/run_sweep.py`: run one of the paper's search spaces on Ray Tune.

    python tune/run_sweep.py --space baseline_1pct            # the README's main command
    python tune/run_sweep.py --list                           # every space, size, description
    python tune/run_sweep.py --space baseline_10pct --dry-run # axes, trials, compute estimate
    python tune/run_sweep.py --space baseline_10pct --dataset cifar10 --data-dir DATA \\
        --search optuna --max-trials 64 --scheduler asha --gpus-per-trial 0.25
    python tune/run_sweep.py --resume runs/NAME               # continue an interrupted sweep

The paper's values are first mapped onto the dataset (`--protocol scaled`, the default: the
paper's labeled images per class and batch sizes giving >= 200 optimizer steps per trial;
search_spaces/protocol.py); the first output line says what changed and why, and
configurations too short to mean anything are named before anything runs.

On the embedded `digits` dataset with no `--max-trials` it runs a seeded subset of 24 grid
points in which every value of every axis appears except values with no configuration within
the 200-s per-trial budget, which are named (cheap points preferred, the longest trials started
first): the main command took 381 s on 2 idle CPU cores (2 trials at a time;
bench/main_command.py). A smaller `--max-trials N` on digits picks the N cheapest-weighted
points (a smoke run); any other dataset runs the whole grid, or with `--max-trials N` a seeded
subset covering every axis value. `--search random|optuna` draw N trials from the same axes;
`--set KEY=VALUE` overrides a fixed setting or pins an axis (and is never adapted).

Writes `<storage>/<name>/`: `ray/` (Ray Tune's experiment files: `tuner.pkl`, experiment state,
per-trial checkpoints and error.txt), `space.json` (the resolved space, every flag and the protocol's changes), `splits.npz`/`splits.json` (the labeled
subset and validation subsets every trial uses, written once before trials start),
`trials/<trial_id>/` (each trial's trainer directory: config, progress, metrics, per-example
predictions), `results.parquet` + `results.csv` (one row per trial, rewritten atomically as
trials finish; columns in `tune/results.py`) and `predictions.npz` (per-example correctness of
every completed trial). Ray keeps one checkpoint per running trial; a finished trial's is removed
as it finishes unless it is the best completed one so far (tune/checkpoints.py;
`--keep-checkpoints` keeps all). Prints one progress line while
running and, at the end, the best configuration by `--metric`, the result paths and the report
(`s4l-report`, into `<storage>/<name>/report/`; `--no-report` skips it).

Built on Ray Tune: `tune.Tuner` with a function trainable (`tune/trainable.py`) that reports
every evaluation with a checkpoint and resumes from `tune.get_checkpoint()`; `tune.grid_search`
for the grid (a seeded subset runs as `points_to_evaluate`); `OptunaSearch` with a
`ConcurrencyLimiter` for TPE; Ray's ASHA / HyperBand / PBT schedulers; `tune.with_resources` for
CPU/GPU shares (torch threads per trial = CPUs per trial); `FailureConfig(max_failures=...)`
retries a crashed trial from its last checkpoint; `Tuner.restore` for `--resume`;
`ray.init(address=...)` for clusters. A locally started Ray binds to 127.0.0.1 with the
dashboard off unless `--dashboard`. Bad input exits with status 2 and one line; the exit status
is 0 when the sweep ran, even if some trials failed (their number is printed, with the
`--resume DIR --retry-errored` command that reruns only them), 130 when interrupted (resume it
with --resume), 2 when the disk is full (the previous files stay; --resume once there is space).
`--resume` of a finished sweep prints its summary and changes nothing.

`--reseed-top K --seeds S` adds seed repeats after the search: the K best configurations are
trained again until each has S seeds, as trials of a second Ray Tune experiment in
`<sweep>/ray-reseed/` (tune/reseed.py; `<sweep>/reseed.json` records the finalists), resumable
like the search; `--resume DIR --reseed-top K` adds them to a finished sweep. Their rows join
the results table (`config_id` ties a configuration's seeds together) and the report separates
seed noise from differences between configurations.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    # `python tune/run_sweep.py` puts tune/ first on sys.path, where its modules would shadow
    # libraries; run from the project root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from s4l_models.errors import (  # noqa: E402
    ArgumentParser,
    DiskFullError,
    UserError,
    exit_on_user_error,
)
from tune.results import SPACE_JSON, TRIALS_DIR  # noqa: E402  (the sweep directory's files)

# Ray Tune's own files (experiment state, tuner.pkl, per-trial checkpoints, error.txt) live in
# this subfolder of the sweep directory; ours (space.json, splits, trials/, results.*) beside it.
RAY_SUBDIR = "ray"
# Flags that may change when a sweep is resumed; every other flag defines the sweep.
RESUME_FREE_FLAGS = (
    "address", "dashboard", "storage", "name", "resume", "quiet", "report", "keep_checkpoints",
    "retry_errored", "reseed_top", "seeds",
)
# Flags that add seed repeats after the search (tune/reseed.py): given on --resume they add the
# repeats to a finished sweep; not given, the sweep keeps the ones it was started with.
RESEED_FLAGS = ("reseed_top", "seeds")
DEFAULTS: dict[str, Any] = {
    "space": None,
    "dataset": "digits",
    "data_dir": None,
    "labels": None,
    "search": "grid",
    "max_trials": None,
    "scheduler": "fifo",
    "metric": "val_full_top1",
    "cpus_per_trial": 1.0,
    "gpus_per_trial": 0.0,
    "concurrency": None,
    "address": None,
    "storage": "./runs",
    "name": None,
    "set": [],
    "seed": 0,
    "max_failures": 2,
    "protocol": "scaled",
    "reseed_top": 0,
    "seeds": 3,
    "stand_in_trainer": None,  # test-only: see --stand-in-trainer
    "fail_at_step": None,  # test-only: see --fail-at-step
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="s4l-sweep",
        description="Run a search space of the S4L paper on Ray Tune and write a results table.",
    )
    a = p.add_argument
    a("--space", help="search space name (--list shows them)")
    a("--list", action="store_true", help="print every space with its size and description")
    a("--dry-run", action="store_true", help="print the plan (axes, trials, compute) and exit")
    a("--dataset", help="digits (default, embedded) | fashion_mnist | cifar10 | cifar100 | imagenet")
    a("--data-dir", help="folder with the dataset's files")
    a("--labels", help="override the space's labeled fraction, e.g. 10%% or 13/class")
    a("--protocol", choices=("scaled", "literal"),
      help="scaled (default): the paper's labels per class and >= 200 optimizer steps per "
      "trial on any dataset (search_spaces/protocol.py); literal: the paper's values as they are")
    a("--search", choices=("grid", "random", "optuna"), help="search algorithm (default grid)")
    a("--max-trials", help="number of trials, or 'all' (default: 24 on digits, else all)")
    a("--scheduler", choices=("fifo", "asha", "hyperband", "pbt"), help="trial scheduler (default fifo)")
    a("--metric", help="metric to maximise (default val_full_top1; e.g. val_1pc_top1)")
    a("--cpus-per-trial", type=float, help="CPUs (= torch threads) per trial (default 1)")
    a("--gpus-per-trial", type=float, help="GPUs per trial; 0.25 packs 4 trials a GPU (default 0)")
    a("--concurrency", type=int, help="trials at a time (default: CPUs / cpus-per-trial)")
    a("--address", help="connect to a running Ray cluster (e.g. auto or HOST:PORT)")
    a("--dashboard", action="store_true", help="start Ray's dashboard (on 127.0.0.1)")
    a("--storage", help="where sweeps are written (default ./runs)")
    a("--name", help="sweep name (default <space>-<dataset>-<time>)")
    a("--resume", nargs="?", const="", metavar="SWEEP_DIR",
      help="continue an interrupted sweep: SWEEP_DIR, or <storage>/<name>; a finished sweep "
      "is left as it is")
    a("--retry-errored", action="store_true",
      help="with --resume: also rerun the errored trials (from their last checkpoint)")
    a("--set", action="append", metavar="KEY=VALUE",
      help="override a trainer setting (repeatable); on an axis it pins the axis, e.g. epochs=2")
    a("--seed", type=int, help="seed of the trial subset and of random/Optuna sampling (default 0)")
    a("--max-failures", type=int, help="retries of a crashed trial from its checkpoint (default 2)")
    a("--reseed-top", type=int, metavar="K",
      help="after the search, train the K best configurations again with more seeds (until "
      "each has --seeds), as Ray trials of the same sweep; the report then separates seed noise "
      "from configuration differences (default 0: no repeats)")
    a("--seeds", type=int, metavar="S",
      help="with --reseed-top: seeds per finalist, the search's own run included (default 3)")
    a("--keep-checkpoints", action="store_true",
      help="keep every trial's final checkpoint (default: only the best trial's)")
    a("--no-report", dest="report", action="store_false", help="skip the analysis report")
    a("--quiet", action="store_true", help="no progress line")
    # Test-only, not a user feature (hidden from --help): every trial reports N evaluations at
    # once without training (tune/stand_in.py); bench/grid_scale.py measures the sweep machinery
    # on the whole 8,640-point grid with it.
    a("--stand-in-trainer", type=int, metavar="N", help=argparse.SUPPRESS)
    # Test-only fault injection (hidden): a trial that starts without a checkpoint exits its
    # process like a killed one when it reaches its first evaluation at or after step N
    # (tune/trainable.py), so crash recovery is tested on real trials.
    a("--fail-at-step", type=int, metavar="N", help=argparse.SUPPRESS)
    return p


# --- flags -------------------------------------------------------------------------------------
def resolve_flags(args: argparse.Namespace) -> tuple[dict[str, Any], set[str]]:
    given = {k for k, v in vars(args).items() if k in DEFAULTS and v is not None}
    flags = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in DEFAULTS.items()}
    flags["set"] = list(flags["set"] or [])
    return flags, given


def check_flags(flags: dict[str, Any]) -> None:
    if flags["cpus_per_trial"] is not None and not flags["cpus_per_trial"] > 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {flags['cpus_per_trial']:g}")
    if not flags["gpus_per_trial"] >= 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {flags['gpus_per_trial']:g}")
    if flags["gpus_per_trial"] > 1 and not float(flags["gpus_per_trial"]).is_integer():
        raise UserError("--gpus-per-trial above 1 must be a whole number of GPUs")
    if flags["concurrency"] is not None and flags["concurrency"] < 1:
        raise UserError(f"--concurrency must be at least 1, got {flags['concurrency']}")
    if flags["scheduler"] == "pbt" and flags["search"] == "optuna":
        raise UserError(
            "--scheduler pbt chooses new configurations itself and cannot be combined with "
            "--search optuna; use --search grid or random with pbt"
        )
    if flags["stand_in_trainer"] is not None and flags["stand_in_trainer"] < 1:
        raise UserError(f"--stand-in-trainer must be at least 1, got {flags['stand_in_trainer']}")
    if flags["reseed_top"] < 0:
        raise UserError(f"--reseed-top must be >= 0, got {flags['reseed_top']}")
    if flags["reseed_top"] and flags["seeds"] < 2:
        raise UserError(f"--seeds must be at least 2 to repeat a configuration, got {flags['seeds']}")
    if flags["reseed_top"] and flags["scheduler"] == "pbt":
        raise UserError(
            "--reseed-top repeats fixed configurations, but --scheduler pbt changes them during "
            "training; drop one of the two"
        )
    if flags.get("fail_at_step") is not None and flags["fail_at_step"] < 0:
        raise UserError(f"--fail-at-step must be >= 0, got {flags['fail_at_step']}")
    if flags["max_failures"] < 0:
        raise UserError(f"--max-failures must be >= 0, got {flags['max_failures']}")


def check_metric(metric: str, tiny_k) -> None:
    from tune.results import metric_keys

    keys = metric_keys(tiny_k)
    if metric not in keys:
        raise UserError(f"--metric {metric!r} is not a metric of the trainer; choose one of {', '.join(keys)}")


def sweep_dir_for(flags: dict[str, Any], resume: str | None) -> Path:
    if resume:
        return Path(resume).expanduser().resolve()
    return (Path(flags["storage"]).expanduser() / flags["name"]).resolve()


def ray_dir(sweep_dir: Path) -> Path:
    """Where Ray Tune's experiment lives: `<sweep>/ray/`, or the sweep directory itself for a
    sweep written before that subfolder existed (it still resumes)."""
    sweep_dir = Path(sweep_dir)
    if (sweep_dir / "tuner.pkl").is_file() and not (sweep_dir / RAY_SUBDIR).is_dir():
        return sweep_dir
    return sweep_dir / RAY_SUBDIR


def has_ray_experiment(sweep_dir: Path) -> bool:
    return (ray_dir(sweep_dir) / "tuner.pkl").is_file()


def load_resumed_flags(sweep_dir: Path, flags: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """The flags a sweep was started with; flags given now must agree with them."""
    from ray import tune

    space_json = sweep_dir / SPACE_JSON
    if (not sweep_dir.is_dir() or not space_json.is_file()
            or not tune.Tuner.can_restore(str(ray_dir(sweep_dir)))):
        raise UserError(
            f"--resume: {sweep_dir} holds no sweep to resume (no {SPACE_JSON} and Ray Tune "
            "experiment); check --storage/--name or start a new sweep without --resume"
        )
    saved = json.loads(space_json.read_text())["flags"]
    for key in sorted(given - set(RESUME_FREE_FLAGS)):
        now, before = flags[key], saved.get(key)
        if key == "set":
            same = sorted(now) == sorted(before or [])
        else:
            same = now == before or str(now) == str(before)
        if not same:
            raise UserError(
                f"--resume continues {sweep_dir.name} as it was started: --{key.replace('_', '-')} "
                f"was {before!r}, now {now!r}; drop the flag or start a new sweep with another --name"
            )
    out = {**saved, **{k: flags[k] for k in RESUME_FREE_FLAGS if k in flags}}
    for key in RESEED_FLAGS:  # kept from the start unless given now
        out[key] = flags[key] if key in given else saved.get(key, DEFAULTS[key])
    from tune.reseed import load_reseed

    doc = load_reseed(sweep_dir)
    if doc is not None and out["reseed_top"] and (
            (out["reseed_top"], out["seeds"]) != (doc["top"], doc["seeds"])):
        raise UserError(
            f"--resume: the seed repeats of {sweep_dir.name} were planned with --reseed-top "
            f"{doc['top']} --seeds {doc['seeds']}; drop the flags or start a new sweep"
        )
    return out


# --- Ray ---------------------------------------------------------------------------------------
def _probe(address: str) -> None:
    """Fail fast with one line when --address points nowhere (ray.init would wait a minute)."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(
            f"--address {address}: no Ray cluster reachable ({err.strerror or err}); start one "
            "with `ray start --head` or drop --address to run locally"
        ) from None


def start_ray(address: str | None, dashboard: bool) -> bool:
    """Connect to or start Ray; returns whether we started (and must stop) it."""
    import ray

    if address:
        _probe(address)
    if ray.is_initialized():
        return False  # a caller (e.g. a test) runs Ray already: use it
    common = dict(
        include_dashboard=dashboard, log_to_driver=False, logging_level=logging.WARNING,
        configure_logging=True,
    )
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"--address {address}: cannot connect to Ray ({first})") from None
        return True
    try:
        ray.init(dashboard_host="127.0.0.1", num_cpus=len(os.sched_getaffinity(0)), **common)
    except Exception as err:
        if dashboard and "dashboard" in str(err).lower():
            ray.shutdown()
            raise UserError(
                f"--dashboard: Ray cannot start its dashboard here ({err}); install "
                "'ray[default]' or drop --dashboard"
            ) from None
        raise
    return True


def _ray_running() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def visible_gpus_locally() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


# --- building the Tuner ------------------------------------------------------------------------
def build_search(plan, metric: str, concurrency: int, seed: int):
    """(param_space, search_alg, num_samples) for the plan's search."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from tune.trainable import encode_value

    axes = plan.space.axes
    choices = {a.key: tune.choice([encode_value(v) for v in a.values]) for a in axes}
    if plan.search == "grid" and plan.points is None:
        space = {a.key: tune.grid_search([encode_value(v) for v in a.values]) for a in axes}
        return space, None, 1
    if plan.search == "grid":
        # Longest first (when costs are known): the last trials to finish are short ones.
        ordered = sorted(plan.points, key=plan.cost, reverse=True) if plan.sizes else plan.points
        points = [{k: encode_value(v) for k, v in p.items()} for p in ordered]
        search_alg = BasicVariantGenerator(
            points_to_evaluate=points, random_state=seed, max_concurrent=concurrency
        )
        return choices, search_alg, len(points)
    if plan.search == "random" or not axes:
        search_alg = BasicVariantGenerator(random_state=seed, max_concurrent=concurrency)
        return choices, search_alg, plan.num_trials
    from ray.tune.search.optuna import OptunaSearch

    searcher = ConcurrencyLimiter(OptunaSearch(seed=seed), max_concurrent=concurrency)
    return choices, searcher, plan.num_trials


def build_scheduler(name: str, plan, max_t: int, seed: int):
    from ray.tune.schedulers import (
        ASHAScheduler,
        HyperBandScheduler,
        PopulationBasedTraining,
    )

    from tune.sweep_plan import PBT_MUTABLE
    from tune.trainable import encode_value

    if name == "fifo":
        return None
    if name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration", max_t=max(1, max_t), grace_period=1, reduction_factor=3
        )
    if name == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=max(1, max_t), reduction_factor=3
        )
    mutations = {
        a.key: [encode_value(v) for v in a.values]
        for a in plan.space.axes
        if a.key in PBT_MUTABLE and len(a.values) > 1
    }
    if not mutations:
        raise UserError(
            f"--scheduler pbt needs an axis it can change during training ({', '.join(PBT_MUTABLE)});"
            f" {plan.base_name} has none left: use asha or hyperband"
        )
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=max(1, max_t // 4),
        hyperparam_mutations=mutations,
        quantile_fraction=0.25,
    )


def max_reports(plan) -> int:
    """The most evaluations any planned trial reports (the schedulers' max_t)."""
    from tune.sweep_plan import _axis_probe_points, report_count

    points = plan.points if plan.points is not None else _axis_probe_points(plan.space)
    sizes = plan.sizes
    return max((report_count(plan.trial_config(p), sizes) for p in points), default=1)


# --- the sweep ---------------------------------------------------------------------------------
def prepare_data(plan, sweep_dir: Path):
    """Load the dataset and write the sweep's split files once (reused on --resume).

    Returns (sizes, tiny_k, data): `data` is the loaded dataset when it is held in memory (the
    trials get it through Ray's object store instead of reading the files again), else None.
    """
    from s4l_models.config import TrainConfig
    from s4l_models.data.datasets import DATASETS, load_dataset
    from s4l_models.data.splits import splits_for

    from tune.sweep_plan import Sizes

    cfg = TrainConfig.from_dict(plan.trial_config(plan.space.point_at(0)))
    spec = DATASETS[cfg.dataset]
    data = load_dataset(cfg.dataset, cfg.data_dir)
    splits = splits_for(
        sweep_dir, cfg.dataset, data.train.labels.numpy(), spec.num_classes,
        cfg.val_size or spec.default_val_size, cfg.labels, tuple(cfg.tiny_k), cfg.split_seed,
    )
    n_test = len(data.test) if data.test is not None else 0
    sizes = Sizes(
        labeled=len(splits.labeled), val=len(splits.val), test=n_test, train=len(splits.train)
    )
    return sizes, tuple(cfg.tiny_k), (data if spec.in_memory else None)


def write_space_json(sweep_dir: Path, plan, flags: dict[str, Any], metric: str) -> None:
    from s4l_models.io import atomic_write_text

    from tune.results import RESULTS_VERSION

    from tune.trainable import encode_value

    doc = {
        "space": plan.space.to_dict(),
        "axes": plan.axes,
        "flags": flags,
        "dataset": plan.dataset,
        "metric": metric,
        "mode": "max",
        "results_version": RESULTS_VERSION,  # tune/results.py owns the table's format
        "base_space": plan.base_name,
        "pinned": {k: encode_value(v) for k, v in plan.pinned.items()},
        "search": plan.search,
        "num_trials": plan.num_trials,
        "trials_note": plan.note,
        "points": (
            [{k: encode_value(v) for k, v in p.items()} for p in plan.points]
            if plan.points is not None else None
        ),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # how the paper's values were mapped onto this dataset (search_spaces/protocol.py)
        "protocol": plan.adaptation.to_dict() if plan.adaptation is not None else None,
        "dataset_facts": dataclasses.asdict(plan.facts) if plan.facts is not None else None,
        "short_configurations": {
            "count": plan.short[0], "of": plan.short[1], "reasons": plan.short[2],
            "rule": "fewer than 50 optimizer steps, or every step inside the warmup",
        },
    }
    atomic_write_text(sweep_dir / SPACE_JSON, json.dumps(doc, indent=2, default=str))


FINISHED_STATUSES = ("completed", "errored", "diverged", "stopped_early")


def sweep_state(sweep_dir: Path, planned: int) -> tuple[bool, int]:
    """(finished, errored) from the results table: finished when every planned trial has a row
    and none is still running. A sweep without a table has not finished."""
    from tune.results import RESULTS_PARQUET, read_table

    path = sweep_dir / RESULTS_PARQUET
    if not path.is_file():
        return False, 0
    status = read_table(path, columns=["status"])["status"]
    finished = len(status) >= planned and bool(status.isin(FINISHED_STATUSES).all())
    return finished, int((status == "errored").sum())


def retry_hint(sweep_dir: Path, n_errored: int) -> str:
    return (
        f"{n_errored} trial(s) errored; to rerun only those (from their last checkpoint): "
        f"python tune/run_sweep.py --resume {sweep_dir} --retry-errored"
    )


def summarize(sweep_dir: Path, metric: str, axes: list[str], planned: int | None = None
              ) -> tuple[str, int]:
    """Final lines: counts of every planned trial, the best completed configuration by the
    metric, the paths."""
    import pandas as pd

    from tune.results import RESULTS_CSV, RESULTS_PARQUET, SWEEP_PREDICTIONS, read_table

    df = read_table(sweep_dir / RESULTS_PARQUET)
    counts = df["status"].value_counts().to_dict()
    planned = max(int(planned or 0), len(df))
    if planned > len(df):
        counts["not started"] = planned - len(df)
    n_failed = int(counts.get("errored", 0))
    lines = [
        "trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f" (of {planned} planned)"
    ]
    if n_failed:
        lines.append(f"{n_failed} trial(s) failed: see the 'error' column of {sweep_dir / RESULTS_CSV}")
    n_short = int((df["status"] == "completed").sum() - meaningful(df).sum())
    if n_short:
        lines.append(
            f"{n_short} completed trial(s) were too short to mean anything (short_run: fewer "
            "than 50 optimizer steps or all inside the warmup); the best is chosen without them"
        )
    pool = df[meaningful(df)]
    if pool.empty:
        pool = df[df["status"] == "stopped_early"]
    pool = pool[pool[metric].notna()] if metric in pool else pool.iloc[0:0]
    def config_text(row) -> str:
        return ", ".join(f"{k}={row[k]:g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                         for k in axes)

    if not pool.empty:
        best = pool.loc[pool[metric].idxmax()]
        cfg = config_text(best)
        extra = f", val_full_top1 {best['val_full_top1']:.4f}" if metric != "val_full_top1" else ""
        test = f", test_top1 {best['test_top1']:.4f}" if pd.notna(best.get("test_top1")) else ""
        lines.append(
            f"best completed trial by {metric}: {best[metric]:.4f}{extra}{test} "
            f"(trial {best['trial_id']}" + (f": {cfg})" if cfg else ")")
        )
        if "config_id" in pool.columns:  # seed repeats: configurations by their seed mean
            agg = pool.groupby("config_id", sort=False)[metric].agg(["mean", "std", "count"])
            agg = agg[agg["count"] > 1].sort_values("mean", ascending=False, kind="stable")
            if not agg.empty:
                cid, r = agg.index[0], agg.iloc[0]
                first = pool[pool["config_id"] == cid].iloc[0]
                lines.append(
                    f"best configuration by its mean {metric} over seeds: {r['mean']:.4f} ± "
                    f"{r['std']:.4f} (std over {int(r['count'])} seeds; config {cid}: "
                    f"{config_text(first)})"
                )
    else:
        lines.append(f"no completed trial has a {metric} yet")
    running = df[(df["status"] == "running") & df[metric].notna()] if metric in df else df.iloc[0:0]
    if not running.empty and (pool.empty or running[metric].max() > pool[metric].max()):
        top = running.loc[running[metric].idxmax()]
        lines.append(
            f"(an unfinished trial, {top['trial_id']}, reached {top[metric]:.4f} at its last "
            "evaluation; not a final score)"
        )
    lines.append(f"results: {sweep_dir / RESULTS_PARQUET} and {sweep_dir / RESULTS_CSV}")
    if (sweep_dir / SWEEP_PREDICTIONS).is_file():
        lines.append(f"per-example predictions: {sweep_dir / SWEEP_PREDICTIONS}")
    return "\n".join(lines), int((df["status"] == "completed").sum())


def meaningful(df):
    """Completed trials that are not marked short_run (the ones a best may be chosen from)."""
    done = df["status"] == "completed"
    return done & ~df["short_run"].astype(bool) if "short_run" in df.columns else done


def prune_checkpoints(sweep_dir: Path, metric: str, keep_all: bool, freed: int = 0) -> str:
    """After a finished sweep, keep only the best trial's checkpoint (unless keep_all) and the
    errored trials' (--retry-errored resumes from them); `freed`: bytes the sweep's
    CheckpointPruner already removed as trials finished."""
    from tune.checkpoints import CHECKPOINT_GLOB, prune_finished
    from tune.results import RESULTS_PARQUET, read_table

    df = read_table(sweep_dir / RESULTS_PARQUET)
    pool = df[meaningful(df) & df[metric].notna()]
    best = str(pool.loc[pool[metric].idxmax(), "trial_id"]) if not pool.empty else None
    from tune.reseed import RAY_SUBDIR as RESEED_SUBDIR

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


def make_report(sweep_dir: Path) -> str:
    """Run the analysis report (s4l-report) on the finished sweep; one line either way."""
    try:
        from analysis.report import build_report
    except Exception:
        return f"report: s4l-report {sweep_dir}"
    out = sweep_dir / "report"
    try:
        # the defaults of s4l-report: the same directory gives the same page either way
        index = build_report([str(sweep_dir)], out, log=None)
    except UserError as err:
        return f"report: not made ({err})"
    except Exception as err:  # the sweep's results stand without the report
        return f"report: failed ({type(err).__name__}: {err}); rerun s4l-report {sweep_dir}"
    return f"report: {index}"


def run(flags: dict[str, Any], sweep_dir: Path, resuming: bool, dashboard: bool,
        quiet: bool, report: bool, keep_all: bool = False, retry_errored: bool = False) -> int:
    from tune.sweep_plan import make_plan, short_line

    from s4l_models.data.datasets import DATASETS, load_dataset

    if flags["dataset"] not in DATASETS:
        raise UserError(
            f"unknown dataset {flags['dataset']!r}; choose one of {', '.join(sorted(DATASETS))}"
        )
    if flags["data_dir"]:
        flags["data_dir"] = str(Path(flags["data_dir"]).expanduser().resolve())
    # The protocol and the split sizes are measured on the data (missing data: exit 2 here).
    plan = make_plan(
        flags["space"], dataset=flags["dataset"], data_dir=flags["data_dir"], labels=flags["labels"],
        raw_set=_set_dict(flags["set"]),
        search=flags["search"], max_trials=flags["max_trials"], seed=flags["seed"],
        concurrency=planned_concurrency(flags), protocol=flags.get("protocol", "scaled"),
        data=load_dataset(flags["dataset"], flags["data_dir"]),
    )
    tiny_k = tuple(plan.space.fixed.get("tiny_k", (1, 5)))
    check_metric(flags["metric"], tiny_k)
    gpus, cpus = float(flags["gpus_per_trial"]), float(flags["cpus_per_trial"])
    # A Ray session the caller started (e.g. with a GPU resource of its own) is checked against
    # its resources instead, in _run_tuner.
    if gpus > 0 and not flags["address"] and not _ray_running() and visible_gpus_locally() == 0:
        raise UserError(
            f"--gpus-per-trial {gpus:g} but no GPU is visible; drop it to train on CPUs "
            "(or --address a cluster with GPUs)"
        )
    if flags["address"]:
        _probe(flags["address"])  # before anything is written
    elif dashboard and importlib.util.find_spec("aiohttp") is None:
        raise UserError(
            "--dashboard needs Ray's dashboard packages (ray[default]), which are not installed "
            "here; install them or drop --dashboard"
        )
    if not resuming and (sweep_dir / SPACE_JSON).exists():
        raise UserError(
            f"{sweep_dir} already holds a sweep; pass --resume to continue it or choose another --name"
        )
    created = not sweep_dir.exists()
    try:
        sizes, tiny_k, data = prepare_data(plan, sweep_dir)  # missing data: exit 2 before Ray
        plan.sizes = sizes
        scheduler = None if resuming else build_scheduler(
            flags["scheduler"], plan, max_reports(plan), flags["seed"]
        )
        print(plan.adaptation.line(), flush=True)  # first: what was adapted to the data, why
        print(f"{plan.base_name} on {plan.dataset}: {plan.note}", flush=True)
        if short_line(plan):
            print(short_line(plan), flush=True)
        started = start_ray(flags["address"], dashboard)
    except UserError:
        if created and not has_ray_experiment(sweep_dir):
            shutil.rmtree(sweep_dir, ignore_errors=True)  # leave no half-made sweep behind
        raise
    try:
        return _run_tuner(
            plan, flags, sweep_dir, resuming, sizes, tiny_k, cpus, gpus, quiet, report, scheduler,
            keep_all, data, retry_errored,
        )
    except UserError:
        if created and not has_ray_experiment(sweep_dir):
            shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    finally:
        if started:
            import ray

            ray.shutdown()


def _run_tuner(
    plan, flags, sweep_dir, resuming, sizes, tiny_k, cpus, gpus, quiet, report, scheduler,
    keep_all, data=None, retry_errored=False,
) -> int:
    import functools

    import ray
    from ray import tune

    from tune.checkpoints import CheckpointPruner
    from tune.memory_plan import check_fits, gib, largest_trials, ray_request, trial_resources
    from tune.ray_fixes import apply_ray_fixes
    from tune.sweep_callback import SweepCallback, planned_costs
    from tune.sweep_plan import PBT_MUTABLE
    from tune.trainable import run_trial, trial_dirname

    resources = ray.cluster_resources()
    if gpus > 0 and resources.get("GPU", 0) < gpus:
        raise UserError(
            f"--gpus-per-trial {gpus:g} but the Ray cluster has {resources.get('GPU', 0):g} GPU(s)"
        )
    if resources.get("CPU", 0) < cpus:
        raise UserError(
            f"--cpus-per-trial {cpus:g} but the Ray cluster has only {resources.get('CPU', 0):g} CPUs"
        )
    concurrency = flags["concurrency"] or max(1, int(resources.get("CPU", 1) // cpus))
    if gpus > 0:
        concurrency = min(concurrency, max(1, int(resources.get("GPU", 0) // gpus)))
    runtime: dict[str, Any] = {"splits_path": str(sweep_dir)}
    if "threads" not in plan.space.fixed:
        runtime["threads"] = max(1, int(math.floor(cpus)))
    setup = {
        "fixed": {**plan.space.fixed, "dataset": plan.dataset, "data_dir": plan.data_dir},
        "runtime": runtime,
        "trials_dir": str(sweep_dir / TRIALS_DIR),
        "metric": flags["metric"],
        "mutable": PBT_MUTABLE if flags["scheduler"] == "pbt" else (),
        "stand_in": flags.get("stand_in_trainer"),
        "fail_at_step": flags.get("fail_at_step"),
    }
    # Memory is planned like CPUs: each trial asks Ray for its estimated peak (Ray's `memory`
    # resource; tune/memory_plan.py), so a node starts no more trials than it holds, and a
    # trial that no node can hold is refused before anything runs.
    if not setup["stand_in"]:
        node_memory = max(
            (n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0
        )
        largest = largest_trials(plan, 1, gpus > 0)
        if node_memory and largest:
            check_fits(plan, int(node_memory), "the largest node of the Ray cluster has for "
                       "trials", gpus > 0, largest)
            fits = int(node_memory // ray_request(largest[0][0]))
            if fits < concurrency:
                print(f"memory: the largest trial needs about {gib(largest[0][0])}; a node with "
                      f"{gib(node_memory)} for trials runs at most {fits} of them at a time",
                      flush=True)
    trainable = tune.with_resources(
        # The in-memory dataset goes to the object store once and each worker process reads it
        # from there once (a one-item list, so that with_parameters hands trials the reference
        # instead of fetching and unpickling the data at every trial start).
        tune.with_parameters(
            run_trial, setup=setup, data=[ray.put(data)] if data is not None else None
        ),
        functools.partial(trial_resources, setup=setup, sizes=sizes, cpus=cpus, gpus=gpus),
    )
    if not resuming:
        write_space_json(sweep_dir, plan, flags, flags["metric"])
    callback = SweepCallback(
        str(sweep_dir), setup, flags["metric"], plan.axes, plan.num_trials, sizes, tiny_k,
        quiet=quiet, concurrency=concurrency, planned_costs=planned_costs(plan),
    )
    # Every evaluation checkpoints (num_to_keep=1), which forces frequent experiment snapshots
    # on fast trials; Ray's warning about it would drown the progress line.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's newer console output prints its own banner even at verbose=0; the classic reporter
    # is silent at verbose=0, leaving our progress line.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray's default per-trial loggers (result.json, progress.csv, TensorBoard events) write
    # every result of every trial a second time, next to our results table and each trial's
    # progress.jsonl; on a large sweep of short trials they halved the trials scheduled per
    # second (bench/grid_scale.py). Nothing here reads them.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # A failed trial is one line from our callback (and its traceback in the trial's error.txt),
    # not a traceback on the console.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # The ResultGrid that fit() returns looks for those per-trial files and warns, per trial,
    # that they are missing; our table is the result.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # A worker that Ray's memory monitor kills fails its trial (retried, then errored) instead
    # of ending the sweep with Ray's "Caught unexpected exception", and a reused worker's death
    # counts as one failure, not two (tune/ray_fixes.py).
    apply_ray_fixes()
    # Finished trials' checkpoints go as they finish (tune/checkpoints.py); PBT clones other
    # trials' checkpoints, so under it they stay until the end.
    pruner = CheckpointPruner(
        flags["metric"], enabled=not keep_all and flags["scheduler"] != "pbt"
        and "://" not in str(sweep_dir)
    )
    from tune.reseed import load_reseed

    # A sweep whose seed repeats have started finished its search (tune/reseed.py).
    search_done = load_reseed(sweep_dir) is not None or (
        resuming and not retry_errored and sweep_state(sweep_dir, plan.num_trials)[0])
    if not search_done:
        if resuming:
            # Errored trials stay errored unless asked (--retry-errored): rerunning them is a choice.
            tuner = tune.Tuner.restore(
                str(ray_dir(sweep_dir)), trainable, resume_unfinished=True, resume_errored=retry_errored
            )
            if (sweep_dir / "results.parquet").is_file():
                from tune.results import read_table, upgrade_table

                callback.carry_rows(upgrade_table(read_table(sweep_dir / "results.parquet")))
            internal = getattr(tuner, "_local_tuner", None)
            run_config = getattr(internal, "_run_config", None)
            if run_config is not None:  # fresh callbacks (the pickled ones work too)
                run_config.callbacks = [callback, pruner]
            print(f"resuming {sweep_dir}", flush=True)
        else:
            param_space, search_alg, num_samples = build_search(
                plan, flags["metric"], concurrency, flags["seed"]
            )
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    metric=flags["metric"],
                    mode="max",
                    search_alg=search_alg,
                    scheduler=scheduler,
                    num_samples=num_samples,
                    # our search algorithms carry the limit themselves (Ray ignores it for them)
                    max_concurrent_trials=concurrency if search_alg is None else None,
                    reuse_actors=True,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=RAY_SUBDIR,
                    storage_path=str(sweep_dir),
                    verbose=0,
                    callbacks=[callback, pruner],
                    failure_config=tune.FailureConfig(max_failures=flags["max_failures"]),
                    # One checkpoint per trial (Ray's snapshot-frequency warning is silenced
                    # above); PBT clones other trials' checkpoints: keep them all for it.
                    checkpoint_config=tune.CheckpointConfig(
                        num_to_keep=None if flags["scheduler"] == "pbt" else 1
                    ),
                    log_to_file=True,
                ),
            )
        per = f"{cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")
        print(
            f"running {plan.num_trials} trials, {concurrency} at a time ({per} each), "
            f"scheduler {flags['scheduler']}, selecting on {flags['metric']}; writing {sweep_dir}",
            flush=True,
        )
        interrupted = _fit(tuner, callback, sweep_dir)
        if interrupted or not callback.all_finished():
            text, _ = summarize(sweep_dir, flags["metric"], plan.axes, plan.num_trials)
            print(text, flush=True)
            print(
                f"the sweep stopped before all trials finished; continue it with: "
                f"python tune/run_sweep.py --resume {sweep_dir}",
                flush=True,
            )
            return 130

    planned = plan.num_trials
    if flags.get("reseed_top"):
        code, planned = _reseed_phase(
            plan, flags, sweep_dir, trainable, setup, concurrency, quiet, keep_all, sizes, tiny_k)
        if code:
            return code
    text, n_completed = summarize(sweep_dir, flags["metric"], plan.axes, planned)
    print(text, flush=True)
    print(prune_checkpoints(sweep_dir, flags["metric"], keep_all, pruner.freed), flush=True)
    _, n_errored = sweep_state(sweep_dir, planned)
    if n_errored:
        print(retry_hint(sweep_dir, n_errored), flush=True)
    if report and n_completed:
        print(make_report(sweep_dir), flush=True)
    return 0


def _fit(tuner, callback, sweep_dir: Path) -> bool:
    """Run a Tuner to its end; True when interrupted (Ctrl-C). The table is written in full
    at the end; a full disk raises DiskFullError (one line, exit 2) with the resume command."""
    interrupted = False
    try:
        try:
            tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if callback.trials:
                try:
                    callback.write(final=True)
                except DiskFullError as err:
                    callback.disk_full = callback.disk_full or err
            callback.end_line()
        if callback.disk_full is not None:  # the table on disk is the last one written in full
            raise DiskFullError(
                f"{callback.disk_full}: python tune/run_sweep.py --resume {sweep_dir}"
            )
        if not (sweep_dir / "results.parquet").is_file():
            callback.write(final=True)
    except DiskFullError:
        callback.end_line()
        raise  # one line, exit 2; the table on disk is the last one written in full
    return interrupted


def _reseed_phase(plan, flags, sweep_dir, trainable, setup, concurrency, quiet, keep_all,
                  sizes, tiny_k) -> tuple[int, int]:
    """Seed repeats of the best configurations (tune/reseed.py) as a second Ray Tune experiment
    in `<sweep>/ray-reseed/`, resumable like the search. Returns (exit code or 0, trials
    planned in all)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from tune import reseed
    from tune.checkpoints import CheckpointPruner
    from tune.results import RESULTS_PARQUET, read_table, upgrade_table
    from tune.sweep_callback import SweepCallback
    from tune.trainable import encode_value, trial_dirname

    df = upgrade_table(read_table(sweep_dir / RESULTS_PARQUET))
    doc = reseed.load_reseed(sweep_dir)
    if doc is None:
        axes = {a.key: list(a.values) for a in plan.space.axes}
        doc = reseed.plan_reseed(df, flags["metric"], flags["reseed_top"], flags["seeds"], axes)
        reseed.save_reseed(sweep_dir, doc)
    planned = len(doc["search_trials"]) + len(doc["points"])
    if not doc["points"]:
        print(f"seed repeats: none needed ({len(doc['finalists'])} finalist(s) already have "
              f"{doc['seeds']} seeds, or no trial completed)", flush=True)
        return 0, planned
    if reseed.reseed_finished(df, doc):
        return 0, planned
    search = df["trial_id"].astype(str).isin(set(doc["search_trials"]))
    callback = SweepCallback(
        str(sweep_dir), setup, flags["metric"], list(plan.axes) + ["seed"], len(doc["points"]),
        sizes, tiny_k, quiet=quiet, concurrency=concurrency,
    )
    callback.keep_rows(df[search])
    pruner = CheckpointPruner(flags["metric"], enabled=not keep_all)
    rdir = sweep_dir / reseed.RAY_SUBDIR
    if tune.Tuner.can_restore(str(rdir)):
        tuner = tune.Tuner.restore(str(rdir), trainable, resume_unfinished=True)
        callback.carry_rows(df[~search])
        run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
        if run_config is not None:
            run_config.callbacks = [callback, pruner]
    else:
        axes = {a.key: [encode_value(v) for v in a.values] for a in plan.space.axes}
        seeds = sorted({int(p["seed"]) for p in doc["points"]})
        param_space = {k: tune.choice(v) for k, v in axes.items()}
        param_space["seed"] = tune.choice(seeds)
        points = [{k: encode_value(v) for k, v in p.items()} for p in doc["points"]]
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=flags["metric"], mode="max",
                search_alg=BasicVariantGenerator(
                    points_to_evaluate=points, max_concurrent=concurrency),
                num_samples=len(points), reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=reseed.RAY_SUBDIR, storage_path=str(sweep_dir), verbose=0,
                callbacks=[callback, pruner],
                failure_config=tune.FailureConfig(max_failures=flags["max_failures"]),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                log_to_file=True,
            ),
        )
    names = ", ".join(f["config_id"] for f in doc["finalists"])
    print(f"seed repeats: the {len(doc['finalists'])} best configurations by "
          f"{flags['metric']} ({names}) with {doc['seeds']} seeds each: "
          f"{len(doc['points'])} more trials", flush=True)
    if _fit(tuner, callback, sweep_dir) or not callback.all_finished():
        text, _ = summarize(sweep_dir, flags["metric"], plan.axes, planned)
        print(text, flush=True)
        print(
            f"the seed repeats stopped before all finished; continue them with: "
            f"python tune/run_sweep.py --resume {sweep_dir}",
            flush=True,
        )
        return 130, planned
    return 0, planned



@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        from tune.sweep_plan import list_text

        print(list_text())
        return 0
    flags, given = resolve_flags(args)
    flags.update(dashboard=args.dashboard, keep_checkpoints=args.keep_checkpoints,
                 report=args.report, quiet=args.quiet)
    check_flags(flags)
    if args.retry_errored and args.resume is None:
        raise UserError("--retry-errored reruns the errored trials of a sweep: use it with --resume")
    if not flags["address"] and argv is None and "ray" not in sys.modules:
        # Run as a command: a locally started Ray listens on 127.0.0.1 only. Ray turns
        # "127.0.0.1" given as the node address into the machine's outside address; with this
        # switch (read when Ray is imported) it uses the loopback address for the node, so every
        # Ray server binds there. (Called from Python, main() leaves the environment alone.)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Ray turns token authentication on for a cluster it starts (its secure default) and,
        # unless the mode is given, warns at every start that it did; we choose it explicitly
        # (Ray reads the mode when it is imported, and creates ~/.ray/auth_token if missing).
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    resuming = args.resume is not None
    if resuming:
        if not args.resume and not flags["name"]:
            raise UserError("--resume needs the sweep: --resume SWEEP_DIR, or --storage and --name")
        sweep_dir = sweep_dir_for(flags, args.resume or None)
        flags = load_resumed_flags(sweep_dir, flags, given)
        flags["name"] = sweep_dir.name
        flags["storage"] = str(sweep_dir.parent)
        if not args.dry_run:
            planned = int(json.loads((sweep_dir / SPACE_JSON).read_text()).get("num_trials", 0))
            finished, n_errored = sweep_state(sweep_dir, planned)
            if finished and flags["reseed_top"]:  # and its seed repeats, when it has them
                from tune.reseed import load_reseed, reseed_finished
                from tune.results import RESULTS_PARQUET, read_table

                doc = load_reseed(sweep_dir)
                finished = doc is not None and reseed_finished(
                    read_table(sweep_dir / RESULTS_PARQUET), doc)
                if doc is not None:
                    planned = len(doc["search_trials"]) + len(doc["points"])
            if finished and not (args.retry_errored and n_errored):
                # Nothing to run: say so and touch nothing (no file of the sweep is rewritten).
                text, _ = summarize(sweep_dir, flags["metric"], _axes_of(sweep_dir), planned)
                print(f"{sweep_dir} is finished; nothing to resume", flush=True)
                print(text, flush=True)
                if n_errored:
                    print(retry_hint(sweep_dir, n_errored), flush=True)
                return 0
    else:
        if not flags["space"]:
            raise UserError("--space is required; python tune/run_sweep.py --list shows the spaces")
        if flags["name"] is None:
            flags["name"] = f"{flags['space']}-{flags['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}"
        if "/" in flags["name"] or flags["name"] in ("", ".", ".."):
            raise UserError(f"--name {flags['name']!r} must be a plain directory name")
        sweep_dir = sweep_dir_for(flags, None)
    if args.dry_run:
        from tune.memory_plan import check_fits, largest_trials, local_trial_memory, local_where
        from tune.sweep_plan import describe, make_plan

        plan = make_plan(
            flags["space"], dataset=flags["dataset"], data_dir=flags["data_dir"],
            labels=flags["labels"], raw_set=_set_dict(flags["set"]), search=flags["search"],
            max_trials=flags["max_trials"], seed=flags["seed"],
            concurrency=planned_concurrency(flags), protocol=flags["protocol"],
        )
        check_metric(flags["metric"], tuple(plan.space.fixed.get("tiny_k", (1, 5))))
        gpu = flags["gpus_per_trial"] > 0
        largest = largest_trials(plan, 3, gpu)
        # The plan is printed first (it is what one checks before a cluster run); a trial that
        # cannot fit on this machine then refuses the run here: one line, exit 2. A cluster's
        # nodes are checked when the sweep starts.
        print(describe(plan, flags["scheduler"], flags["metric"], flags["cpus_per_trial"],
                       flags["gpus_per_trial"], planned_concurrency(flags),
                       keep_checkpoints=flags["keep_checkpoints"], largest=largest,
                       local=not flags["address"]), flush=True)
        if flags["reseed_top"]:
            k, n = flags["reseed_top"], flags["seeds"]
            print(f"then seed repeats: the {k} best configurations by {flags['metric']} trained "
                  f"again until each has {n} seeds (up to {k * (n - 1)} more trials)", flush=True)
        if not flags["address"]:
            check_fits(plan, local_trial_memory(), local_where(), gpu, largest)
        return 0
    return run(flags, sweep_dir, resuming, args.dashboard, args.quiet, args.report,
               args.keep_checkpoints, retry_errored=args.retry_errored)


def _axes_of(sweep_dir: Path) -> list[str]:
    return list(json.loads((sweep_dir / SPACE_JSON).read_text()).get("axes", []))


def planned_concurrency(flags: dict[str, Any]) -> int:
    """Trials at a time as planned before Ray starts (this machine's CPUs unless --concurrency);
    on a cluster the driver uses the cluster's CPUs."""
    if flags["concurrency"]:
        return int(flags["concurrency"])
    return max(1, int(len(os.sched_getaffinity(0)) // float(flags["cpus_per_trial"])))


def _set_dict(items: list[str]) -> dict[str, str]:
    from tune.sweep_plan import parse_set

    return parse_set(items)


if __name__ == "__main__":
    sys.exit(main())
