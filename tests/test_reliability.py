"""What happens when things fail, through the three commands as a user runs them.

1. Bad input to s4l-train, the sweep CLI and s4l-report: exit 2, one stderr line naming the
   problem, no traceback (one table of cases; add a row to extend it).
2. Unreadable images: s4l-train names the file, or with --skip-bad-images completes and counts.
3. A lost Ray node mid-sweep: its trial is retried elsewhere and the sweep completes.
4. A crash while writing a file (atomic_write, the results table) leaves the old file intact.
5. Source hygiene: torch.load only with weights_only=True; no shell=True / os.system.

Every command runs as a subprocess (about 3 s of imports each); only the node-loss test starts
Ray (a two-node local cluster, its own)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from s4l_models.io import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "s4l_models.cli"]
SWEEP = [sys.executable, "tune/run_sweep.py"]
REPORT = [sys.executable, "-m", "analysis.cli"]
TINY_TRAIN = ["--arch", "resnet18_v1", "--width", "0.25", "--epochs", "1", "--batch-size", "32"]
TINY_SWEEP = [
    "--space", "baseline_10pct", "--max-trials", "2", "--set", "epochs=2",
    "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "batch_size=32",
    "--no-report", "--quiet",
]


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}


# A guard against a hung command, not a timing goal: a loaded 2-core machine took over 120 s
# to start Ray and refuse a bad input.
def run_cli(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


# --- data fixtures ---------------------------------------------------------------------------
def _imagefolder(root: Path, corrupt: bool) -> Path:
    """A tiny ImageNet-layout tree: 2 classes x 6 train / 2 val images, one corrupt JPEG."""
    for split, n in (("train", 6), ("val", 2)):
        for ci, c in enumerate(("n01", "n02")):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (16, 12), (120 * ci, 80 + 10 * i, 30)).save(
                    d / f"img{i}.JPEG", format="JPEG")
    if corrupt:
        (root / "train" / "n01" / "img0.JPEG").write_bytes(b"\xff\xd8 this is not a jpeg")
    return root


IMAGENET_TRAIN = [
    "--dataset", "imagenet", "--labels", "100%", "--val-size", "4", "--tiny-k", "1",
    "--workers", "0", *TINY_TRAIN, "--batch-size", "4", "--eval-batch-size", "4",
]


# --- 1. bad input: one table over all three commands ----------------------------------------
# name -> (command, args, needle); "{tmp}" is the test's tmp_path, "{bad_layout}" a directory
# without train/ and val/, "{corrupt}" an ImageFolder tree holding one corrupt JPEG.
BAD_INPUT = {
    # s4l-train
    "train-unknown-method": (TRAIN, ["--method", "no_such_method"], "unknown method 'no_such_method'"),
    "train-unknown-arch": (TRAIN, ["--arch", "resnet99"], "resnet99"),
    "train-unknown-dataset": (TRAIN, ["--dataset", "no_such_data"], "unknown dataset 'no_such_data'"),
    "train-set-unknown-key": (TRAIN, ["--set", "no_such_key=1"], "no_such_key"),
    "train-set-wrong-type": (TRAIN, ["--set", "lr=abc"], "lr"),
    "train-missing-data-dir": (TRAIN, ["--dataset", "cifar10", "--data-dir", "{tmp}/nowhere"],
                               "does not exist"),
    "train-wrong-layout": (TRAIN, ["--dataset", "imagenet", "--data-dir", "{bad_layout}"],
                           "train"),
    "train-corrupt-jpeg": (TRAIN, [*IMAGENET_TRAIN, "--data-dir", "{corrupt}"],
                           "n01/img0.JPEG"),
    "train-labels-out-of-range": (TRAIN, ["--labels", "150%"], "out of range"),
    "train-tiny-k-too-large": (TRAIN, ["--tiny-k", "1,5,80", *TINY_TRAIN], "80 images per class"),
    "train-resume-without-run": (TRAIN, ["--resume"], "holds no checkpoint"),
    # the sweep
    "sweep-unknown-space": (SWEEP, ["--space", "no_such_space"], "no_such_space"),
    "sweep-unknown-method": (SWEEP, [*TINY_SWEEP, "--set", "method=no_such_method"],
                             "no_such_method"),
    "sweep-unknown-arch": (SWEEP, [*TINY_SWEEP, "--set", "arch=resnet99"], "resnet99"),
    "sweep-unknown-dataset": (SWEEP, [*TINY_SWEEP, "--dataset", "no_such_data"], "no_such_data"),
    "sweep-set-unknown-key": (SWEEP, [*TINY_SWEEP, "--set", "no_such_key=1"], "no_such_key"),
    "sweep-set-wrong-type": (SWEEP, [*TINY_SWEEP, "--set", "wd=abc"], "wd"),
    "sweep-missing-data-dir": (SWEEP, [*TINY_SWEEP, "--dataset", "cifar10", "--data-dir",
                                       "{tmp}/nowhere"], "does not exist"),
    "sweep-wrong-layout": (SWEEP, [*TINY_SWEEP, "--dataset", "imagenet", "--data-dir",
                                   "{bad_layout}"], "train"),
    "sweep-labels-out-of-range": (SWEEP, [*TINY_SWEEP, "--labels", "150%"], "out of range"),
    "sweep-tiny-k-too-large": (SWEEP, [*TINY_SWEEP, "--set", "tiny_k=1,5,80"],
                               "80 images per class"),
    "sweep-gpus-without-gpu": (SWEEP, [*TINY_SWEEP, "--gpus-per-trial", "1"], "no GPU"),
    "sweep-unreachable-address": (SWEEP, [*TINY_SWEEP, "--address", "127.0.0.1:1"],
                                  "no Ray cluster reachable"),
    "sweep-resume-empty-dir": (SWEEP, ["--resume", "{tmp}/empty"], "holds no sweep"),
    # s4l-report
    "report-no-results": (REPORT, ["{tmp}/empty"], "holds no results"),
    "report-missing-dir": (REPORT, ["{tmp}/nowhere"], "nowhere"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_names_the_problem(case, tmp_path):
    cmd, args, needle = BAD_INPUT[case]
    if case == "sweep-gpus-without-gpu":
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("a GPU is visible here")
    (tmp_path / "empty").mkdir()
    bad_layout = tmp_path / "bad_layout"
    (bad_layout / "images").mkdir(parents=True)
    corrupt = _imagefolder(tmp_path / "corrupt", corrupt=True) if "corrupt" in case else ""
    subs = {"{tmp}": str(tmp_path), "{bad_layout}": str(bad_layout), "{corrupt}": str(corrupt)}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    if cmd is TRAIN and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if cmd is SWEEP and "--resume" not in argv:
        argv += ["--storage", str(tmp_path / "runs"), "--name", "s"]
    p = run_cli([*cmd, *argv])
    err = p.stderr.strip()
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and needle in err, err
    if cmd is SWEEP and "--resume" not in argv:  # no half-made sweep left behind
        assert not (tmp_path / "runs" / "s" / "space.json").exists()


def test_skip_bad_images_completes_and_counts_the_skipped_file(tmp_path):
    data = _imagefolder(tmp_path / "data", corrupt=True)
    out = tmp_path / "out"
    p = run_cli([*TRAIN, *IMAGENET_TRAIN, "--data-dir", str(data), "--skip-bad-images",
                 "--out", str(out)], timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["skipped_images"] >= 1


# --- 2. a lost node ----------------------------------------------------------------------------
def _rows(sweep_dir: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(sweep_dir / "results.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame(columns=["status", "trial_id"])


def _started_trials(sweep_dir: Path) -> int:
    trials = sweep_dir / "trials"
    if not trials.is_dir():
        return 0
    return sum(1 for t in trials.iterdir()
               if (t / "progress.jsonl").is_file() and (t / "progress.jsonl").stat().st_size > 0)


def test_a_lost_node_mid_sweep_retries_its_trial_and_the_sweep_completes(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 1000,
                               "health_check_failure_threshold": 2},
        },
    )
    proc = None
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        d = tmp_path / "lost"
        args = [
            "--space", "baseline_10pct", "--max-trials", "2", "--concurrency", "2",
            "--set", "epochs=120", "--set", "arch=resnet18_v1", "--set", "width=0.25",
            "--set", "batch_size=32", "--set", "labels=10/class", "--no-report",
            "--address", cluster.address, "--storage", str(tmp_path), "--name", "lost",
        ]
        proc = subprocess.Popen([*SWEEP, *args], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None and _started_trials(d) < 2:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before the node could be removed"
        assert _started_trials(d) == 2, "both trials (one per node) should be running"
        assert (_rows(d)["status"] == "completed").sum() == 0
        cluster.remove_node(worker)
        out, _ = proc.communicate(timeout=150)
        assert proc.returncode == 0, out[-3000:]
        assert "crashed (failure 1); Ray restarts it from its last checkpoint" in out, out[-3000:]
        final = pd.read_parquet(d / "results.parquet")
        assert len(final) == 2 and (final["status"] == "completed").all(), final
        for t in final["trial_id"]:
            assert json.loads((d / "trials" / t / "metrics.json").read_text())["status"] == "completed"
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        cluster.shutdown()


# --- 3. a crash while writing --------------------------------------------------------------------
def _half_then_crash(data: bytes):
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk gone mid-write")

    return write


def test_a_write_that_crashes_midway_leaves_the_old_file_and_no_temp_files(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, '{"old": true}')
    with pytest.raises(OSError, match="mid-write"):
        atomic_write(target, _half_then_crash(b'{"new": "a much longer replacement value"}'))
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    # a brand-new file that crashes is never created at all
    with pytest.raises(OSError):
        atomic_write(tmp_path / "new.bin", _half_then_crash(b"0123456789"))
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

    def interrupted(tmp: str) -> None:
        Path(tmp).write_text("{")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the write, too
        atomic_write(target, interrupted)
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_results_table_write_that_crashes_keeps_the_previous_table(tmp_path, monkeypatch):
    from tune import results

    old = pd.DataFrame({"trial_id": ["a", "b"], "status": ["completed", "running"]})
    results.write_results(tmp_path, old)
    before = {n: (tmp_path / n).read_bytes() for n in (results.RESULTS_PARQUET, results.RESULTS_CSV)}
    new = pd.DataFrame({"trial_id": ["a", "b"], "status": ["completed", "completed"]})

    def crash_midway(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half a parquet file")
        raise OSError("killed while writing parquet")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash_midway)
    with pytest.raises(OSError, match="killed"):
        results.write_results(tmp_path, new)
    monkeypatch.undo()
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    assert list(pd.read_parquet(tmp_path / results.RESULTS_PARQUET)["status"]) == ["completed", "running"]


# --- 4. source hygiene -----------------------------------------------------------------------------
PACKAGE_SOURCES = sorted(
    p for pkg in ("s4l_models", "tune", "analysis") for p in (ROOT / pkg).rglob("*.py")
)


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every `name(...)` call (parentheses balanced)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end(): i - 1])
    return out


def test_every_torch_load_is_weights_only():
    assert PACKAGE_SOURCES
    found = 0
    for path in PACKAGE_SOURCES:
        for args in _calls(path.read_text(encoding="utf-8"), "torch.load"):
            found += 1
            assert re.search(r"weights_only\s*=\s*True", args), f"{path}: torch.load({args})"
    assert found >= 1


def test_no_shell_in_package_sources():
    for path in PACKAGE_SOURCES:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"shell\s*=\s*True", text), path
        assert "os.system(" not in text and "os.popen(" not in text, path


def test_a_ray_the_cli_starts_listens_on_localhost_without_dashboard(monkeypatch):
    """What we ask Ray for: loopback-only servers, no dashboard unless --dashboard."""
    import ray

    from tune import runner

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    assert runner.start_ray(None, dashboard=False) is True
    assert calls[-1]["include_dashboard"] is False
    assert calls[-1]["dashboard_host"] == "127.0.0.1"
    assert "address" not in calls[-1]
    runner.start_ray(None, dashboard=True)
    assert calls[-1]["include_dashboard"] is True and calls[-1]["dashboard_host"] == "127.0.0.1"
