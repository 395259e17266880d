"""Tracking (`--log`), provenance (space.json) and cost (device-seconds per row) of a sweep.

One real tiny sweep on digits logs to TensorBoard, MLflow (a SQLite store) and W&B (offline)
at once; each tracker's records are read back with its own library's reader (TensorBoard's
event accumulator, `mlflow.search_runs`, W&B's protobuf records in the offline run file) and
must hold every trial's configuration and the same metric values as the results table.
"""

from __future__ import annotations

import importlib.metadata
import json
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import write_sweep

from analysis import cost
from analysis.load import load_sweep
from s4l_models.errors import UserError
from tune import provenance
from tune.run_sweep import main
from tune.runner import end_session, start_session
from tune.tracking import parse_logs

TINY = ["--space", "baseline_10pct", "--max-trials", "2", "--no-report", "--quiet",
        "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "epochs=10",
        "--set", "batch_size=64"]


@pytest.fixture(scope="module")
def logged_sweep(ray_session, tmp_path_factory):
    st = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    try:
        rc = main([*TINY, "--storage", str(st), "--name", "s", "--log", "tensorboard",
                   "--log", f"mlflow=sqlite:///{st}/mlflow.db", "--log", "wandb"])
    finally:
        mp.undo()
    assert rc == 0
    table = pd.read_parquet(st / "s" / "results.parquet")
    assert (table.status == "completed").all() and len(table) == 2
    return st, table


def _by_value(table: pd.DataFrame) -> dict[tuple, float]:
    """(wd, lr) of each trial -> its final val_full_top1 (the grid's two points differ in them)."""
    return {(float(r.wd), float(r.lr)): float(r.val_full_top1) for r in table.itertuples()}


def test_tensorboard_events_hold_every_evaluation(logged_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    st, table = logged_sweep
    files = sorted((st / "s" / "ray").rglob("events.out.tfevents*"))
    assert len(files) == 2
    finals = []
    for f in files:
        acc = EventAccumulator(str(f.parent))
        acc.Reload()
        series = acc.Scalars("ray/tune/val_full_top1")
        steps = acc.Scalars("ray/tune/step")
        assert len(series) == 2  # FIFO: the half-way and the final evaluation
        assert steps[-1].value == table.total_steps.iloc[0]
        finals.append(series[-1].value)
    assert sorted(finals) == pytest.approx(sorted(table.val_full_top1), abs=1e-6)


def test_mlflow_runs_carry_the_configuration_and_the_metrics(logged_sweep):
    import mlflow

    st, table = logged_sweep
    mlflow.set_tracking_uri(f"sqlite:///{st}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["s"])
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    got = {(float(r["params.wd"]), float(r["params.lr"])): float(r["metrics.val_full_top1"])
           for _, r in runs.iterrows()}
    assert got == pytest.approx(_by_value(table), abs=1e-6)
    # the sweep's fixed settings are parameters too, not only the swept axes
    assert set(runs["params.method"]) == {"supervised"} and set(runs["params.arch"]) == {
        "resnet18_v1"}
    # and the settings left at their defaults, as the results table has them
    for key in ("seed", "momentum", "split_seed"):
        assert set(runs[f"params.{key}"]) == {str(v) for v in table[key]}, key
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(runs["run_id"].iloc[0], "val_full_top1")
    assert len(history) == 2


def _wandb_records(path: Path):
    """The protobuf Records of a W&B run file: a 7-byte W&B header, then LevelDB log blocks
    of 32 KiB whose records have a 7-byte header (CRC32, length, type: full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left  # block trailer
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left  # zero padding to the block's end
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full or last
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _wandb_run(f: Path) -> tuple[dict, list[dict]]:
    config, history = {}, []
    for rec in _wandb_records(f):
        kind = rec.WhichOneof("record_type")
        if kind == "config":
            config.update({_key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
    return config, history


def test_wandb_offline_runs_hold_the_configuration_and_the_metrics(logged_sweep):
    st, table = logged_sweep
    files = sorted((st / "s" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    got = {}
    for f in files:
        # W&B's own service process writes the run file; on a loaded machine its last records
        # can land a few seconds after the sweep has returned (seen once in CI), so wait for
        # them, up to a minute
        deadline = time.monotonic() + 60
        config, history = _wandb_run(f)
        while (len([h for h in history if "val_full_top1" in h]) < 2
               and time.monotonic() < deadline):
            time.sleep(1)
            config, history = _wandb_run(f)
        scores = [h["val_full_top1"] for h in history if "val_full_top1" in h]
        assert len(scores) == 2
        got[(float(config["wd"]), float(config["lr"]))] = scores[-1]
    assert got == pytest.approx(_by_value(table), abs=1e-6)


def test_space_json_records_what_produced_the_sweep(logged_sweep):
    st, _ = logged_sweep
    sessions = json.loads((st / "s" / "space.json").read_text())["provenance"]["sessions"]
    assert len(sessions) == 1
    s = sessions[0]
    assert s["outcome"] == "finished" and s["finished"] >= s["started"]
    assert "--log tensorboard" in s["command"] and "baseline_10pct" in s["command"]
    for lib in ("torch", "torchvision", "ray", "optuna", "numpy"):
        assert s["libraries"][lib] == importlib.metadata.version(lib)
    assert s["cpu"]["count"] >= 1 and s["os"] and s["python"]
    assert s["ray_nodes"] == 1
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True).stdout.strip()
        assert s["project"]["git"]["commit"] == head
    assert provenance.describe(sessions).count("\n") == 0  # one line per session


def test_every_row_has_its_device_seconds_and_code_version(logged_sweep):
    _, table = logged_sweep
    assert (table.cpus == 1.0).all() and (table.gpus == 0.0).all()
    assert (table.cpu_seconds == table.train_seconds).all() and (table.gpu_seconds == 0).all()
    assert (table.cpu_seconds > 0).all()
    assert table.code_version.str.startswith(importlib.metadata.version("s4l-tune")).all()


def test_no_log_means_no_tracker_files(ray_session, tmp_path):
    assert main([*TINY, "--max-trials", "1", "--storage", str(tmp_path), "--name", "s"]) == 0
    assert not list(tmp_path.rglob("events.out.tfevents*"))
    assert not (tmp_path / "s" / "wandb").exists() and not list(tmp_path.rglob("*.db"))


@pytest.mark.parametrize("specs, problem", [
    (["comet"], "unknown tracker"),
    (["tensorboard=/x"], "takes no value"),
    (["mlflow", "mlflow=sqlite:///a.db"], "given twice"),
    # a server that is not running: one line at once (Ray's callback retried for minutes, then
    # failed with a traceback inside a half-made sweep directory)
    (["mlflow=http://127.0.0.1:9"], "the tracking store cannot be used"),
])
def test_bad_log_values_are_one_line_errors(specs, problem):
    with pytest.raises(UserError, match=problem):
        parse_logs(specs)


def test_resumed_sessions_are_appended_and_a_killed_one_is_marked(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps({"axes": []}))
    first = provenance.collect(["tune/run_sweep.py", "--space", "x"])
    start_session(tmp_path, first)  # never ended: the process was killed
    second = provenance.collect(["tune/run_sweep.py", "--resume", str(tmp_path)])
    start_session(tmp_path, second)
    end_session(tmp_path, second, "finished")
    s = json.loads((tmp_path / "space.json").read_text())["provenance"]["sessions"]
    assert [x["id"] for x in s] == [first["id"], second["id"]]
    assert s[0]["finished"] is None and s[0]["outcome"].startswith("killed")
    assert s[1]["outcome"] == "finished" and s[1]["finished"] is not None
    assert s[1]["command"].endswith(f"--resume {tmp_path}")


def test_driver_state_tells_a_live_driver_from_a_dead_or_reused_pid():
    import os
    import sys

    live = provenance.collect(["tune/run_sweep.py"])  # this process, started before now
    assert live["pid"] == os.getpid() and provenance.driver_state(live) == "alive"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert provenance.driver_state({**live, "pid": dead.pid}) == "gone"
    assert provenance.driver_gone({**live, "pid": dead.pid})
    # a process that started after the session cannot be its driver (a reused pid)
    reused = {**live, "started": "2001-01-01T00:00:00+0000"}
    assert provenance.driver_state(reused) == "unknown" and not provenance.driver_gone(reused)
    assert provenance.driver_state({**live, "hostname": "another-machine"}) == "unknown"


def test_resume_is_refused_while_the_sweep_s_driver_runs(logged_sweep, tmp_path, capsys):
    import shutil

    st, _ = logged_sweep
    d = tmp_path / "s"
    shutil.copytree(st / "s", d)
    before = (d / "results.parquet").read_bytes()
    start_session(d, provenance.collect(["tune/run_sweep.py", "--space", "x"]))  # this process
    capsys.readouterr()
    assert main(["--resume", str(d), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is still being run by its driver" in err and "Traceback" not in err
    sessions = json.loads((d / "space.json").read_text())["provenance"]["sessions"]
    assert sessions[-1]["finished"] is None and "outcome" not in sessions[-1]  # left as it was
    assert (d / "results.parquet").read_bytes() == before
    # the same session on another machine (where it cannot be told) is resumed with a note
    doc = json.loads((d / "space.json").read_text())
    doc["provenance"]["sessions"][-1]["hostname"] = "another-machine"
    (d / "space.json").write_text(json.dumps(doc))
    assert main(["--resume", str(d), "--quiet"]) == 0
    assert "recorded no end; if its driver still runs, stop it first" in capsys.readouterr().out
    assert (d / "results.parquet").read_bytes() == before


def test_report_sums_the_cost_per_sweep_and_axis_value(logged_sweep, tmp_path):
    from analysis.report import build_report

    st, table = logged_sweep
    build_report([st / "s"], tmp_path)
    by_axis = pd.read_csv(tmp_path / "cost_by_axis.csv")
    for axis in ("wd", "lr"):
        rows = by_axis[by_axis.axis == axis]
        assert rows.cpu_hours.sum() * 3600 == pytest.approx(table.cpu_seconds.sum())
        assert rows.share.sum() == pytest.approx(1.0)
    assert "Cost: s: 2 trials used" in (tmp_path / "summary.txt").read_text()
    page = (tmp_path / "index.html").read_text()
    assert "--log tensorboard" in page  # the session's command, from space.json


def test_cost_of_an_older_table_comes_from_its_flags_and_says_so(tmp_path):
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(2), 10)
    settings = [{"wd": w, "epochs": 10} for w in (1e-3, 1e-2, 1e-3)]
    d = write_sweep(tmp_path / "old", settings, rng.random((3, 20)) < 0.7, label,
                    columns={"train_seconds": [100.0, 200.0, 300.0]}, ks=(1,))
    space = json.loads((d / "space.json").read_text())
    space["flags"] = {"cpus_per_trial": 2.0, "gpus_per_trial": 0.5}
    (d / "space.json").write_text(json.dumps(space))
    c = cost.sweep_cost(load_sweep(d))
    assert c.source == "flags" and c.cpu_hours == pytest.approx(1200 / 3600)
    assert c.gpu_hours == pytest.approx(300 / 3600) and "before version 5" in c.words()
    by = cost.cost_by_axis(load_sweep(d)).set_index("value")
    assert by.loc["0.001", "trials"] == 2 and by.loc["0.001", "share"] == pytest.approx(4 / 6)


def test_a_resumed_trial_continues_its_open_mlflow_run(tmp_path):
    # an interrupted sweep leaves its trials' MLflow runs RUNNING; on --resume the restored
    # trial's callback (a new driver) continues that run instead of starting a second one
    import mlflow

    from tune.tracking import callbacks

    class FakeTrial:  # what Ray's logger callbacks use of a trial: its name, config, hash
        def __init__(self, name, config):
            self.name, self.config = name, config

        def __str__(self):
            return self.name

        def __hash__(self):
            return hash(self.name)

        def __eq__(self, other):
            return str(other) == self.name

    def driver():
        cb = callbacks([("mlflow", f"sqlite:///{tmp_path}/m.db")], tmp_path, "s",
                       settings=lambda trial: {"seed": 0})[0]
        cb.setup()
        return cb

    first, trial = driver(), FakeTrial("run_trial_00001", {"lr": 0.1})
    first.log_trial_start(trial)
    first.log_trial_result(1, trial, {"val_full_top1": 0.5, "training_iteration": 1})
    # the driver is killed here: the run stays RUNNING
    second, restored = driver(), FakeTrial("run_trial_00001", {"lr": 0.1})
    second.log_trial_start(restored)
    second.log_trial_result(2, restored, {"val_full_top1": 0.8, "training_iteration": 2})
    second.log_trial_end(restored)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/m.db")
    runs = mlflow.search_runs(experiment_names=["s"])
    assert len(runs) == 1 and list(runs["status"]) == ["FINISHED"]
    history = mlflow.tracking.MlflowClient().get_metric_history(runs["run_id"][0], "val_full_top1")
    assert [(h.step, h.value) for h in history] == [(1, 0.5), (2, 0.8)]
    assert runs["params.seed"][0] == "0"
