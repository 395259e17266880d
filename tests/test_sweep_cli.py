"""`python tune/run_sweep.py` as a user runs it: listing, dry runs, bad input (exit 2, one line,
no traceback), and an interrupted sweep that --resume finishes without rerunning its completed
trials. Only the resume test starts Ray (in the sweep's own subprocesses)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tune.run_sweep import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tune" / "run_sweep.py"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
        cwd=ROOT,
    )


def test_list_and_dry_run_through_the_script():
    p = cli("--list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert any(line.split()[:2] == ["baseline_1pct", "8640"] for line in lines)
    assert any(line.split()[:2] == ["baseline_10pct", "2160"] for line in lines)
    p = cli("--space", "baseline_1pct", "--dry-run")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "configurations: 8640" in out
    for axis in ("wd", "lr", "epochs", "arch", "width", "color_aug", "batch_size"):
        assert any(line.startswith(axis + " ") for line in out.splitlines()), axis
    assert "trials: 24 (" in out and "--max-trials all" in out
    assert "compute: " in out and "trial-epochs" in out
    assert "Traceback" not in p.stderr


def test_dry_run_counts_the_trials_the_flags_ask_for(capsys):
    assert main(["--space", "baseline_10pct", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "configurations: 2160" in out and "trials: 24 (" in out
    assert main(["--space", "baseline_10pct", "--dry-run", "--max-trials", "all"]) == 0
    assert "trials: 2160 (" in capsys.readouterr().out
    # (for a cluster: this machine could not hold CIFAR-10's widest trials, tests/test_memory_plan.py)
    assert main(["--space", "baseline_10pct", "--dry-run", "--dataset", "cifar10",
                 "--address", "auto"]) == 0
    assert "trials: 2160 (" in capsys.readouterr().out
    assert main(["--space", "baseline_10pct", "--dry-run", "--search", "optuna",
                 "--max-trials", "50", "--scheduler", "asha"]) == 0
    out = capsys.readouterr().out
    assert "trials: 50 (" in out and "asha" in out
    # its rungs would compare schedules of different lengths: said before anything runs
    assert "note: asha compares trials at their n-th evaluation, and epochs is an axis" in out
    assert main(["--space", "baseline_10pct", "--dry-run", "--scheduler", "asha",
                 "--set", "epochs=30"]) == 0
    assert "n-th evaluation" not in capsys.readouterr().out
    assert main(["--space", "baseline_10pct", "--dry-run", "--set", "epochs=2",
                 "--set", "arch=resnet18_v1"]) == 0
    out = capsys.readouterr().out
    assert "configurations: 90" in out and "pinned" in out
    assert "compute: 48 trial-epochs" in out  # 24 trials x 2 epochs


def test_random_search_draws_distinct_configurations_at_most_the_grid():
    # Ray's tune.choice drew with replacement: the same configuration ran again with the same
    # seed (the same run), and the analysis read the copies as seed repeats
    from tune.sweep_plan import make_plan

    plan = make_plan("s4l_rotation_10pct", search="random", max_trials=12, seed=3)
    keys = [tuple(sorted(p.items())) for p in plan.points]
    assert len(keys) == 12 == len(set(keys)) == plan.num_trials
    again = make_plan("s4l_rotation_10pct", search="random", max_trials=12, seed=3)
    assert again.points == plan.points  # seeded: a --resume rebuilds the same draws
    whole = make_plan("s4l_rotation_10pct", search="random", max_trials=50)
    assert whole.num_trials == 18 == len({tuple(sorted(p.items())) for p in whole.points})
    assert "capped at the grid's 18" in whole.note
    assert make_plan("s4l_rotation_10pct", search="optuna", max_trials=50).num_trials == 18


def test_the_cost_estimate_is_calibrated_to_the_image_size():
    from tune.sweep_plan import IMAGE_COST_FACTOR, Sizes, image_cost_factor, trial_cost

    assert image_cost_factor(8) == 1.0 and image_cost_factor(28) == IMAGE_COST_FACTOR[28] > 1
    assert image_cost_factor(32) == pytest.approx(IMAGE_COST_FACTOR[28] * (32 / 28) ** 2)
    sizes = Sizes(labeled=130, val=5000, test=10000, train=55000)
    cfg = {"arch": "resnet18_v2", "width": 0.5, "batch_size": 16, "epochs": 100.0}
    raw = trial_cost({**cfg, "dataset": "fashion_mnist"}, sizes, calibrated=False)
    assert raw == trial_cost({**cfg, "dataset": "digits"}, sizes)  # 8x8: the model as measured
    fashion = trial_cost({**cfg, "dataset": "fashion_mnist"}, sizes)
    overhead = 3.0  # TRIAL_OVERHEAD_S is not scaled
    assert fashion - overhead == pytest.approx(IMAGE_COST_FACTOR[28] * (raw - overhead))


def test_the_dry_run_says_device_hours_and_wall_time(capsys):
    assert main(["--space", "baseline_1pct", "--dataset", "fashion_mnist", "--dry-run",
                 "--set", "arch=resnet18_v2", "--set", "width=0.5", "--set", "epochs=100",
                 "--max-trials", "48"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("compute:"))
    assert "CPU-hours on fashion_mnist" in line and "of wall time at 2 at a time" in line
    assert "calibrated to 28x28 images" in line


BAD_INPUTS = [
    (["--space", "no_such_space"], "baseline_1pct"),  # lists the names
    (["--space", "baseline_10pct", "--search", "bayes"], "invalid choice"),
    (["--space", "baseline_10pct", "--scheduler", "median"], "invalid choice"),
    (["--space", "baseline_10pct", "--set", "no_such_key=1", "--dry-run"], "no_such_key"),
    (["--space", "baseline_10pct", "--set", "lr=abc", "--dry-run"], "lr"),
    (["--space", "baseline_10pct", "--set", "lr", "--dry-run"], "KEY=VALUE"),
    (["--space", "baseline_10pct", "--max-trials", "0", "--dry-run"], "max-trials"),
    (["--space", "baseline_10pct", "--metric", "val_3pc_top1", "--dry-run"], "metric"),
    (["--space", "baseline_10pct", "--metric", "test_top1", "--dry-run"], "public test split"),
    (["--space", "baseline_10pct", "--cpus-per-trial", "0"], "cpus-per-trial"),
    (["--space", "baseline_10pct", "--address", "127.0.0.1:9", "--max-trials", "1"], "address"),
    (["--dry-run"], "--space"),
    # not "above 1 must be a whole number of GPUs" (inf passed that test's first half)
    (["--space", "baseline_10pct", "--gpus-per-trial", "inf", "--dry-run"], "finite"),
    (["--space", "baseline_10pct", "--cpus-per-trial", "nan", "--dry-run"], "finite"),
    (["--space", "baseline_10pct", "--set", "epochs=inf", "--dry-run"], "finite"),
    # a staged method's first stage (pretraining, the teacher) would be what the scheduler
    # judges: trials cut off there read as completed
    (["--space", "selfsup_linear_10pct", "--scheduler", "asha", "--dry-run"],
     "cannot run selfsup_linear"),
    (["--space", "pseudolabel_10pct", "--scheduler", "pbt", "--dry-run"],
     "cannot run pseudolabel"),
    (["--space", "moam_10pct", "--scheduler", "hyperband", "--dry-run"], "cannot run moam"),
]


@pytest.mark.parametrize("argv,needle", BAD_INPUTS, ids=[" ".join(a[2:4] or a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    rc = main([*argv, "--storage", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2
    err = captured.err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and needle in err
    assert not list(tmp_path.iterdir())  # nothing written, nothing started


def test_more_bad_input_that_needs_a_directory_or_data(capsys, tmp_path):
    # no sweep to resume
    assert main(["--space", "baseline_10pct", "--resume", "--storage", str(tmp_path),
                 "--name", "nothing"]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path)]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    # a dataset whose files are missing
    assert main(["--space", "baseline_10pct", "--dataset", "cifar10", "--data-dir",
                 str(tmp_path / "none"), "--max-trials", "1", "--storage", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _fake_sweep(d: Path, space: str) -> Path:
    """A sweep directory as far as --resume first looks: Ray's experiment and space.json."""
    (d / "ray").mkdir(parents=True)
    (d / "ray" / "tuner.pkl").write_bytes(b"")
    (d / "space.json").write_text(space)
    return d


@pytest.mark.parametrize("space,needle", [("{x", "is not valid JSON"),
                                          ("[1]", "no 'flags' object")])
def test_a_broken_space_json_is_one_line_naming_it(space, needle, capsys, tmp_path):
    d = _fake_sweep(tmp_path / "s", space)
    assert main(["--resume", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert str(d / "space.json") in err and "backup" in err
    assert (d / "space.json").read_text() == space  # left as it was


def test_an_unusable_storage_is_one_line(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    blocked = [afile]  # a file where the storage folder belongs
    try:  # a folder no one may create, even root (the audit's 'Operation not permitted')
        os.makedirs("/sys/s4l-test-storage")
    except PermissionError:
        blocked.append(Path("/sys/s4l-test-storage"))
    except OSError:
        pass
    for storage in blocked:
        p = cli("--space", "baseline_1pct", "--max-trials", "1", "--no-report",
                "--storage", str(storage), "--name", "x")
        err = p.stderr.strip()
        assert p.returncode == 2 and "Traceback" not in err, err
        assert len(err.splitlines()) == 1 and err.startswith("error: cannot use "), err
        assert str(storage) in err
    assert afile.read_text() == "mine"


def test_gpus_without_a_gpu_is_refused(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert main(["--space", "baseline_10pct", "--gpus-per-trial", "1", "--max-trials", "1",
                 "--storage", str(tmp_path)]) == 2
    assert "no GPU" in capsys.readouterr().err


def test_bad_input_through_the_script_has_no_traceback(tmp_path):
    for args in (["--space", "no_such_space"],
                 ["--space", "baseline_10pct", "--set", "lr=abc", "--dry-run"],
                 ["--space", "baseline_10pct", "--resume", "--storage", str(tmp_path),
                  "--name", "nothing"]):
        p = cli(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith("error: ")


def _rows(sweep_dir: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(sweep_dir / "results.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame(columns=["status"])


def test_interrupted_sweep_resumes_without_rerunning_completed_trials(tmp_path):
    args = [
        "--space", "baseline_10pct", "--storage", str(tmp_path), "--name", "r3", "--no-report",
        "--set", "arch=resnet18_v1", "--set", "width=0.5", "--set", "epochs=30",
        "--set", "batch_size=32", "--set", "labels=10/class", "--max-trials", "3",
        "--concurrency", "1",
    ]
    d = tmp_path / "r3"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (_rows(d)["status"] == "completed").sum() >= 1:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole process group
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "--resume" in out
    first = _rows(d)
    # the summary counts every trial of the plan, and its best is a completed trial's
    counts = re.search(r"^trials: (.*) \(of 3 planned\)$", out, re.M)
    assert counts, out[-2000:]
    assert sum(int(n) for n in re.findall(r"(\d+) [a-z ]+", counts.group(1))) == 3
    assert "best completed trial by val_full_top1" in out
    done = list(first.loc[first["status"] == "completed", "trial_id"])
    assert 1 <= len(done) < 3
    stamps = {t: (d / "trials" / t / "metrics.json").stat().st_mtime_ns for t in done}
    lines = {t: len((d / "trials" / t / "progress.jsonl").read_text().splitlines()) for t in done}

    # the finished trials were trained by the code of their session: stood in for by another
    # code_version in the table, which their rows keep while the resumed trials get this one's
    table = pd.read_parquet(d / "results.parquet")
    now_version = table["code_version"].iloc[0]
    table.loc[table["status"] == "completed", "code_version"] = "0.0.1+gearlier"
    table.to_parquet(d / "results.parquet", index=False)

    # resume with the same flags (as a user re-running the command with --resume)
    p = subprocess.run([sys.executable, str(SCRIPT), *args, "--resume"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    final = _rows(d)
    assert len(final) == 3 and (final["status"] == "completed").all()
    version = dict(zip(final["trial_id"], final["code_version"]))
    assert all(version[t] == "0.0.1+gearlier" for t in done), version
    assert all(v == now_version for t, v in version.items() if t not in done), version
    for t in done:  # completed trials were not run again
        assert (d / "trials" / t / "metrics.json").stat().st_mtime_ns == stamps[t]
        assert len((d / "trials" / t / "progress.jsonl").read_text().splitlines()) == lines[t]
    for t in final["trial_id"]:  # a resumed trial's progress has each evaluation once
        steps = [json.loads(x)["step"] for x in (d / "trials" / t / "progress.jsonl").open()]
        assert steps == sorted(set(steps)), (t, steps)
    # a changed sweep-defining flag is refused on resume
    p = cli(*args, "--resume", "--seed", "5")
    assert p.returncode == 2 and "--seed" in p.stderr
    assert json.loads((d / "space.json").read_text())["flags"]["seed"] == 0


def test_a_broken_reseed_json_is_a_user_error_naming_it(tmp_path):
    from s4l_models.errors import UserError
    from tune.reseed import load_reseed

    for text in ('{"top": 2', '{"top": 2}'):
        (tmp_path / "reseed.json").write_text(text)
        with pytest.raises(UserError, match="reseed.json"):
            load_reseed(tmp_path)


def test_an_error_after_ray_started_is_one_line_without_rays_auth_warning(tmp_path):
    # The command chooses Ray's token authentication itself (so Ray does not warn that it
    # chose it), which works only if Ray is not imported before main() sets the mode: the
    # modules run_sweep imports (tune/memory_plan.py -> tune/trainable.py) imported Ray, and
    # every sweep printed Ray's "Token authentication is enabled" WARNING on stderr.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    p = subprocess.run([sys.executable, "-c", "import sys, tune.run_sweep; "
                        "print('ray' in sys.modules)"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.stdout.strip() == "False", p.stdout + p.stderr
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--space", "baseline_1pct", "--max-trials", "1",
         "--cpus-per-trial", "100", "--no-report", "--storage", str(tmp_path), "--name", "c"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: --cpus-per-trial 100 but the Ray cluster has only "
        f"{len(os.sched_getaffinity(0))} CPUs"], p.stderr
    assert not (tmp_path / "c").exists()  # nothing of the refused sweep is left


def test_a_truncated_results_table_is_rebuilt_on_resume_and_kept(tmp_path):
    # The audit: --resume of a sweep whose results.parquet was truncated ended in pyarrow's
    # ArrowInvalid traceback. Every trial's last result is in Ray's saved state: the resume
    # rebuilds the table from it and keeps the unreadable file; reading it elsewhere is one line.
    from s4l_models.errors import UserError
    from tune.results import read_table

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    args = ["--space", "baseline_10pct", "--max-trials", "2", "--stand-in-trainer", "2",
            "--no-report", "--quiet", "--storage", str(tmp_path), "--name", "t"]
    p = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    d = tmp_path / "t"
    before = read_table(d / "results.parquet")
    broken = (d / "results.parquet").read_bytes()[:200]
    (d / "results.parquet").write_bytes(broken)
    with pytest.raises(UserError, match="not a readable results table.*--resume"):
        read_table(d / "results.parquet")

    p = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(d), "--no-report"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert "not a readable results table" in p.stdout and "results.parquet.unreadable" in p.stdout
    assert (d / "results.parquet.unreadable").read_bytes() == broken  # the user's file stays
    after = read_table(d / "results.parquet")
    cols = ["trial_id", "status", "val_full_top1", "steps_done"]
    pd.testing.assert_frame_equal(after[cols].sort_values("trial_id").reset_index(drop=True),
                                  before[cols].sort_values("trial_id").reset_index(drop=True))
    assert "trials: 2 completed (of 2 planned)" in p.stdout


def test_a_second_unreadable_table_is_kept_beside_the_first(tmp_path, capsys):
    # Two resumes of a sweep whose table broke twice: each unreadable file is kept, the first
    # is never replaced by the second.
    from tune.run_sweep import set_aside_unreadable_table

    table = tmp_path / "results.parquet"
    for n, content in enumerate((b"first broken table", b"second broken table")):
        table.write_bytes(content)
        kept = set_aside_unreadable_table(tmp_path)
        assert kept == tmp_path / ("results.parquet.unreadable" if n == 0
                                   else "results.parquet-2.unreadable")
        assert kept.read_bytes() == content and not table.exists()
        assert kept.name in capsys.readouterr().out
    assert (tmp_path / "results.parquet.unreadable").read_bytes() == b"first broken table"
