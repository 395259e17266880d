"""Memory and checkpoint disk as planned resources of a sweep (tune/memory_plan.py): the
estimate's shape, its parameter count and checkpoint size against real ones, the dry run's lines
and refusal, Ray's memory-kill message, and a sweep whose trial Ray's memory monitor really
kills (it is retried, becomes an errored row and the sweep exits 0)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from s4l_models.config import TrainConfig
from s4l_models.methods import PAPER_METHODS, get_method
from s4l_models.resnet import create_model
from tune import memory_plan as mp
from tune.run_sweep import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tune" / "run_sweep.py"


def need(**settings) -> int:
    base = {"method": "supervised", "arch": "resnet18_v2", "width": 1.0, "batch_size": 64,
            "dataset": "digits"}
    return mp.trial_memory_bytes({**base, **settings})


def test_estimate_grows_with_width_batch_image_size_and_method():
    assert need(width=0.5) < need(width=1.0) < need(width=2.0) < need(width=4.0)
    assert need(batch_size=16) < need(batch_size=256) < need(batch_size=4096)
    assert need(arch="resnet18_v2") < need(arch="resnet50_v2")
    assert need(dataset="digits") < need(dataset="synthetic32") < need(dataset="synthetic224")
    # more copies of the batch in one step's graph: rotation 8, VAT 4, exemplar 16
    big = {"batch_size": 1024}
    assert need(**big) < need(method="vat", **big) < need(method="s4l_rotation", **big)
    assert need(method="s4l_rotation", **big) < need(method="s4l_exemplar", **big)
    assert need(method="moam", **big) > need(method="s4l_rotation", **big)  # + VAT, Polyak
    # every estimate is at least a worker's baseline
    assert need(width=0.25) > mp.WORKER_BASELINE_BYTES


def test_every_method_and_stage_has_its_graph_factor():
    for name in PAPER_METHODS:
        cfg = TrainConfig.from_dict({"method": name, "dataset": "digits"})
        method = get_method(name)
        stages = [method] if method.stages is None else [s.method for s in method.stages(cfg)]
        for m in stages:
            assert m.name in mp.GRAPH_COPIES, (name, m.name)


@pytest.mark.parametrize("arch,width,size,chans,classes", [
    ("resnet18_v2", 0.5, 8, 1, 10), ("resnet50_v1", 1.0, 224, 3, 1000), ("resnet34_v2", 2.0, 32, 3, 100),
])
def test_parameters_counted_on_meta_match_a_real_model(arch, width, size, chans, classes):
    params, buffers, tensors, _, features, _, _ = mp._backbone(arch, width, classes, size, chans)
    real = create_model(arch, width=width, num_classes=classes, image_size=size, in_chans=chans)
    assert params == sum(p.numel() for p in real.parameters())
    assert buffers == sum(b.numel() * b.element_size() for b in real.buffers())
    assert tensors == len(real.state_dict()) and features == real.num_features
    if (arch, width, classes) == ("resnet50_v1", 1.0, 1000):
        assert params == 25_557_032  # torchvision's ResNet-50


@pytest.mark.parametrize("method,polyak", [("supervised", False), ("s4l_rotation", True)])
def test_checkpoint_bytes_is_close_to_a_real_state_pt(tmp_path, method, polyak):
    from s4l_models.run import train

    cfg = TrainConfig.from_dict({
        "method": method, "arch": "resnet18_v2", "width": 0.5, "batch_size": 32,
        "labels": "10/class", "epochs": 3.2, "eval_every": 3.2, "warmup_epochs": 0.0,
        "dataset": "digits", "threads": 1, "device": "cpu", "polyak": polyak,
    })
    train(cfg, tmp_path, log=lambda line: None)
    real = (tmp_path / "checkpoint" / "state.pt").stat().st_size
    assert 1.0 <= mp.checkpoint_bytes(cfg) / real < 1.3


def test_ray_request_rounds_up_to_a_step():
    assert mp.ray_request(1) == mp.REQUEST_STEP
    assert mp.ray_request(mp.REQUEST_STEP) == mp.REQUEST_STEP
    assert mp.ray_request(mp.REQUEST_STEP + 1) == 2 * mp.REQUEST_STEP
    setup = {"fixed": {"dataset": "digits", "method": "supervised"}, "runtime": {},
             "stand_in": None}
    res = mp.trial_resources({"arch": "resnet18_v2", "width": 1.0}, setup, cpus=1.0, gpus=0.0)
    assert res["cpu"] == 1.0 and res["memory"] >= need(batch_size=256)
    assert mp.trial_need({}, {**setup, "stand_in": 3}) == mp.STAND_IN_BYTES


def test_dry_run_prints_the_largest_trials_memory_and_the_disk_peak(capsys):
    assert main(["--space", "baseline_1pct", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    memory = next(ln for ln in lines if ln.startswith("memory per trial"))
    assert memory.count("arch=") == 3 and "at a time need up to" in memory
    disk = next(ln for ln in lines if ln.startswith("checkpoint disk at the peak"))
    assert "largest checkpoint" in disk and "the best finished trial's" in disk


def test_dry_run_refuses_a_trial_bigger_than_this_machine(capsys, tmp_path):
    rc = main(["--space", "baseline_10pct", "--dry-run", "--set", "arch=resnet50_v2",
               "--set", "width=4", "--set", "batch_size=100000", "--storage", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "width=4" in err and "batch_size=100000" in err and "GiB" in err
    assert "--set" in err and "bigger node" in err
    # with --address the cluster's nodes are checked when the sweep starts instead
    assert main(["--space", "baseline_10pct", "--dry-run", "--set", "arch=resnet50_v2",
                 "--set", "width=4", "--set", "batch_size=100000", "--address", "auto"]) == 0


def test_memory_kill_message_is_one_line_with_the_need():
    from tune.results_table import memory_kill_message

    ray_text = (
        "Failure # 1 (occurred at 2026-01-01_00-00-00)\n1 worker(s) were killed due to the node "
        "running low on memory. Memory on the node (IP: 127.0.0.1, ID: ab) was 22.10GB used / "
        "23.54GB limit (0.94)\nOOM kill reason: ...\nRefer to the documentation ..."
    )
    msg = memory_kill_message(ray_text, 3 * 2**30)
    assert msg.startswith("killed by Ray's memory monitor") and "\n" not in msg
    assert "22.10GB used of 23.54GB" in msg and "3.00 GiB" in msg and "batch_size" in msg
    assert memory_kill_message("torch.OutOfMemoryError: CUDA out of memory.") is None


def test_ray_oom_on_an_actor_task_fails_the_trial_instead_of_the_sweep():
    """Ray 2.60 raises "Caught unexpected exception" out of Tuner.fit() when a trial's task
    fails with OutOfMemoryError; patched, it is the actor's death (a retried trial failure)."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    from tune.ray_fixes import tolerate_memory_kills

    assert tolerate_memory_kills() and tolerate_memory_kills()  # idempotent
    seen = []
    actor = SimpleNamespace(actor_id="a", _on_error=lambda a, e: seen.append(("actor", e)))
    task = SimpleNamespace(_tracked_actor=actor, _on_error=lambda a, e: seen.append(("task", e)))
    manager = SimpleNamespace(_failed_actor_ids=set(), _cleanup_actor=lambda tracked_actor: None)
    text = "1 worker(s) were killed due to the node running low on memory. Memory on the node"
    RayActorManager._actor_task_failed(manager, task, OutOfMemoryError(text))
    assert [k for k, _ in seen] == ["actor", "task"] and manager._failed_actor_ids == {"a"}
    assert all(isinstance(e, RayActorError) and text in str(e) for _, e in seen)


def test_a_trial_killed_by_rays_memory_monitor_is_an_errored_row_and_the_sweep_goes_on(tmp_path):
    # Ray's memory monitor kills a worker when the node's used memory is above the threshold:
    # at 5% of this machine (always above) it kills the trial's worker as soon as it starts,
    # and again on its retry (--max-failures 1). Driver and Ray's own processes are not workers.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_memory_usage_threshold": "0.05",
           "RAY_memory_monitor_refresh_ms": "50"}
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--space", "baseline_10pct", "--max-trials", "1",
         "--set", "arch=resnet18_v1", "--set", "width=0.25", "--max-failures", "1",
         "--no-report", "--quiet", "--storage", str(tmp_path), "--name", "n"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "Caught unexpected exception" not in p.stderr
    df = pd.read_parquet(tmp_path / "n" / "results.parquet")
    assert list(df["status"]) == ["errored"]
    error = df["error"].iloc[0]
    assert "killed by Ray's memory monitor" in error and "needs about" in error, error
    assert "1 errored" in p.stdout
    assert time.time() - t0 < 200
