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
`--resume` of a finished sweep prints its summary and changes nothing. A resumed sweep keeps
the `--keep-checkpoints`, `--log` and `--reseed-top/--seeds` it was started (or last resumed)
with unless they are given again; `--keep-checkpoints` cannot be turned off on resume.

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
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from s4l_models.config import parse_set  # noqa: E402
from s4l_models.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402
from s4l_models.io import free_path  # noqa: E402
from tune.memory_plan import (  # noqa: E402
    check_fits,
    largest_trials,
    local_trial_memory,
    local_where,
)
from tune.provenance import driver_state  # noqa: E402
from tune.reseed import load_reseed, reseed_finished  # noqa: E402
from tune.results import (  # noqa: E402
    RAY_SUBDIR,
    RESULTS_PARQUET,
    SPACE_JSON,
    UnreadableTable,
    check_metric,
    ray_dir,
    read_table,
)
from tune.storage import (  # noqa: E402
    SWEEP_FILES,
    RemoteSweep,
    check_uri,
    is_uri,
    mirror_dir,
    sweep_uri,
)
from tune.summary import retry_hint, summarize, sweep_state  # noqa: E402
from tune.sweep_plan import (  # noqa: E402
    describe,
    list_text,
    make_plan,
    planned_concurrency,
)
from tune.tracking import parse_logs  # noqa: E402

# Flags that may change when a sweep is resumed; every other flag defines the sweep. Of these,
# keep_checkpoints, log and the RESEED_FLAGS keep their saved values unless given again
# (load_resumed_flags).
RESUME_FREE_FLAGS = (
    "address", "dashboard", "storage", "name", "resume", "quiet", "report", "keep_checkpoints",
    "retry_errored", "reseed_top", "seeds", "log",
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
    "log": [],
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
    a("--storage", help="where sweeps are written: a folder (default ./runs) or an object-store "
      "URI such as s3://bucket/prefix (tune/storage.py)")
    a("--name", help="sweep name (default <space>-<dataset>-<time>)")
    a("--resume", nargs="?", const="", metavar="SWEEP_DIR",
      help="continue an interrupted sweep: SWEEP_DIR or its URI, or <storage>/<name>; a finished sweep "
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
    a("--log", action="append", metavar="TRACKER",
      help="also log every trial to tensorboard | mlflow[=TRACKING_URI] | wandb[=PROJECT] "
      "(repeatable; Ray Tune's logger callbacks; W&B offline unless WANDB_MODE is set; needs "
      'pip install -e ".[tracking]"); default: no tracker')
    a("--no-report", dest="report", action="store_false", help="skip the analysis report")
    a("--quiet", action="store_true", help="no progress line")
    # Test-only, not a user feature (hidden from --help): every trial reports N evaluations at
    # once without training (tests/stand_in.py, in a source checkout); bench/grid_scale.py measures the sweep machinery
    # on the whole 8,640-point grid with it.
    a("--stand-in-trainer", type=int, metavar="N", help=argparse.SUPPRESS)
    # Test-only fault injection (hidden): a trial that starts without a checkpoint exits its
    # process like a killed one when it reaches its first evaluation at or after step N
    # (tune/trainable.py), so crash recovery is tested on real trials.
    a("--fail-at-step", type=int, metavar="N", help=argparse.SUPPRESS)
    return p


def resolve_flags(args: argparse.Namespace) -> tuple[dict[str, Any], set[str]]:
    given = {k for k, v in vars(args).items() if k in DEFAULTS and v is not None}
    flags = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in DEFAULTS.items()}
    flags["set"] = list(flags["set"] or [])
    flags["log"] = list(flags["log"] or [])
    return flags, given


def check_flags(flags: dict[str, Any]) -> None:
    for key in ("cpus_per_trial", "gpus_per_trial"):
        if flags[key] is not None and not math.isfinite(flags[key]):
            raise UserError(f"--{key.replace('_', '-')} must be a finite number, got "
                            f"{flags[key]:g}")
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


def sweep_dir_for(flags: dict[str, Any], resume: str | None) -> Path:
    """The sweep directory; for one on an object store, its local mirror (tune/storage.py)."""
    if resume:
        return mirror_dir(resume) if is_uri(resume) else Path(resume).expanduser().resolve()
    if is_uri(flags["storage"]):
        return mirror_dir(sweep_uri(flags["storage"], flags["name"]))
    return (Path(flags["storage"]).expanduser() / flags["name"]).resolve()


def sweep_uri_of(resume: str | None, flags: dict[str, Any]) -> str | None:
    """The object-store URI of the sweep, or None on a local or shared disk."""
    if resume and is_uri(resume):
        return resume.rstrip("/")
    if not resume and is_uri(flags.get("storage")) and flags.get("name"):
        return sweep_uri(flags["storage"], flags["name"])
    return None


def read_space(sweep_dir: Path, uri: str | None = None) -> dict[str, Any]:
    """The sweep's space.json (its flags, plan and sessions); a one-line error when it is not
    the JSON object the sweep wrote (a truncated or hand-edited file)."""
    path = sweep_dir / SPACE_JSON
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"is not valid JSON ({err})"
    else:
        if isinstance(doc, dict) and isinstance(doc.get("flags"), dict):
            return doc
        problem = "is not a sweep's description (no 'flags' object)"
    where = f"{path} (downloaded from {uri}/{SPACE_JSON})" if uri else str(path)
    raise UserError(
        f"--resume: {where} {problem}; it records the flags the sweep was started with and "
        "cannot be rebuilt: restore it from a backup, or start a new sweep with another --name "
        "(the trials' files stay where they are)"
    )


def set_aside_unreadable_table(sweep_dir: Path) -> Path | None:
    """Resuming a sweep whose results.parquet cannot be read (truncated, overwritten): the
    table is rebuilt from Ray's saved state, where every trial's last result is (the resumed
    sweep runs as one without a table: tune/runner.py). The unreadable file is kept, renamed
    results.parquet.unreadable (or results.parquet-N.unreadable: `free_path`); returns that path, or None when the table is readable."""
    path = sweep_dir / RESULTS_PARQUET
    if not path.is_file():
        return None
    try:
        read_table(path)
        return None
    except UnreadableTable as err:
        problem = err.problem
    keep = free_path(path.with_name(f"{RESULTS_PARQUET}.unreadable"))
    os.replace(path, keep)
    print(f"{path} is not a readable results table ({problem}); rebuilding it from the "
          f"sweep's Ray state (the unreadable file is kept as {keep.name})", flush=True)
    return keep


def refuse_live_driver(sweep_dir: Path, space: dict[str, Any]) -> None:
    """A second driver on one sweep would restore the same Ray experiment and write the same
    trials, table and checkpoints: refuse while the last session's driver runs on this machine;
    on another machine (where it cannot be told) warn when that session recorded no end."""
    sessions = (space.get("provenance") or {}).get("sessions") or []
    last = sessions[-1] if sessions else None
    if not last or last.get("finished") is not None or "outcome" in last:
        return
    state = driver_state(last)
    if state == "alive":
        raise UserError(
            f"--resume: {sweep_dir.name} is still being run by its driver (pid {last['pid']} "
            f"on this machine, started {last.get('started')}); stop it first (Ctrl-C in its "
            "terminal, or kill -INT PID): two drivers would write the same trials and table"
        )
    if state == "unknown":
        print(f"note: the last session of {sweep_dir.name} (started {last.get('started')} on "
              f"{last.get('hostname') or 'an unknown machine'}) recorded no end; if its driver "
              "still runs, stop it first: two drivers would write the same trials and table",
              flush=True)


def load_resumed_flags(sweep_dir: Path, flags: dict[str, Any], given: set[str],
                       uri: str | None = None) -> dict[str, Any]:
    """The flags a sweep was started with; flags given now must agree with them. `uri`: the
    sweep is on an object store; its files are first downloaded into `sweep_dir`, its mirror."""
    from ray import tune

    space_json = sweep_dir / SPACE_JSON
    if uri is not None:
        remote = RemoteSweep(uri, sweep_dir)
        remote.pull(*SWEEP_FILES, exact=True)
        can = tune.Tuner.can_restore(remote.remote(RAY_SUBDIR), storage_filesystem=remote.fs)
    else:
        can = tune.Tuner.can_restore(str(ray_dir(sweep_dir)))
    if not sweep_dir.is_dir() or not space_json.is_file() or not can:
        missing = " and ".join(what for what, there in (
            (SPACE_JSON, space_json.is_file()),
            (f"Ray Tune experiment ({RAY_SUBDIR}/)", can)) if not there)
        raise UserError(
            f"--resume: {sweep_dir} holds no sweep to resume (no {missing}); check "
            "--storage/--name or start a new sweep without --resume"
        )
    space = read_space(sweep_dir, uri)
    refuse_live_driver(sweep_dir, space)
    saved = space["flags"]
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
    # Settings that keep or record the sweep's data hold for every session, not only the one
    # that started it: the command printed after an interrupt (`--resume DIR`) repeats neither,
    # and taking them from its command line deleted the checkpoints a --keep-checkpoints sweep
    # kept and silenced its trackers. --keep-checkpoints given now keeps more, never less
    # (there is no flag that turns it off); --log given now replaces the saved trackers.
    out["keep_checkpoints"] = bool(saved.get("keep_checkpoints")) or bool(
        flags.get("keep_checkpoints"))
    out["log"] = list(flags["log"]) if "log" in given else list(saved.get("log") or [])
    doc = load_reseed(sweep_dir)
    for key in RESEED_FLAGS:
        # Kept from the start unless given now. Repeats planned on an earlier --resume are
        # recorded in reseed.json only (space.json keeps the starting flags): read them there,
        # so that `--resume DIR` continues interrupted repeats instead of skipping them.
        if key in given:
            out[key] = flags[key]
        elif doc is not None:
            out[key] = int(doc["top"] if key == "reseed_top" else doc["seeds"])
        else:
            out[key] = saved.get(key, DEFAULTS[key])
    if doc is not None and out["reseed_top"] and (
            (out["reseed_top"], out["seeds"]) != (doc["top"], doc["seeds"])):
        raise UserError(
            f"--resume: the seed repeats of {sweep_dir.name} were planned with --reseed-top "
            f"{doc['top']} --seeds {doc['seeds']}; drop the flags or start a new sweep"
        )
    return out


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(list_text())
        return 0
    flags, given = resolve_flags(args)
    flags.update(dashboard=args.dashboard, keep_checkpoints=args.keep_checkpoints,
                 report=args.report, quiet=args.quiet)
    check_flags(flags)
    parse_logs(flags["log"])  # an unknown tracker or a missing library: one line, before Ray
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
    for given_uri in (args.resume, flags["storage"]):
        if is_uri(given_uri):
            check_uri(given_uri)  # s3:// without a bucket: one line before anything else
    resuming = args.resume is not None
    if resuming:
        if not args.resume and not flags["name"]:
            raise UserError("--resume needs the sweep: --resume SWEEP_DIR, or --storage and --name")
        sweep_dir = sweep_dir_for(flags, args.resume or None)
        uri = sweep_uri_of(args.resume or None, flags)
        flags = load_resumed_flags(sweep_dir, flags, given, uri)
        parse_logs(flags["log"])  # the saved trackers, too: one line before Ray if one is gone
        flags["name"] = sweep_dir.name
        flags["storage"] = uri.rsplit("/", 1)[0] if uri else str(sweep_dir.parent)
        if not args.dry_run:
            set_aside_unreadable_table(sweep_dir)
            planned = int(read_space(sweep_dir, uri).get("num_trials", 0))
            finished, n_errored = sweep_state(sweep_dir, planned)
            if finished and flags["reseed_top"]:  # and its seed repeats, when it has them
                doc = load_reseed(sweep_dir)
                finished = doc is not None and reseed_finished(
                    read_table(sweep_dir / RESULTS_PARQUET), doc)
                if doc is not None:
                    planned = len(doc["search_trials"]) + len(doc["points"])
            if finished and not (args.retry_errored and n_errored):
                # Nothing to run: say so and touch nothing (no file of the sweep is rewritten).
                text, _ = summarize(sweep_dir, flags["metric"], _axes_of(sweep_dir), planned)
                print(f"{uri or sweep_dir} is finished; nothing to resume", flush=True)
                print(text, flush=True)
                if n_errored:
                    print(retry_hint(shlex.quote(str(uri or sweep_dir)), n_errored), flush=True)
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
        plan = make_plan(
            flags["space"], dataset=flags["dataset"], data_dir=flags["data_dir"],
            labels=flags["labels"], raw_set=parse_set(flags["set"]), search=flags["search"],
            max_trials=flags["max_trials"], seed=flags["seed"],
            concurrency=planned_concurrency(flags), protocol=flags["protocol"],
            scheduler=flags["scheduler"],
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
    # The runner imports Ray, which reads the environment set above when first imported.
    from tune.runner import run

    # provenance: the command as typed, or as a caller of main() would type it
    command = None if argv is None else ["tune/run_sweep.py", *argv]
    # keep_checkpoints: the sweep's setting (on --resume the saved one, load_resumed_flags)
    return run(flags, sweep_dir, resuming, args.dashboard, args.quiet, args.report,
               flags["keep_checkpoints"], retry_errored=args.retry_errored, command=command)


def _axes_of(sweep_dir: Path) -> list[str]:
    return list(read_space(sweep_dir).get("axes", []))


if __name__ == "__main__":
    sys.exit(main())
