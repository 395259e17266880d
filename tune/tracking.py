"""Experiment tracking, opt-in: `--log tensorboard|mlflow[=URI]|wandb[=PROJECT]`, repeatable.

Each kind is Ray Tune's own logger callback, so every trial appears as a run with its
configuration as parameters and every evaluation's metrics as a series (one point per report:
`evaluations` per trial, 2 under FIFO by default):

- `tensorboard`: `ray.tune.logger.TBXLoggerCallback` (tensorboardX) writes event files into each
  trial's Ray directory, `<sweep>/ray/<trial>/events.out.tfevents.*` (a seed repeat's under
  `<sweep>/ray-reseed/`): `tensorboard --logdir <sweep>`.
- `mlflow[=URI]`: `ray.air.integrations.mlflow.MLflowLoggerCallback`, one MLflow experiment
  named after the sweep; the tracking URI defaults to a SQLite store in the sweep,
  `sqlite:///<sweep>/mlflow.db` (`mlflow ui --backend-store-uri ...`).
- `wandb[=PROJECT]`: `ray.air.integrations.wandb.WandbLoggerCallback`, project = the sweep's
  name unless given; offline (`<sweep>/wandb/offline-run-*`, `wandb sync` uploads them) unless
  WANDB_MODE is set, so nothing leaves the machine by default.

With no `--log` no logger runs (Ray's default loggers stay off: tune/runner.py says why).
The libraries are the optional extra `pip install -e ".[tracking]"`; asking for one that is not
installed is a one-line error before anything runs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from s4l_models.errors import UserError, first_line

KINDS = {
    # kind: (module that must be importable, pip name)
    "tensorboard": ("tensorboardX", "tensorboardX"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


def parse_logs(specs: list[str] | None) -> list[tuple[str, str | None]]:
    """`["tensorboard", "mlflow=sqlite:///x.db"]` -> [("tensorboard", None), ("mlflow", "...")];
    an unknown kind or a missing library is a UserError naming the fix."""
    out: list[tuple[str, str | None]] = []
    for spec in specs or []:
        kind, _, value = str(spec).partition("=")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise UserError(
                f"--log {spec!r}: unknown tracker; choose tensorboard, mlflow[=TRACKING_URI] or "
                "wandb[=PROJECT]"
            )
        if kind == "tensorboard" and value:
            raise UserError("--log tensorboard takes no value (event files go into each trial's "
                            "Ray directory)")
        module, pip_name = KINDS[kind]
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"--log {kind} needs {pip_name}, which is not installed; "
                'pip install -e ".[tracking]" (or drop --log ' + kind + ")"
            )
        if kind in (k for k, _ in out):
            raise UserError(f"--log {kind} is given twice; give each tracker once")
        if kind == "mlflow" and value.strip():
            check_mlflow_store(value.strip())
        out.append((kind, value.strip() or None))
    return out


def check_mlflow_store(uri: str) -> None:
    """A tracking store given by URI is asked for one experiment before anything runs: one
    that cannot be used (a server not running, a store MLflow refuses) is a one-line error
    here, where Ray's callback fails in its setup with a traceback, after the sweep directory
    is made and, for a closed port, minutes of retries. A SQLite file (the default, or given)
    is left to be created by the sweep."""
    if uri.startswith("sqlite:"):
        return
    from mlflow.tracking import MlflowClient

    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # any failure of the store: its own message, first line
        raise UserError(
            f"--log mlflow={uri}: the tracking store cannot be used ({first_line(err)}); check "
            "the URI and that its server runs, or give --log mlflow alone for a SQLite store in "
            "the sweep"
        ) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def mlflow_uri(value: str | None, sweep_dir: Path) -> str:
    return value or f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"


def _mlflow_callback(settings: Callable[[Any], Mapping[str, Any]], **kwargs):
    """Ray's MLflow callback, which logs a trial's config (the swept axes) as parameters, also
    logging every other setting (`settings(trial)`: the results table's resolved settings of
    the trial, as the trainer resolves them), so that each run carries its whole configuration:
    the seed of a finalist's repeat, the defaults no axis or fixed value names."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class WholeConfigMLflow(MLflowLoggerCallback):
        def log_trial_start(self, trial):
            new = trial not in self._trial_runs
            if new:
                # a trial restored by --resume continues the run its interrupted session left
                # open (Ray's callback would start a second one, the first stuck at RUNNING)
                open_run = self._open_run(str(trial))
                if open_run is not None:
                    self._trial_runs[trial] = open_run
            super().log_trial_start(trial)
            if new:
                rest = {k: v for k, v in settings(trial).items() if k not in trial.config}
                self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=rest)

        def _open_run(self, trial_name: str) -> str | None:
            util = self.mlflow_util
            if util.experiment_id is None:
                return None
            runs = util._mlflow.search_runs(
                experiment_ids=[util.experiment_id], output_format="list",
                filter_string=f"tags.trial_name = '{trial_name}' and "
                              "attributes.status = 'RUNNING'")
            return runs[0].info.run_id if runs else None

    return WholeConfigMLflow(**kwargs)


def callbacks(logs: list[tuple[str, str | None]], sweep_dir: Path, name: str,
              settings: Callable[[Any], Mapping[str, Any]] | None = None) -> list:
    """Ray Tune logger callbacks for the parsed `--log` values of a sweep called `name`;
    `settings`: a Ray trial -> all its settings (logged as MLflow parameters with the axes)."""
    out = []
    for kind, value in logs:
        if kind == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif kind == "mlflow":
            out.append(_mlflow_callback(
                settings or (lambda trial: {}), tracking_uri=mlflow_uri(value, sweep_dir), experiment_name=name,
                tags={"s4l_sweep": name}, save_artifact=False,
            ))
        elif kind == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            # offline unless the user chose a mode: nothing is uploaded without being asked.
            # The driver reads the mode (no API key needed offline); the logging actors, in
            # worker processes started before this, get it as wandb.init's `mode`.
            mode = os.environ.setdefault("WANDB_MODE", "offline")
            # wandb.init(dir=D) writes into D/wandb/
            out.append(WandbLoggerCallback(project=value or name, group=name,
                                           dir=str(Path(sweep_dir).resolve()), mode=mode))
    return out


__all__ = ["KINDS", "parse_logs", "callbacks", "mlflow_uri"]
