"""The dry run's GPU-hours: the GPU cost model calibrated on the committed GPU benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tune.sweep_plan import (
    GPU_FLOOR_IMAGES_PER_S,
    GPU_PACKING_SPEEDUP,
    GPU_REF_IMAGES_PER_S,
    TRIAL_OVERHEAD_S,
    Sizes,
    gpu_hours,
    gpu_trial_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES = Sizes(labeled=25_600, val=0, test=0)


def test_the_constants_are_the_committed_gpu_measurements():
    tp = json.loads((ROOT / "bench/results/trainer_throughput_gpu.json").read_text())
    assert GPU_REF_IMAGES_PER_S == pytest.approx(
        tp["cases"]["synthetic224_resnet50_v2_b256"]["trainer_images_per_s"], rel=0.01)
    pk = json.loads((ROOT / "bench/results/gpu_packing.json").read_text())
    assert GPU_FLOOR_IMAGES_PER_S == pytest.approx(pk["packings"]["1"]["aggregate_images_per_s"],
                                                   rel=0.01)
    assert {int(k): v for k, v in pk["gain_vs_one_trial"].items()} == GPU_PACKING_SPEEDUP


def test_a_resnet50_at_224_costs_its_images_at_the_measured_rate():
    cfg = dict(arch="resnet50_v2", width=1.0, batch_size=256, epochs=1, dataset="imagenet",
               method="supervised")
    secs = gpu_trial_seconds(cfg, SIZES) - TRIAL_OVERHEAD_S
    assert secs == pytest.approx(25_600 / GPU_REF_IMAGES_PER_S)
    # twice the width: four times the FLOPs; small images: launch-bound at the floor
    wide = gpu_trial_seconds({**cfg, "width": 2.0}, SIZES) - TRIAL_OVERHEAD_S
    assert wide == pytest.approx(4 * secs)
    small = gpu_trial_seconds({**cfg, "dataset": "digits", "arch": "resnet18_v2"}, SIZES)
    assert small - TRIAL_OVERHEAD_S == pytest.approx(25_600 / GPU_FLOOR_IMAGES_PER_S)


def test_packing_trials_on_a_gpu_divides_the_gpu_hours_by_the_measured_speed_up():
    assert gpu_hours(3600, 1.0) == pytest.approx(1.0)
    assert gpu_hours(3600, 0.25) == pytest.approx(1 / 4.17 * 4 * 0.25)
    assert gpu_hours(3600, 0.125) == pytest.approx(1 / 5.69)
    assert gpu_hours(3600, 2.0) == pytest.approx(2.0)  # two GPUs per trial, no speed-up assumed
    # no more trials share a GPU than run at once: 0.125 GPU per trial, 2 at a time, is two on
    # the GPU at their speed-up (2.26), not eight
    assert gpu_hours(3600, 0.125, concurrency=2) == pytest.approx(1 / 2.26)
    assert gpu_hours(3600, 0.125, concurrency=16) == pytest.approx(1 / 5.69)
    assert gpu_hours(3600, 0.125, concurrency=3) == pytest.approx(1 / ((2.26 + 4.17) / 2))
    assert gpu_hours(3600, 1.0, concurrency=4) == pytest.approx(1.0)


def test_the_dry_run_says_when_packing_goes_beyond_the_measured_and_how_the_check_went():
    import subprocess
    import sys

    def dry(*extra):
        out = subprocess.run(
            [sys.executable, str(ROOT / "tune/run_sweep.py"), "--space", "baseline_1pct",
             "--dry-run", *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    two = dry("--gpus-per-trial", "0.125", "--concurrency", "2")
    assert "2 trial(s) sharing a GPU" in two and "beyond the" not in two
    assert "held 2.2x its estimate" in two
    assert "the committed digits sweep took 0.64x its estimate" in two  # the CPU model's bias
    cal = json.loads((ROOT / "bench/results/cost_calibration.json").read_text())
    digits = next(r for r in cal["sweeps"] if r["dataset"] == "digits")
    assert digits["ratio_median"] == pytest.approx(0.64, abs=0.005)
    many = dry("--gpus-per-trial", "0.0625", "--concurrency", "16")
    assert "16 trial(s) sharing a GPU, beyond the 8 per GPU measured" in many
    check = json.loads((ROOT / "bench/results/cost_calibration_gpu.json").read_text())
    assert check["sweeps"][0]["measured_over_estimated"] == pytest.approx(2.2, abs=0.05)


def test_the_planned_steps_are_the_trainers():
    # the dry run's steps per trial are what the trainer ran: the committed main-command sweep
    import pandas as pd

    from tune.sweep_plan import describe, make_plan, trial_steps

    plan = make_plan("baseline_1pct")
    ran = pd.read_parquet(ROOT / "docs/figure3_digits/results.parquet")
    search = ran[ran["seed"] == 0]  # the 24 search trials (the rest are seed repeats)
    assert sorted(trial_steps(plan)) == sorted(search["total_steps"].astype(int))
    text = describe(plan, "fifo", "val_full_top1", 1, 0, 2)
    assert "optimizer steps per trial: 200-2,000 (median 200; 130 labeled images per epoch)" in text
