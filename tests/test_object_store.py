"""Sweeps on an object store (`--storage s3://...`, tune/storage.py) against a real
S3-compatible server started here on 127.0.0.1 (moto's server mode; no other network).

The module's Ray session is started after the S3 endpoint and credentials are in the
environment, so that every worker reaches the same server."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune.run_sweep import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tune" / "run_sweep.py"

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


def test_a_sweep_writes_everything_to_the_store(s3, capsys):
    # one trial at a time: the second runs in the first one's reused worker process, whose
    # files (in Ray 2.60, under get_trial_dir()) never reached the store before
    assert main([*TINY, "--storage", "s3://bucket/sweeps", "--name", "s",
                 "--concurrency", "1"]) == 0
    out = capsys.readouterr().out
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
    # the finished trials' checkpoints are pruned in the store as on a disk: the best trial's
    # stays (the one a user would load), and the summary names it by its URI
    holders = {i.path.split("/")[4] for i in infos if "/checkpoint_" in i.path}
    # the live checkpoint is uploaded once, as Ray's checkpoint, never with the trainer's files
    assert not [i.path for i in infos if "/trainer/checkpoint" in i.path]
    best = table.loc[table["val_full_top1"].idxmax(), "trial_id"]
    assert holders == {best}, (holders, best)
    assert f"checkpoints kept: the best trial's: s3://bucket/sweeps/s/ray/{best}/checkpoint_" in out


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


def test_a_new_sweep_never_overwrites_one_in_the_store(s3, tmp_path, monkeypatch, capsys):
    # another machine: its mirror is empty, the store holds the finished sweep
    monkeypatch.setenv("S4L_MIRROR_DIR", str(tmp_path / "other"))
    before = _read(s3, "bucket/sweeps/s/results.parquet")
    assert main([*TINY, "--storage", "s3://bucket/sweeps", "--name", "s"]) == 2
    assert "s3://bucket/sweeps/s already holds a sweep" in capsys.readouterr().err
    assert _read(s3, "bucket/sweeps/s/results.parquet") == before


def test_report_and_resume_of_a_finished_sweep_from_the_uri(s3, tmp_path, monkeypatch, capsys):
    from analysis.cli import main as report_main

    monkeypatch.setenv("S4L_MIRROR_DIR", str(tmp_path / "other"))
    assert main(["--resume", "s3://bucket/sweeps/s"]) == 0
    assert "s3://bucket/sweeps/s is finished; nothing to resume" in capsys.readouterr().out
    s3.delete_dir("bucket/sweeps/s/report")
    assert report_main(["s3://bucket/sweeps/s", "--forests", "2", "--draws", "50", "--boot", "50",
                        "--permutations", "50"]) == 0
    out = capsys.readouterr().out
    summary = _read(s3, "bucket/sweeps/s/report/summary.txt").decode()
    assert summary and summary in out  # built from the store's files and uploaded there
    assert _read(s3, "bucket/sweeps/s/report/index.html")
    assert report_main(["s3://bucket/nothing/here"]) == 2
    assert "no sweep there" in capsys.readouterr().err


def test_an_interrupted_sweep_resumes_on_another_machine_from_the_uri(s3, tmp_path, monkeypatch):
    uri = "s3://bucket/sweeps/r"
    args = ["--space", "baseline_10pct", "--max-trials", "3", "--concurrency", "1", "--no-report",
            "--set", "arch=resnet18_v1", "--set", "width=0.5", "--set", "epochs=30",
            "--set", "batch_size=32", "--set", "labels=10/class",
            "--storage", "s3://bucket/sweeps", "--name", "r"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "S4L_MIRROR_DIR": str(tmp_path / "a")}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def completed() -> int:
        try:
            csv = _read(s3, "bucket/sweeps/r/results.csv").decode()
        except OSError:
            return 0
        return pd.read_csv(io.StringIO(csv))["status"].eq("completed").sum() if csv else 0

    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and completed() < 1:
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert f"--resume {uri}" in out  # the URI, not this machine's mirror
    first = pd.read_parquet(io.BytesIO(_read(s3, "bucket/sweeps/r/results.parquet")))
    done = set(first.loc[first.status == "completed", "trial_id"])
    assert 1 <= len(done) < 3
    stamps = {t: _read(s3, f"bucket/sweeps/r/ray/{t}/trainer/metrics.json") for t in done}

    monkeypatch.setenv("S4L_MIRROR_DIR", str(tmp_path / "b"))  # another machine
    # ... whose mirror of this URI holds a file of an earlier sweep of the same name that the
    # store lacks: a reseed.json there made the resume skip the search's remaining trials
    from tune.storage import mirror_dir

    stale = mirror_dir(uri) / "reseed.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"top": 1, "seeds": 1, "metric": "val_full_top1",
                                 "finalists": [], "points": [], "search_trials": sorted(done)}))
    assert main(["--resume", uri, "--quiet"]) == 0
    assert not stale.exists() and stale.with_name("reseed.json.not-in-store").is_file()
    final = pd.read_parquet(io.BytesIO(_read(s3, "bucket/sweeps/r/results.parquet")))
    assert len(final) == 3 and (final.status == "completed").all()
    for t in done:  # completed trials were not run again
        assert _read(s3, f"bucket/sweeps/r/ray/{t}/trainer/metrics.json") == stamps[t]
    sessions = json.loads(_read(s3, "bucket/sweeps/r/space.json"))["provenance"]["sessions"]
    assert [x["outcome"] for x in sessions] == ["interrupted", "finished"]


def test_a_uri_without_a_bucket_or_an_unreachable_store_is_one_line(tmp_path):
    # The audit: s3:// gave pyarrow's "Path cannot start with a separator" traceback, and a
    # store that cannot be reached an OSError NETWORK_CONNECTION traceback (sweep, --resume and
    # s4l-report alike). No Ray and no server: port 9 on 127.0.0.1 refuses connections.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "S4L_MIRROR_DIR": str(tmp_path / "mirror")}
    report = [sys.executable, "-c", "import sys; from analysis.cli import main; "
              "sys.argv[0] = 's4l-report'; sys.exit(main())"]
    sweep = [sys.executable, str(SCRIPT)]
    cases = [
        (sweep + ["--resume", "s3://"], "s3://: no bucket"),
        (sweep + ["--resume", "s3:///p/x"], "s3:///p/x: no bucket"),
        (sweep + [*TINY, "--storage", "s3://", "--name", "x"], "s3://: no bucket"),
        (report + ["s3://"], "s3://: no bucket"),
        (sweep + [*TINY, "--storage", "s3://bucket/p", "--name", "x"],
         "s3://bucket/p/x: the object store cannot be reached"),
        (sweep + ["--resume", "s3://bucket/x"], "s3://bucket/x: the object store cannot be reached"),
        (report + ["s3://bucket/x"], "s3://bucket/x: the object store cannot be reached"),
    ]
    for argv, needle in cases:
        p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        err = p.stderr.strip()
        assert p.returncode == 2 and "Traceback" not in err, (argv, err)
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {needle}"), (argv, err)
        if "reached" in needle:
            assert "AWS_ENDPOINT_URL" in err and "NETWORK_CONNECTION" in err


def test_seed_repeats_plan_reaches_the_store_before_their_rows(s3, monkeypatch):
    """reseed.json (the finalists and their repeats) used to reach the store only when the
    sweep ended, while the repeats' rows went up as they finished: a driver killed during the
    repeats left a store whose --resume (on a machine without this mirror) planned the repeats
    again from a table that held some of them, and counted them twice."""
    from tune.storage import RemoteSweep

    pushed: list[tuple[str, ...]] = []
    real = RemoteSweep.push

    def record(self, *rels):
        pushed.append(rels)
        return real(self, *rels)

    monkeypatch.setattr(RemoteSweep, "push", record)
    assert main(["--space", "baseline_10pct", "--max-trials", "2", "--quiet", "--no-report",
                 "--stand-in-trainer", "4", "--reseed-top", "1", "--seeds", "3",
                 "--storage", "s3://bucket/sweeps", "--name", "rs"]) == 0
    first_plan = next(i for i, rels in enumerate(pushed) if "reseed.json" in rels)
    tables = [i for i, rels in enumerate(pushed) if "results.parquet" in rels]
    # the plan went up before the repeats' rows did (the search's 2 trials, then 2 repeats)
    assert first_plan < tables[-1], pushed
    doc = json.loads(_read(s3, "bucket/sweeps/rs/reseed.json"))
    assert len(doc["points"]) == 2
