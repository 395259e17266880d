"""The Ray runner: connect to or start Ray, build the Tuner (search, scheduler, resources), run
the search and then the seed repeats, resume either from Ray's saved state, and finish (prune,
summary, report).

`run(flags, sweep_dir, ...)` is what `python tune/run_sweep.py` calls once its flags are checked:
it makes the plan (tune/sweep_plan.py), loads the data and writes the sweep's splits and
space.json, starts Ray (127.0.0.1 only, no dashboard unless asked) or connects to `--address`,
and runs `tune.Tuner` with the function trainable of tune/trainable.py, our results-table and
progress callback (tune/sweep_callback.py) and the checkpoint pruner (tune/checkpoints.py). Ray
itself is imported inside the functions that use it: the command sets Ray's environment
(loopback address, token authentication) before Ray is first imported.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import math
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from s4l_models.config import TrainConfig, parse_set
from s4l_models.data.datasets import DATASETS, load_dataset
from s4l_models.data.splits import splits_for
from s4l_models.errors import DiskFullError, UserError, first_line
from s4l_models.io import atomic_write_text
from tune import provenance, reseed, tracking
from tune.checkpoints import CheckpointPruner, prune_checkpoints
from tune.memory_plan import (
    check_fits,
    gib,
    largest_trials,
    ray_request,
    trial_resources,
)
from tune.progress_line import planned_costs
from tune.ray_fixes import apply_ray_fixes
from tune.reseed import load_reseed
from tune.results import (
    RAY_SUBDIR,
    RESULTS_PARQUET,
    RESULTS_VERSION,
    SHORT_RULE,
    SPACE_JSON,
    TRIALS_DIR,
    check_metric,
    has_ray_experiment,
    ray_dir,
    read_table,
    trial_status,
    upgrade_table,
)
from tune.storage import RemoteSweep, is_uri, sweep_uri
from tune.summary import make_report, retry_hint, summarize, sweep_state
from tune.sweep_callback import SweepCallback
from tune.sweep_plan import (
    PBT_MUTABLE,
    Sizes,
    axis_probe_points,
    make_plan,
    planned_concurrency,
    report_count,
    scheduler_caveat,
    short_line,
    warning_line,
)
from tune.trainable import STAND_IN_FILE, encode_value, run_trial, trial_dirname


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
            raise UserError(f"--address {address}: cannot connect to Ray ({first_line(err)})"
                            ) from None
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


def build_search(plan, metric: str, concurrency: int, seed: int):
    """(param_space, search_alg, num_samples) for the plan's search."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    axes = plan.space.axes
    choices = {a.key: tune.choice([encode_value(v) for v in a.values]) for a in axes}
    if plan.search == "grid" and plan.points is None:
        space = {a.key: tune.grid_search([encode_value(v) for v in a.values]) for a in axes}
        return space, None, 1
    if plan.points is not None:  # a grid's seeded subset, or random search's distinct draws
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
    searcher = ConcurrencyLimiter(_optuna_search(seed), max_concurrent=concurrency)
    return choices, searcher, plan.num_trials


def _optuna_search(seed: int):
    """Ray's OptunaSearch, except that
    - a trial a scheduler (ASHA, HyperBand) stopped before its last step is told to Optuna as
      PRUNED: Ray tells it COMPLETE with its last, partial score, so TPE would model final
      accuracy partly from scores after a ninth of training;
    - a suggestion of a configuration already run or running (TPE repeats itself on a small
      grid: one of 18 configurations 9 times in 30 trials) is told what that one gave (PRUNED
      while it runs) and Optuna is asked again, up to `REPEAT_TRIES` times: with one seed the
      same configuration is the same run. The memory is the study itself, which a resumed
      sweep restores."""
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class StoppedAsPruned(OptunaSearch):
        REPEAT_TRIES = 50

        def suggest(self, trial_id):
            config = super().suggest(trial_id)
            for _ in range(self.REPEAT_TRIES):
                if not isinstance(config, dict) or trial_id not in self._ot_trials:
                    return config
                asked = self._ot_trials[trial_id]
                tried = {tuple(sorted(t.params.items())) for t in self._ot_study.trials
                         if t.number != asked.number}
                if len(tried) >= self._grid_size():  # every configuration ran: repeat one
                    return config
                same = next((t for t in self._ot_study.trials
                             if t.number != asked.number and t.params == asked.params), None)
                if same is None:
                    return config
                if same.state == TrialState.COMPLETE:
                    self._ot_study.tell(asked, same.value)
                else:
                    self._ot_study.tell(asked, state=TrialState.PRUNED)
                del self._ot_trials[trial_id]
                config = super().suggest(trial_id)
            return config

        def _grid_size(self) -> float:
            space = self._space if isinstance(self._space, dict) else {}
            sizes = [len(getattr(d, "choices", ())) for d in space.values()]
            return math.prod(sizes) if sizes and all(sizes) else math.inf

        def on_trial_complete(self, trial_id, result=None, error=False):
            if result and not error and trial_status("TERMINATED", result) == "stopped_early":
                result = {k: v for k, v in result.items() if k != self.metric}  # no value: PRUNED
            super().on_trial_complete(trial_id, result, error)

    return StoppedAsPruned(seed=seed)


def build_scheduler(name: str, plan, max_t: int, seed: int):
    from ray.tune.schedulers import (
        ASHAScheduler,
        HyperBandScheduler,
        PopulationBasedTraining,
    )

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
        perturbation_interval=pbt_interval(max_t),
        hyperparam_mutations=mutations,
        quantile_fraction=0.25,
    )


def pbt_interval(max_t: int) -> int:
    """Reports between PBT's perturbations: about a quarter of a trial, but never a divisor of
    its last report, where an exploited trial would throw away its finished run and train the
    donor's last stretch again (at 8 reports: 3, so perturbations at reports 3 and 6, not 2, 4,
    6 and 8)."""
    k = max(1, math.ceil(max_t / 4))
    while max_t % k == 0 and k <= max_t:
        k += 1
    return k


def max_reports(plan) -> int:
    """The most evaluations any planned trial reports (the schedulers' max_t)."""
    points = plan.points if plan.points is not None else axis_probe_points(plan.space)
    sizes = plan.sizes
    return max((report_count(plan.trial_config(p), sizes) for p in points), default=1)


def prepare_data(plan, sweep_dir: Path):
    """Load the dataset and write the sweep's split files once (reused on --resume).

    Returns (sizes, tiny_k, data): `data` is the loaded dataset when it is held in memory (the
    trials get it through Ray's object store instead of reading the files again), else None.
    """
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
            "rule": SHORT_RULE,
        },
    }
    atomic_write_text(sweep_dir / SPACE_JSON, json.dumps(doc, indent=2, default=str))


def plan_changes(sweep_dir: Path, plan) -> list[str]:
    """How the plan made now differs from the one space.json recorded when the sweep started:
    fixed settings, axes, the number of trials and the grid points. Resuming with other code
    (a search space or recipe changed since) would train the remaining trials with other
    settings than the finished ones. Wording (descriptions, sources) may differ."""
    saved = json.loads((sweep_dir / SPACE_JSON).read_text())

    def plain(value):  # as space.json holds it (tuples as lists, odd values as strings)
        return json.loads(json.dumps(value, default=str))

    space = plain(plan.space.to_dict())
    before = saved.get("space") or {}
    changes = []
    old_fixed, new_fixed = before.get("fixed") or {}, space["fixed"]
    for key in sorted(set(old_fixed) | set(new_fixed)):
        if old_fixed.get(key, "(unset)") != new_fixed.get(key, "(unset)"):
            changes.append(f"{key} {old_fixed.get(key, '(unset)')} -> "
                           f"{new_fixed.get(key, '(unset)')}")
    old_axes = {a["key"]: a["values"] for a in before.get("axes") or []}
    new_axes = {a["key"]: a["values"] for a in space["axes"]}
    for key in sorted(set(old_axes) | set(new_axes)):
        if old_axes.get(key) != new_axes.get(key):
            changes.append(f"axis {key} {old_axes.get(key, '(none)')} -> "
                           f"{new_axes.get(key, '(none)')}")
    if saved.get("num_trials") != plan.num_trials:
        changes.append(f"trials {saved.get('num_trials')} -> {plan.num_trials}")
    points = plain([{k: encode_value(v) for k, v in p.items()} for p in plan.points]
                   if plan.points is not None else None)
    if not changes and saved.get("points") != points:
        changes.append("the grid points drawn")
    return changes


def remote_of(flags: dict[str, Any], sweep_dir: Path):
    """The sweep's object store (tune/storage.py) when --storage is a URI, else None."""
    if not is_uri(flags.get("storage")):
        return None
    return RemoteSweep(sweep_uri(flags["storage"], sweep_dir.name), sweep_dir)


def where_of(flags: dict[str, Any], sweep_dir: Path) -> str:
    """What a user passes to --resume: the sweep's URI on an object store (not the local
    mirror, which another machine does not have), else its directory."""
    return (sweep_uri(flags["storage"], sweep_dir.name) if is_uri(flags.get("storage"))
            else str(sweep_dir))


def trackers(flags: dict[str, Any], sweep_dir: Path, callback: SweepCallback) -> list:
    """The `--log` trackers' Ray logger callbacks (tune/tracking.py); none without --log. A
    tracker's run gets a trial's settings from the results table (`ResultsTable.resolved`), so
    it says what the table says."""
    return tracking.callbacks(tracking.parse_logs(flags.get("log")), sweep_dir, sweep_dir.name,
                              settings=callback.table.resolved)


def record_kept_flags(sweep_dir: Path, flags: dict[str, Any]) -> None:
    """On --resume: write this session's keep_checkpoints, log and seed repeats (reseed_top,
    seeds) into space.json's flags when they changed (given on this --resume), so that the next
    plain `--resume DIR` (the command we print after an interrupt) keeps them too
    (tune/run_sweep.py's load_resumed_flags): repeats asked for on a --resume that is then
    interrupted during the search are otherwise recorded nowhere (reseed.json is written when
    the search ends)."""
    path = sweep_dir / SPACE_JSON
    doc = json.loads(path.read_text())
    saved = doc.setdefault("flags", {})
    now = {"keep_checkpoints": bool(flags.get("keep_checkpoints")),
           "log": list(flags.get("log") or []),
           "reseed_top": int(flags.get("reseed_top", saved.get("reseed_top")) or 0),
           "seeds": flags.get("seeds", saved.get("seeds"))}
    if all(saved.get(k) == v for k, v in now.items()):
        return
    saved.update(now)
    atomic_write_text(path, json.dumps(doc, indent=2, default=str))


def start_session(sweep_dir: Path, session: dict[str, Any]) -> None:
    """Append this session's provenance (tune/provenance.py) to space.json's `provenance`."""
    path = sweep_dir / SPACE_JSON
    doc = json.loads(path.read_text())
    sessions = doc.setdefault("provenance", {"sessions": []})["sessions"]
    for i, old in enumerate(sessions):  # a session that never recorded its end was killed
        if old.get("finished") is None:
            sessions[i] = {**old, "outcome": "killed (no end recorded)"}
    sessions.append(session)
    atomic_write_text(path, json.dumps(doc, indent=2, default=str))


def end_session(sweep_dir: Path, session: dict[str, Any], outcome: str) -> None:
    """Close the session `start_session` recorded: its end time and outcome. Nothing to do when
    the sweep stopped before the session was recorded."""
    path = sweep_dir / SPACE_JSON
    try:
        doc = json.loads(path.read_text())
        sessions = doc["provenance"]["sessions"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for i, s in enumerate(sessions):
        if s.get("id") == session["id"]:
            sessions[i] = provenance.finish(s, outcome)
            break
    else:
        return
    try:
        atomic_write_text(path, json.dumps(doc, indent=2, default=str))
    except (OSError, DiskFullError):
        pass  # a full disk: the sweep's results matter more than its end time


def run(flags: dict[str, Any], sweep_dir: Path, resuming: bool, dashboard: bool,
        quiet: bool, report: bool, keep_all: bool = False, retry_errored: bool = False,
        command: list[str] | None = None) -> int:
    """Run (or resume) the sweep. `command`: the command line that started this session, for
    the provenance in space.json (default: this process's)."""

    if flags["dataset"] not in DATASETS:
        raise UserError(
            f"unknown dataset {flags['dataset']!r}; choose one of {', '.join(sorted(DATASETS))}"
        )
    if flags["data_dir"]:
        flags["data_dir"] = str(Path(flags["data_dir"]).expanduser().resolve())
    # The protocol and the split sizes are measured on the data (missing data: exit 2 here).
    plan = make_plan(
        flags["space"], dataset=flags["dataset"], data_dir=flags["data_dir"], labels=flags["labels"],
        raw_set=parse_set(flags["set"]),
        search=flags["search"], max_trials=flags["max_trials"], seed=flags["seed"],
        concurrency=planned_concurrency(flags), protocol=flags.get("protocol", "scaled"),
        data=load_dataset(flags["dataset"], flags["data_dir"]), scheduler=flags["scheduler"],
    )
    if resuming and (sweep_dir / SPACE_JSON).is_file():
        changes = plan_changes(sweep_dir, plan)
        if changes:
            raise UserError(
                f"--resume: the plan made now differs from the one {sweep_dir.name} started with "
                f"({'; '.join(changes)}), so the code or search space changed since; resuming "
                "would train its remaining trials with other settings than its finished ones. "
                "Resume with the code that started it (its code_version in results.parquet) or "
                "start a new sweep with another --name"
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
    remote = remote_of(flags, sweep_dir)
    if not resuming and ((sweep_dir / SPACE_JSON).exists()
                         or (remote is not None and remote.exists(SPACE_JSON))):
        held = sweep_dir if (sweep_dir / SPACE_JSON).exists() else where_of(flags, sweep_dir)
        raise UserError(
            f"{held} already holds a sweep; pass --resume to continue it or choose another --name"
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
        for line in (short_line(plan), warning_line(plan)):
            if line:
                print(line, flush=True)
        started = start_ray(flags["address"], dashboard)
    except UserError:
        if created and not has_ray_experiment(sweep_dir):
            shutil.rmtree(sweep_dir, ignore_errors=True)  # leave no half-made sweep behind
        raise
    code = None
    session = provenance.collect(command)  # after Ray started: it counts the cluster's nodes
    try:
        code = _run_tuner(
            plan, flags, sweep_dir, resuming, sizes, tiny_k, cpus, gpus, quiet, report, scheduler,
            keep_all, data, retry_errored, session,
        )
        return code
    except UserError:
        if created and not has_ray_experiment(sweep_dir):
            shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    finally:
        end_session(sweep_dir, session, {0: "finished", 130: "interrupted"}.get(code, "failed"))
        remote = remote_of(flags, sweep_dir)
        if remote is not None and (sweep_dir / SPACE_JSON).is_file():
            try:
                remote.push(SPACE_JSON, reseed.RESEED_FILE)  # the session's end
            except OSError:
                pass
        if started:
            import ray

            ray.shutdown()


def _run_tuner(
    plan, flags, sweep_dir, resuming, sizes, tiny_k, cpus, gpus, quiet, report, scheduler,
    keep_all, data=None, retry_errored=False, session=None,
) -> int:
    import ray
    from ray import tune

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
        # for the results table's cost and provenance columns (read on the driver only)
        "resources": {"cpu": cpus, "gpu": gpus},
        "code_version": provenance.code_version(),
    }
    remote = remote_of(flags, sweep_dir)
    if remote is not None:
        setup["remote_uri"] = remote.uri
    if setup["stand_in"] and not STAND_IN_FILE.is_file():
        raise UserError(f"--stand-in-trainer is a test hook of a source checkout; {STAND_IN_FILE} "
                        "is missing: run it from a clone of the repository")
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
    else:
        record_kept_flags(sweep_dir, flags)
    if session is not None:
        start_session(sweep_dir, session)
    if remote is not None:  # before any trial starts: trials read the splits from the store
        remote.push(SPACE_JSON, "splits.npz", "splits.json")
    callback = SweepCallback(
        str(sweep_dir), setup, flags["metric"], plan.axes, plan.num_trials, sizes, tiny_k,
        quiet=quiet, concurrency=concurrency, planned_costs=planned_costs(plan),
        live_report=report,
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
        flags["metric"], enabled=not keep_all and flags["scheduler"] != "pbt",
        fs=remote.fs if remote is not None else None,
    )

    doc = load_reseed(sweep_dir)
    if doc is not None:
        # A sweep whose seed repeats were planned finished its search (tune/reseed.py); it runs
        # again only for --retry-errored with errored search trials (the finalists stay).
        # Without a results table (an unreadable one is set aside on --resume) the search is
        # restored too: its finished trials rebuild their rows, which the repeats then follow.
        search_done = (sweep_dir / RESULTS_PARQUET).is_file() and not (
            retry_errored and _errored(sweep_dir, doc["search_trials"], True))
    else:
        search_done = (resuming and not retry_errored
                       and sweep_state(sweep_dir, plan.num_trials)[0])
    if not search_done:
        if resuming:
            # Errored trials stay errored unless asked (--retry-errored): rerunning them is a choice.
            tuner = _restore(ray_dir(sweep_dir), trainable, [callback, pruner, *trackers(flags, sweep_dir, callback)], remote=remote,
                             resume_unfinished=True, resume_errored=retry_errored)
            if (sweep_dir / RESULTS_PARQUET).is_file():
                callback.carry_rows(upgrade_table(read_table(sweep_dir / RESULTS_PARQUET)))
            print(f"resuming {sweep_dir}", flush=True)
        else:
            param_space, search_alg, num_samples = build_search(
                plan, flags["metric"], concurrency, flags["seed"]
            )
            tuner = _new_tuner(
                trainable, sweep_dir, RAY_SUBDIR, [callback, pruner, *trackers(flags, sweep_dir, callback)], flags,
                param_space=param_space, search_alg=search_alg, num_samples=num_samples,
                scheduler=scheduler,
                # our search algorithms carry the limit themselves (Ray ignores it for them)
                max_concurrent_trials=concurrency if search_alg is None else None,
                # PBT clones other trials' checkpoints: keep them all for it
                num_to_keep=None if flags["scheduler"] == "pbt" else 1,
            )
        per = f"{cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")
        print(
            f"running {plan.num_trials} trials, {concurrency} at a time ({per} each), "
            f"scheduler {flags['scheduler']}, selecting on {flags['metric']}; writing {sweep_dir}",
            flush=True,
        )
        caveat = scheduler_caveat(plan, flags["scheduler"])
        if caveat:
            print(caveat, flush=True)
        if _fit(tuner, callback, sweep_dir, where_of(flags, sweep_dir)) \
                or not callback.all_finished():
            _stopped(sweep_dir, flags["metric"], plan.axes, plan.num_trials,
                     "the sweep stopped before all trials finished; continue it with",
                     where_of(flags, sweep_dir))
            return 130

    planned = plan.num_trials
    if flags.get("reseed_top"):
        code, planned = _reseed_phase(
            plan, flags, sweep_dir, trainable, setup, concurrency, quiet, keep_all, sizes, tiny_k,
            retry_errored)
        if code:
            return code
    text, n_completed = summarize(sweep_dir, flags["metric"], plan.axes, planned)
    print(text, flush=True)
    print(prune_checkpoints(sweep_dir, flags["metric"], keep_all, pruner.freed, remote),
          flush=True)
    _, n_errored = sweep_state(sweep_dir, planned)
    if n_errored:
        print(retry_hint(shlex.quote(where_of(flags, sweep_dir)), n_errored), flush=True)
    if report and n_completed:
        print(make_report(sweep_dir, where_of(flags, sweep_dir)), flush=True)
    if remote is not None:
        remote.push(RESULTS_PARQUET, "results.csv", "predictions.npz", "reseed.json", "report")
        print(f"sweep files uploaded to {remote.uri}", flush=True)
    return 0


def _new_tuner(trainable, sweep_dir: Path, name: str, callbacks, flags, *, param_space,
               search_alg, num_samples: int, scheduler=None, max_concurrent_trials=None,
               num_to_keep: int | None = 1):
    """A Tuner of this sweep (the search's or the seed repeats'): one experiment in
    `<sweep>/<name>/`, our callbacks, retries from checkpoints, reused worker processes."""
    from ray import tune

    remote = remote_of(flags, sweep_dir)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=flags["metric"],
            mode="max",
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            # a sweep on an object store keeps Ray's experiment (state, checkpoints, trial
            # directories) in the store itself (tune/storage.py)
            storage_path=remote.root if remote is not None else str(sweep_dir),
            storage_filesystem=remote.fs if remote is not None else None,
            # on an object store each trial uploads its own working directory (the trainer's
            # files, tune/trainable.py) at every checkpoint and at its end, from whichever node
            # runs it; the driver uploads only its own folder
            sync_config=tune.SyncConfig(sync_artifacts=remote is not None),
            verbose=0,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=flags["max_failures"]),
            # One checkpoint per trial unless told (Ray's snapshot-frequency warning is
            # silenced in _run_tuner).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=num_to_keep),
            log_to_file=True,
        ),
    )


def _restore(rdir: Path, trainable, callbacks, remote=None, **kwargs):
    """`Tuner.restore` with this session's callbacks. Ray 2.60 has no public way to give a
    restored Tuner new callbacks (the pickled ones would work too), so they are set on its run
    config where it has one. `remote`: the sweep is on an object store; `rdir` is then the
    experiment's subfolder name in it."""
    from ray import tune

    if remote is not None:
        tuner = tune.Tuner.restore(remote.remote(Path(rdir).name), trainable,
                                   storage_filesystem=remote.fs, **kwargs)
    else:
        tuner = tune.Tuner.restore(str(rdir), trainable, **kwargs)
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is not None:
        run_config.callbacks = callbacks
    return tuner


def _stopped(sweep_dir: Path, metric: str, axes, planned: int, what: str, where: str) -> None:
    """The summary of an interrupted sweep and the command that continues it (`where`: its
    directory or URI, `where_of`)."""
    text, _ = summarize(sweep_dir, metric, axes, planned)
    print(text, flush=True)
    print(f"{what}: python tune/run_sweep.py --resume {shlex.quote(where)}", flush=True)


def _fit(tuner, callback, sweep_dir: Path, where: str) -> bool:
    """Run a Tuner to its end; True when interrupted (Ctrl-C). The table is written in full
    at the end; a full disk raises DiskFullError (one line, exit 2) with the resume command."""
    interrupted = False
    try:
        try:
            tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            callback.stop_live_report()
            if callback.trials:
                try:
                    callback.write(final=True)
                except DiskFullError as err:
                    callback.disk_full = callback.disk_full or err
            callback.end_line()
        if callback.disk_full is not None:  # the table on disk is the last one written in full
            raise DiskFullError(
                f"{callback.disk_full}: python tune/run_sweep.py --resume {shlex.quote(where)}"
            )
        if not (sweep_dir / RESULTS_PARQUET).is_file():
            callback.write(final=True)
    except DiskFullError:
        callback.end_line()
        raise  # one line, exit 2; the table on disk is the last one written in full
    return interrupted


def _errored(sweep_dir: Path, search_trials, in_search: bool) -> int:
    """Errored rows of the results table among the search's trials (`in_search`) or among the
    seed repeats (the others)."""
    path = sweep_dir / RESULTS_PARQUET
    if not path.is_file():
        return 0
    df = read_table(path, columns=["trial_id", "status"])
    ours = df["trial_id"].astype(str).isin({str(t) for t in search_trials}) == in_search
    return int((ours & (df["status"] == "errored")).sum())


def _reseed_phase(plan, flags, sweep_dir, trainable, setup, concurrency, quiet, keep_all,
                  sizes, tiny_k, retry_errored: bool = False) -> tuple[int, int]:
    """Seed repeats of the best configurations (tune/reseed.py) as a second Ray Tune experiment
    in `<sweep>/ray-reseed/`, resumable like the search; `retry_errored`: errored repeats run
    again from their last checkpoint (--retry-errored). Returns (exit code or 0, trials
    planned in all)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    df = upgrade_table(read_table(sweep_dir / RESULTS_PARQUET))
    doc = reseed.load_reseed(sweep_dir)
    if doc is None:
        axes = {a.key: list(a.values) for a in plan.space.axes}
        doc = reseed.plan_reseed(df, flags["metric"], flags["reseed_top"], flags["seeds"], axes)
        reseed.save_reseed(sweep_dir, doc)
        remote = remote_of(flags, sweep_dir)
        if remote is not None:
            # at once: the repeats' rows reach the store as they finish, and a --resume URI on
            # another machine must find the plan they belong to (without it, it would plan the
            # repeats again from a table that already holds some of them)
            remote.push(reseed.RESEED_FILE)
    planned = len(doc["search_trials"]) + len(doc["points"])
    if not doc["points"]:
        print(f"seed repeats: none needed ({len(doc['finalists'])} finalist(s) already have "
              f"{doc['seeds']} seeds, or no trial completed)", flush=True)
        return 0, planned
    if reseed.reseed_finished(df, doc) and not (
            retry_errored and _errored(sweep_dir, doc["search_trials"], False)):
        return 0, planned
    search = df["trial_id"].astype(str).isin(set(doc["search_trials"]))
    callback = SweepCallback(
        str(sweep_dir), setup, flags["metric"], list(plan.axes) + ["seed"], len(doc["points"]),
        sizes, tiny_k, quiet=quiet, concurrency=concurrency,
        live_report=flags.get("report", True),
    )
    callback.keep_rows(df[search])
    remote = remote_of(flags, sweep_dir)
    pruner = CheckpointPruner(flags["metric"], enabled=not keep_all,
                              fs=remote.fs if remote is not None else None, per_config=True)
    rdir = sweep_dir / reseed.RAY_SUBDIR
    can = (tune.Tuner.can_restore(remote.remote(reseed.RAY_SUBDIR), storage_filesystem=remote.fs)
           if remote is not None else tune.Tuner.can_restore(str(rdir)))
    if can:
        # errored repeats stay errored unless asked (--retry-errored), as in the search
        tuner = _restore(rdir, trainable, [callback, pruner, *trackers(flags, sweep_dir, callback)],
                         remote=remote, resume_unfinished=True, resume_errored=retry_errored)
        callback.carry_rows(df[~search])
    else:
        axes = {a.key: [encode_value(v) for v in a.values] for a in plan.space.axes}
        seeds = sorted({int(p["seed"]) for p in doc["points"]})
        param_space = {k: tune.choice(v) for k, v in axes.items()}
        param_space["seed"] = tune.choice(seeds)
        points = [{k: encode_value(v) for k, v in p.items()} for p in doc["points"]]
        tuner = _new_tuner(
            trainable, sweep_dir, reseed.RAY_SUBDIR, [callback, pruner, *trackers(flags, sweep_dir, callback)], flags,
            param_space=param_space,
            search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=concurrency),
            num_samples=len(points),
        )
    names = ", ".join(f["config_id"] for f in doc["finalists"])
    print(f"seed repeats: the {len(doc['finalists'])} best configurations by "
          f"{flags['metric']} ({names}) with {doc['seeds']} seeds each: "
          f"{len(doc['points'])} more trials", flush=True)
    if _fit(tuner, callback, sweep_dir, where_of(flags, sweep_dir)) \
            or not callback.all_finished():
        _stopped(sweep_dir, flags["metric"], plan.axes, planned,
                 "the seed repeats stopped before all finished; continue them with",
                 where_of(flags, sweep_dir))
        return 130, planned
    return 0, planned


__all__ = ["run", "start_ray", "build_search", "build_scheduler", "max_reports"]
