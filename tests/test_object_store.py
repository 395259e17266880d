"""Sweeps on an object store (`--storage s3://...`, tune/storage.py) against a real
S3-compatible server started here on 127.0.0.1 (moto's server mode; no other network).

The module's Ray session is started after the S3 endpoint and credentials are in the
environment, so that every worker reaches the same server."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest

from tune.run_sweep import main

TINY = ["--space", "baseline_10pct", "--max-trials", "2", "--quiet",
        "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "epochs=10",
        "--set", "batch_size=64"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    moto_server = pytest.importorskip("moto.server")
    import pyarrow.fs as pafs
    import ray

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = dict(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://{host}:{port}",
               S4L_MIRROR_DIR=str(tmp_path_factory.mktemp("mirror")))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = pafs.S3FileSystem(endpoint_override=f"http://{host}:{port}", access_key="test",
                           secret_key="test", region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("bucket")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield fs
    ray.shutdown()
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _read(fs, path) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def test_a_sweep_writes_everything_to_the_store(s3):
    assert main([*TINY, "--storage", "s3://bucket/sweeps", "--name", "s"]) == 0
    table = pd.read_parquet(io.BytesIO(_read(s3, "bucket/sweeps/s/results.parquet")))
    assert len(table) == 2 and (table.status == "completed").all()
    assert table.trial_dir.str.startswith("s3://bucket/sweeps/s/ray/").all()
    space = json.loads(_read(s3, "bucket/sweeps/s/space.json"))
    assert space["provenance"]["sessions"][-1]["outcome"] == "finished"
    with np.load(io.BytesIO(_read(s3, "bucket/sweeps/s/predictions.npz"))) as z:
        assert len(z["trial_ids"]) == 2
    for name in ("splits.npz", "report/index.html", "report/summary.txt"):
        assert _read(s3, f"bucket/sweeps/s/{name}")
    # each trial's trainer files and its checkpoint are in Ray's experiment in the store
    for tid in table.trial_id:
        assert _read(s3, f"bucket/sweeps/s/ray/{tid}/trainer/metrics.json")
    import pyarrow.fs as pafs
    infos = s3.get_file_info(pafs.FileSelector("bucket/sweeps/s/ray", recursive=True))
    assert any("/checkpoint_" in i.path for i in infos)


def test_a_killed_trial_resumes_from_its_checkpoint_in_the_store(s3):
    # every trial's process dies at its first evaluation at or after step 5, before reporting
    # it; Ray restarts it from its last checkpoint, which lives only in the store
    rc = main([*TINY, "--storage", "s3://bucket/sweeps", "--name", "crash", "--set",
               "evaluations=10", "--fail-at-step", "15", "--max-failures", "2"])
    assert rc == 0
    table = pd.read_parquet(io.BytesIO(_read(s3, "bucket/sweeps/crash/results.parquet")))
    assert (table.status == "completed").all()
    for tid in table.trial_id:
        log = _read(s3, f"bucket/sweeps/crash/ray/{tid}/trainer/train.log").decode()
        assert "resuming from" in log


def test_resume_and_report_work_from_the_uri(s3, tmp_path, capsys):
    assert main(["--resume", "s3://bucket/sweeps/s"]) == 0
    assert "is finished; nothing to resume" in capsys.readouterr().out
