"""Packing several trials on one GPU (`--gpus-per-trial 0.25`), checked without a GPU.

The module's Ray session declares one logical GPU, which Ray schedules like a real one; the
trials are the test-only stand-in (tests/stand_in.py), so nothing needs CUDA.
What is checked is our side of packing: the concurrency the CLI derives from the GPU share
and the cluster's GPUs, and that every packed trial runs and lands in the table.
The images/s gain of packing needs a real GPU: bench/gpu_packing.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tune.run_sweep import main


@pytest.fixture(scope="module")
def ray_with_one_gpu():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("share, at_once", [(0.25, 4), (0.5, 2)])
def test_a_gpu_share_sets_how_many_trials_run_at_once_and_all_of_them_finish(
    ray_with_one_gpu, tmp_path, capsys, share, at_once
):
    rc = main(["--space", "baseline_1pct", "--max-trials", "8", "--stand-in-trainer", "2",
               "--gpus-per-trial", str(share), "--cpus-per-trial", "0.5", "--no-report",
               "--quiet", "--storage", str(tmp_path), "--name", "packed"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"{at_once} at a time (0.5 CPU + {share:g} GPU each)" in out
    df = pd.read_parquet(tmp_path / "packed" / "results.parquet")
    assert len(df) == 8 and (df["status"] == "completed").all()


def test_more_gpu_than_the_cluster_has_is_refused(ray_with_one_gpu, tmp_path, capsys):
    rc = main(["--space", "baseline_1pct", "--max-trials", "2", "--stand-in-trainer", "2",
               "--gpus-per-trial", "2", "--no-report", "--quiet", "--storage", str(tmp_path)])
    assert rc == 2
    assert "the Ray cluster has 1 GPU(s)" in capsys.readouterr().err
