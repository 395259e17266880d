"""An errored or restarted trial's cost (tune/results.py: `train_seconds`, hence `cpu_seconds`
and `gpu_seconds`) counts the time its attempts ran, from the trainer's log, not only up to the
last result Ray received. No Ray, no training: the logs are written in the trainer's format
(the lines below are the audit's B_div trial e3e03_00001, whose worker died after step 300)."""

from __future__ import annotations

import pytest

from s4l_models.config import TrainConfig
from tune.results import logged_seconds, make_row

HEAD = ("training supervised resnet18_v1 x0.5 on digits (130 labeled, 500 val) for 200 epochs "
        "= 400 steps of 65 on cpu")


def ev(step: int, seconds: float, tag: str = "") -> str:
    line = (f"epoch {step // 2}/200 step {step}/400 loss 0.1 lr 0.07617 | val top1 full 0.904 "
            f"1pc 0.900 5pc 0.920 | {seconds:.1f}s")
    return f"[{tag}] {line}" if tag else line


def write_log(tmp_path, lines):
    d = tmp_path / "trial"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.log").write_text("\n".join(lines) + "\n")
    return d


def row(d, status, last):
    res = {"cpu": 2.0, "gpu": 0.0}
    return make_row("t", status, TrainConfig().to_dict(), last, str(d), resources=res)


def test_an_errored_trial_counts_the_evaluations_ray_never_received(tmp_path):
    d = write_log(tmp_path, [HEAD, ev(100, 8.4), ev(200, 18.5), ev(300, 33.9)])
    last = {"step": 200, "total_steps": 400, "train_seconds": 18.4997}  # Ray's last result
    r = row(d, "errored", last)
    assert r["train_seconds"] == pytest.approx(33.9)
    assert r["cpu_seconds"] == pytest.approx(2 * 33.9)  # the cost follows
    # a completed trial that ran once keeps its exact reported clock
    d2 = write_log(tmp_path / "b", [HEAD, ev(200, 18.5), ev(400, 40.2)])
    done = row(d2, "completed", {"step": 400, "total_steps": 400, "train_seconds": 40.2371,
                                 "training_iteration": 2, "iterations_since_restore": 2})
    assert done["train_seconds"] == 40.2371


def test_a_retried_trial_counts_the_work_its_restart_redid(tmp_path):
    # attempt 1 reached step 300 (33.9 s) and died; Ray restored it from the step-200
    # checkpoint (clock 18.5 s), and it finished at 45.0 s of that clock: 33.9 + (45.0 - 18.5)
    d = write_log(tmp_path, [
        HEAD, ev(100, 8.4), ev(200, 18.5), ev(300, 33.9),
        "resuming from /tmp/ray/checkpoint_000001",
        HEAD + ", resuming at step 200", ev(300, 30.1), ev(400, 45.0),
    ])
    assert logged_seconds(d) == pytest.approx(33.9 + 45.0 - 18.5)
    last = {"step": 400, "total_steps": 400, "train_seconds": 45.02,
            "training_iteration": 4, "iterations_since_restore": 2}
    assert row(d, "completed", last)["train_seconds"] == pytest.approx(60.4)
    # while it runs the row keeps the reported clock (the log is read once it finished)
    assert row(d, "running", {**last, "step": 300})["train_seconds"] == 45.02


def test_each_stage_of_a_multi_stage_run_counts_from_its_own_clock(tmp_path):
    a, b = "stage 1/2 supervised", "stage 2/2 pseudolabel"
    d = write_log(tmp_path, [
        f"[{a}] {HEAD}", ev(200, 10.0, a), ev(400, 20.0, a),
        f"[{b}] labelling 1000 training images with the previous stage",
        f"[{b}] {HEAD}", ev(200, 12.0, b),
        "resuming from /tmp/ckpt",
        f"[{b}] {HEAD}, resuming at step 200", ev(400, 25.0, b),
    ])
    assert logged_seconds(d) == pytest.approx(20.0 + 12.0 + (25.0 - 12.0))


def test_without_a_log_the_reported_clock_stands(tmp_path):
    assert logged_seconds(tmp_path / "missing") is None
    assert logged_seconds("s3://bucket/sweep/ray/t/trainer") is None
    r = row(tmp_path / "missing", "errored", {"step": 200, "train_seconds": 18.5})
    assert r["train_seconds"] == 18.5
