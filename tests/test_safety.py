"""Data safety: no command we print loses data, files are shared, a full disk loses nothing.

- `--resume` of a finished sweep changes nothing and exits 0; errored trials rerun only with
  `--retry-errored`.
- Files we write honour the umask (0644 under umask 022).
- A full disk (an injected ENOSPC) leaves the previous file intact, is one line naming the path
  and the space needed, and `--resume` continues once there is space.
- Every console script's `--help` works.
- Finished trials' checkpoints are pruned as they finish; only the best's stays.

One local Ray instance (2 CPUs) serves the sweeps of this module.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd
import pytest

from s4l_models import io as s4l_io
from s4l_models.errors import DiskFullError
from s4l_models.io import atomic_write, atomic_write_text
from s4l_models.trainer import record_progress

TINY = [
    "--space", "baseline_10pct", "--no-report", "--max-trials", "2",
    "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "epochs=10",
    "--set", "batch_size=64",
]  # 480 labeled images (the scaled protocol's 48/class), 75 steps a trial: not a short run


def sweep(storage: Path, name: str, *extra: str) -> int:
    from tune.run_sweep import main

    return main([*TINY, "--storage", str(storage), "--name", name, *extra])


def resume(sweep_dir: Path, *extra: str) -> int:
    from tune.run_sweep import main

    return main(["--resume", str(sweep_dir), *extra])


def snapshot(d: Path) -> dict[str, tuple[int, str]]:
    """Every file under `d` with its mtime and content hash."""
    return {
        str(p.relative_to(d)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(d.rglob("*")) if p.is_file()
    }


# --- console scripts ---------------------------------------------------------------------------
def project_scripts() -> list[str]:
    return sorted(
        ep.name for ep in entry_points(group="console_scripts") if ep.value.split(".")[0] in
        ("s4l_models", "tune", "analysis", "search_spaces")
    )


def test_every_console_script_has_a_working_help():
    scripts = project_scripts()
    assert {"s4l-train", "s4l-sweep", "s4l-report"} <= set(scripts)
    bindir = Path(sys.executable).parent
    for name in scripts:
        exe = bindir / name
        p = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (name, p.stderr[-2000:])
        assert p.stdout.startswith("usage:") and "Traceback" not in p.stderr, name


# --- permissions -------------------------------------------------------------------------------
@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


# --- a full disk -------------------------------------------------------------------------------
def _full_disk_writer(tmp: str) -> None:
    with open(tmp, "wb") as f:
        f.write(b"x" * 5000)  # part of the file reached the disk, then it was full
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_the_previous_file_and_says_how_much_space_it_needs(tmp_path):
    target = tmp_path / "results.parquet"
    atomic_write_text(target, "the previous table")
    with pytest.raises(DiskFullError) as info:
        atomic_write(target, _full_disk_writer)
    msg = str(info.value)
    assert "\n" not in msg and str(target) in msg and "free there" in msg
    assert "needs at least" in msg and "--resume" in msg
    assert target.read_text() == "the previous table"
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]  # no temporary left
    # a library that wraps the OSError (torch, pyarrow) is recognised through the chain
    def wrapped(tmp):
        try:
            _full_disk_writer(tmp)
        except OSError as err:
            raise RuntimeError("PytorchStreamWriter failed writing file") from err

    with pytest.raises(DiskFullError):
        atomic_write(target, wrapped)
    assert target.read_text() == "the previous table"


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    from s4l_models.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE
    from s4l_models.config import TrainConfig
    from s4l_models.run import train

    cfg = TrainConfig.from_dict(dict(
        dataset="digits", arch="resnet18_v1", width=0.25, epochs=4, batch_size=64,
        labels="10/class", threads=1, eval_every=1,
    ))
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2 and str(f).endswith(".tmp") and CHECKPOINT_FILE in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(DiskFullError) as info:
        train(cfg, out)
    ckpt = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    assert str(ckpt) in str(info.value)
    payload = torch.load(ckpt, weights_only=True)  # the first checkpoint, intact
    assert payload["step"] > 0
    monkeypatch.setattr(torch, "save", real_save)
    metrics = train(cfg, out, resume_from=out / CHECKPOINT_DIR)  # continues once space is back
    assert metrics["status"] == "completed" and metrics["steps"] == metrics["total_steps"]


def test_a_full_disk_while_writing_the_results_table_stops_cleanly_and_resumes(
    ray_session, tmp_path, monkeypatch, capsys
):
    import tune.results as results

    real = results.atomic_write
    seen = {"n": 0}

    def flaky(path, write):
        if Path(path).name == results.RESULTS_PARQUET:
            seen["n"] += 1
            if seen["n"] == 2:  # the second rewrite of the table finds the disk full
                return real(path, _full_disk_writer)
        return real(path, write)

    monkeypatch.setattr(results, "atomic_write", flaky)
    rc = sweep(tmp_path, "full")
    err = capsys.readouterr().err
    d = tmp_path / "full"
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "disk full writing" in lines[0], err
    assert str(d / "results.parquet") in lines[0] and "Traceback" not in err
    first = pd.read_parquet(d / "results.parquet")  # the previous table, readable
    assert len(first) >= 1
    monkeypatch.setattr(results, "atomic_write", real)
    assert resume(d) == 0
    final = pd.read_parquet(d / "results.parquet")
    assert len(final) == 2 and (final["status"] == "completed").all()


# --- finished sweeps ---------------------------------------------------------------------------
def test_resume_of_a_finished_sweep_changes_nothing(ray_session, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert sweep(tmp_path, "done") == 0
    finally:
        os.umask(old)
    d = tmp_path / "done"
    capsys.readouterr()
    # files are readable by others (shared storage), checkpoints included
    for name in ("results.parquet", "results.csv", "space.json", "splits.npz",
                 "predictions.npz"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o644, name
    kept = sorted((d / "ray").glob("*/checkpoint_*/*"))
    assert kept and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in kept if p.is_file())
    # Ray's state lives in ray/; no folder is left empty
    assert (d / "ray" / "tuner.pkl").is_file() and not (d / "tuner.pkl").exists()
    empty = [p for p in d.rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert not empty, empty
    before = snapshot(d)
    for _ in range(2):  # the command we print, twice
        assert resume(d) == 0
        out = capsys.readouterr().out
        assert "is finished; nothing to resume" in out and "(of 2 planned)" in out
        assert snapshot(d) == before
    # Code whose search space or recipe changed since the sweep started makes another plan:
    # resuming with it would train the remaining trials with other settings than the finished
    # ones (and relabel those). Stood in for by the plan space.json recorded.
    doc = json.loads((d / "space.json").read_text())
    changed = json.loads(json.dumps(doc))
    changed["space"]["fixed"]["warmup_epochs"] = 3.0
    changed["num_trials"] = 3
    atomic_write_text(d / "space.json", json.dumps(changed))
    assert resume(d) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plan made now differs" in err, err
    assert f"warmup_epochs 3.0 -> {doc['space']['fixed']['warmup_epochs']}" in err
    assert "trials 3 -> 2" in err
    atomic_write_text(d / "space.json", json.dumps(doc))
    assert resume(d) == 0


def test_errored_trials_rerun_only_when_asked(ray_session, tmp_path, capsys):
    # a fresh trial exits its process at its first evaluation from step 20 on; with no retries
    # the trial errors
    assert sweep(tmp_path, "err", "--fail-at-step", "20", "--max-failures", "0",
                 "--set", "evaluations=10") == 0
    d = tmp_path / "err"
    df = pd.read_parquet(d / "results.parquet")
    assert (df["status"] == "errored").all() and len(df) == 2
    out = capsys.readouterr().out
    assert f"--resume {d} --retry-errored" in out
    before = snapshot(d)
    assert resume(d) == 0
    out = capsys.readouterr().out
    assert "is finished" in out and "--retry-errored" in out
    assert snapshot(d) == before
    # asked: the errored trials continue from their last checkpoint (step 16 < 20: no crash)
    assert resume(d, "--retry-errored") == 0
    df = pd.read_parquet(d / "results.parquet")
    assert len(df) == 2 and (df["status"] == "completed").all(), df[["status", "error"]]


def test_retry_errored_without_resume_is_refused(capsys):
    from tune.run_sweep import main

    assert main(["--space", "baseline_10pct", "--retry-errored"]) == 2
    assert "use it with --resume" in capsys.readouterr().err


# --- checkpoints and progress ------------------------------------------------------------------
class FakeTrial:
    def __init__(self, trial_id, path, value, done=True, short=False):
        self.trial_id, self.path = trial_id, str(path)
        self.last_result = {
            "val_full_top1": value, "step": 10 if done else 5, "total_steps": 10,
            "short_run": short,
        }


def test_finished_trials_checkpoints_are_pruned_as_they_finish_except_the_best(tmp_path):
    from tune.checkpoints import CheckpointPruner

    def trial(i, value, **kw):
        folder = tmp_path / f"t{i}" / "checkpoint_000003"
        folder.mkdir(parents=True)
        (folder / "state.pt").write_bytes(b"w" * 1000)
        return FakeTrial(f"t{i}", tmp_path / f"t{i}", value, **kw)

    pruner = CheckpointPruner("val_full_top1")
    has = lambda i: any((tmp_path / f"t{i}").glob("checkpoint_*"))  # noqa: E731
    a, b, c, d = trial(0, 0.5), trial(1, 0.7), trial(2, 0.6), trial(3, 0.9, short=True)
    pruner.on_trial_complete(0, [], a)
    assert has(0)  # the best so far
    pruner.on_trial_complete(0, [], b)
    assert has(1) and not has(0)  # a better one replaces it
    pruner.on_trial_complete(0, [], c)
    assert not has(2) and has(1)
    pruner.on_trial_complete(0, [], d)  # too short to be chosen, whatever its score
    assert not has(3) and has(1)
    assert pruner.freed == 3000
    off = CheckpointPruner("val_full_top1", enabled=False)  # --keep-checkpoints, or PBT
    e = trial(4, 0.1)
    off.on_trial_complete(0, [], e)
    assert has(4)


def test_with_seed_repeats_the_recommended_configurations_checkpoint_is_kept(tmp_path):
    """The summary recommends the configuration with the best seed mean, which need not hold
    the single best trial: its best trial's checkpoint used to be pruned with the others."""
    from tune.checkpoints import CheckpointPruner, prune_checkpoints

    # config A: seeds score 0.80, 0.60 (mean 0.70, the single best trial); config B: 0.75, 0.74
    scores = {"a0": ("A", 0, 0.80), "a1": ("A", 1, 0.60), "b0": ("B", 0, 0.75),
              "b1": ("B", 1, 0.74)}
    ray = tmp_path / "ray-reseed"
    trials = {}
    for tid, (cid, seed, value) in scores.items():
        folder = ray / tid / "checkpoint_000001"
        folder.mkdir(parents=True)
        (folder / "state.pt").write_bytes(b"w" * 100)
        trials[tid] = FakeTrial(tid, ray / tid, value)
        trials[tid].config = {"lr": cid, "seed": seed}
    pruner = CheckpointPruner("val_full_top1", per_config=True)
    for t in trials.values():
        pruner.on_trial_complete(0, [], t)
    has = {t for t in scores if any((ray / t).glob("checkpoint_*"))}
    assert has == {"a0", "b0"}  # the best of each configuration, while trials finish
    table = pd.DataFrame({
        "trial_id": list(scores), "status": "completed", "short_run": False,
        "trial_dir": [str(tmp_path / "trials" / t) for t in scores],
        "config_id": [c for c, _, _ in scores.values()],
        "seed": [s for _, s, _ in scores.values()],
        "val_full_top1": [v for _, _, v in scores.values()],
    })
    table.to_parquet(tmp_path / "results.parquet")
    line = prune_checkpoints(tmp_path, "val_full_top1", keep_all=False)
    has = {t for t in scores if any((ray / t).glob("checkpoint_*"))}
    assert has == {"a0", "b0"}, line  # the single best, and the best of config B (mean 0.745)
    assert f"the best trial's: {ray / 'a0' / 'checkpoint_000001'}" in line
    assert f"the best configuration's by its seed mean (B): {ray / 'b0'}" in line


def test_progress_keeps_each_evaluation_once_across_a_resume(tmp_path):
    path = tmp_path / "progress.jsonl"
    for step in (10, 20, 30):
        record_progress(path, {"step": step, "val": step / 100})
    # resumed from the checkpoint of step 20: step 30 is evaluated again, then 40
    for step in (30, 40):
        record_progress(path, {"step": step, "val": 1.0})
    steps = [json.loads(x)["step"] for x in path.read_text().splitlines()]
    assert steps == [10, 20, 30, 40]
    # resumed from step 10 while the file already held 20..40: the stale lines go
    record_progress(path, {"step": 20, "val": 0.0})
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [10, 20]
    # stages: (stage, step) orders the lines of a multi-stage run
    record_progress(path, {"stage": 2, "step": 5})
    record_progress(path, {"stage": 2, "step": 5})
    assert len(path.read_text().splitlines()) == 3


def test_the_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert s4l_io.current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # still set
    finally:
        os.umask(old)


def test_a_finished_run_is_recognised_so_a_restarted_trial_does_not_train_again(tmp_path):
    from s4l_models.config import TrainConfig
    from s4l_models.run import train
    from s4l_models.trainer import finished_result

    out = tmp_path / "run"
    assert finished_result(out) is None  # nothing there
    cfg = TrainConfig.from_dict(dict(
        dataset="digits", arch="resnet18_v1", width=0.25, epochs=2, batch_size=64,
        labels="10/class", threads=1,
    ))
    final = train(cfg, out)
    last = finished_result(out)
    assert last is not None and last["step"] == final["steps"] == final["total_steps"]
    assert last["val_full_top1"] == final["val_full_top1"]
    # a run that did not complete is not taken for a finished one
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "status": "diverged"}))
    assert finished_result(out) is None


def test_a_reused_workers_death_is_counted_once():
    # Ray 2.60 reports the death of a worker killed during its reset twice; the second report,
    # for the trial already requeued as PENDING, must not error it (tune/ray_fixes.py)
    from ray.exceptions import RayActorError
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    from tune.ray_fixes import count_actor_deaths_once

    assert count_actor_deaths_once() and count_actor_deaths_once()  # idempotent
    seen = []

    class FakeTrial:
        def __init__(self, status):
            self.status = status

        def handle_error(self, exc):
            seen.append(("handled", self.status))

        def should_recover(self):
            return False

    class Fake:
        _process_trial_failure = TuneController._process_trial_failure

        def __init__(self, trial):
            self._resetting_trials = {trial}
            self._has_errored = False

    pending = FakeTrial(Trial.PENDING)
    ctrl = Fake(pending)
    ctrl._process_trial_failure(pending, RayActorError())
    assert seen == [] and pending not in ctrl._resetting_trials  # ignored, and free to start
    running = FakeTrial(Trial.TERMINATED)  # any other state goes through Ray's own handling
    ctrl = Fake(running)
    ctrl._process_trial_failure(running, RayActorError())
    assert seen == [("handled", Trial.TERMINATED)]


# --- what a resume keeps, and the commands we print --------------------------------------------
def test_a_resume_keeps_the_checkpoints_and_trackers_the_sweep_was_started_with(
    ray_session, tmp_path, capsys
):
    # --keep-checkpoints and --log are not repeated on --resume (the command printed after an
    # interrupt has neither); they held only for the first session: a resume pruned every kept
    # checkpoint but the best and logged nothing
    assert sweep(tmp_path, "kc", "--keep-checkpoints", "--log", "tensorboard", "--quiet") == 0
    d = tmp_path / "kc"
    kept = sorted((d / "ray").glob("*/checkpoint_*"))
    assert len({p.parent for p in kept}) == 2  # both trials' checkpoints
    capsys.readouterr()
    assert resume(d, "--reseed-top", "1", "--seeds", "2", "--quiet", "--no-report") == 0
    out = capsys.readouterr().out
    assert all(p.is_dir() for p in kept), out  # nothing the sweep kept was deleted
    assert "every trial's last one is kept" in out
    repeats = [p for p in (d / "ray-reseed").iterdir() if p.is_dir()]
    assert len(repeats) == 1
    assert list(repeats[0].glob("checkpoint_*"))  # the repeat's checkpoint is kept too
    assert list(repeats[0].glob("events.out.tfevents*"))  # and the tracker logged it
    flags = json.loads((d / "space.json").read_text())["flags"]
    assert flags["keep_checkpoints"] is True and flags["log"] == ["tensorboard"]


def test_the_printed_command_continues_seed_repeats_added_on_resume(
    ray_session, tmp_path, capsys, monkeypatch
):
    # Repeats added to a finished sweep by `--resume DIR --reseed-top K` and interrupted: the
    # printed `--resume DIR` read the repeats' settings from space.json (none there), ran
    # nothing, exited 0 and left the repeat unfinished
    from tune.run_sweep import main
    from tune.sweep_callback import SweepCallback, stop_ray_tune_loop

    base = ["--space", "baseline_1pct", "--stand-in-trainer", "2", "--no-report", "--quiet",
            "--concurrency", "1"]
    assert main([*base, "--storage", str(tmp_path), "--name", "rs", "--max-trials", "3"]) == 0
    d = tmp_path / "rs"
    real = SweepCallback.on_trial_complete

    def stop_after_first(self, iteration, trials, trial, **info):  # Ctrl-C after one repeat
        real(self, iteration, trials, trial, **info)
        stop_ray_tune_loop()

    monkeypatch.setattr(SweepCallback, "on_trial_complete", stop_after_first)
    capsys.readouterr()
    assert resume(d, "--reseed-top", "1", "--seeds", "3", "--quiet") == 130
    out = capsys.readouterr().out
    printed = [ln for ln in out.splitlines() if "the seed repeats stopped" in ln]
    assert printed and printed[-1].endswith(f"python tune/run_sweep.py --resume {d}"), out
    monkeypatch.setattr(SweepCallback, "on_trial_complete", real)
    assert main(shlex.split(printed[-1].split("continue them with: ")[1])[2:]) == 0
    out = capsys.readouterr().out
    assert "nothing to resume" not in out
    df = pd.read_parquet(d / "results.parquet")
    assert len(df) == 3 + 2 and (df["status"] == "completed").all(), df[["trial_id", "status"]]


def test_retry_errored_reruns_errored_search_trials_after_seed_repeats(
    ray_session, tmp_path, capsys, monkeypatch
):
    # Errored search trials of a sweep with seed repeats: `--retry-errored` (the printed hint)
    # ran nothing once reseed.json existed, exited 0 and printed the same hint again. The
    # storage path has a space: every printed path must survive the shell.
    import dataclasses

    import search_spaces
    from search_spaces.baseline import BASELINE_10PCT as B
    from search_spaces.space import Axis
    from tune.run_sweep import main

    space = dataclasses.replace(
        B, name="safety_mix", description="test",
        # one warmup epoch: the 4-epoch trials are not short runs and can be finalists
        fixed={**B.fixed, "arch": "resnet18_v1", "width": 0.25, "warmup_epochs": 1.0},
        fixed_sources={**B.fixed_sources, "arch": "test", "width": "test",
                       "warmup_epochs": "test"},
        axes=(Axis("lr", (0.3, 0.1), "test"), Axis("epochs", (4.0, 10.0), "test")),
    )
    monkeypatch.setitem(search_spaces._SPACES, "safety_mix", space)
    storage = tmp_path / "my runs"
    # batch 24: 20 steps an epoch; 4 epochs (80 steps) never reach step 90, 10 epochs crash
    # there once (their last checkpoint is at step 80)
    assert main(["--space", "safety_mix", "--set", "batch_size=24", "--set", "evaluations=10",
                 "--fail-at-step", "90", "--max-failures", "0", "--concurrency", "1",
                 "--reseed-top", "1", "--seeds", "2", "--no-report",
                 "--storage", str(storage), "--name", "re"]) == 0
    d = storage / "re"
    out = capsys.readouterr().out
    df = pd.read_parquet(d / "results.parquet")
    errored = df.loc[df["status"] == "errored", "trial_id"].tolist()
    assert len(df) == 5 and len(errored) == 2, out
    # the traceback named is the sweep's own file, not one in Ray's temporary session folder
    for t in errored:
        assert f"(traceback: {d / 'ray' / t / 'error.txt'})" in out, out
        assert (d / "ray" / t / "error.txt").is_file()
    hints = [ln for ln in out.splitlines() if "--retry-errored" in ln]
    assert hints and hints[-1].endswith(
        f"python tune/run_sweep.py --resume {shlex.quote(str(d))} --retry-errored"), out
    reseed_before = (d / "reseed.json").read_bytes()
    # the printed command, as a shell splits it
    assert main(shlex.split(hints[-1].split(": ", 1)[1])[2:]) == 0
    out = capsys.readouterr().out
    final = pd.read_parquet(d / "results.parquet")
    assert len(final) == 5 and (final["status"] == "completed").all(), out
    assert set(errored) <= set(final["trial_id"])
    assert "--retry-errored" not in out
    assert (d / "reseed.json").read_bytes() == reseed_before  # the finalists stay
