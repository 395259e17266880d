"""Seed repeats after the search (`--reseed-top K --seeds S`, tune/reseed.py).

The sweeps here use the test-only stand-in trainer (tests/stand_in.py: instant reports whose
scores depend on every setting, the seed included), so a repeat with another seed scores
differently, as a real one would. One local Ray instance (2 CPUs) serves the module.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tune import reseed
from tune.results import config_id, read_table

BASE = ["--space", "baseline_1pct", "--stand-in-trainer", "2", "--no-report", "--quiet"]


def sweep(tmp_path, name, *extra):
    from tune.run_sweep import main

    return main([*BASE, "--storage", str(tmp_path), "--name", name, *extra])


def test_config_id_ignores_the_seed_and_runtime_settings_only():
    base = {"lr": 0.1, "wd": 1e-3, "seed": 0, "threads": 1, "splits_path": "/a"}
    assert config_id(base) == config_id({**base, "seed": 7, "threads": 4, "splits_path": "/b"})
    assert config_id(base) != config_id({**base, "wd": 1e-4})
    assert config_id({**base, "tiny_k": (1, 5)}) == config_id({**base, "tiny_k": [1, 5]})


def _table(rows):
    df = pd.DataFrame(rows)
    df["config_id"] = [config_id(r) for r in rows]
    df["status"] = "completed"
    df["short_run"] = False
    return df


def test_plan_reseed_takes_the_best_seed_means_and_the_seeds_they_lack():
    rows = [
        {"trial_id": "a", "lr": 0.1, "wd": 1e-3, "decay_epochs": [0.7], "seed": 0, "m": 0.90},
        {"trial_id": "b", "lr": 0.1, "wd": 1e-3, "decay_epochs": [0.7], "seed": 1, "m": 0.70},
        {"trial_id": "c", "lr": 0.3, "wd": 1e-3, "decay_epochs": [0.7], "seed": 0, "m": 0.85},
        {"trial_id": "d", "lr": 0.3, "wd": 1e-4, "decay_epochs": [0.8], "seed": 0, "m": 0.60},
    ]
    df = _table([{**r, "decay_epochs": json.dumps(r["decay_epochs"])} for r in rows])
    axes = {"lr": [0.1, 0.3], "wd": [1e-4, 1e-3], "decay_epochs": [(0.7,), (0.8,)]}
    doc = reseed.plan_reseed(df, "m", top=2, seeds=3, axes=axes)
    # c (0.85, one seed) beats a/b's mean (0.80): the mean over seeds ranks, not the best seed
    assert [f["trial_ids"] for f in doc["finalists"]] == [["c"], ["a", "b"]]
    assert doc["points"] == [
        {"lr": 0.3, "wd": 1e-3, "decay_epochs": (0.7,), "seed": 1},
        {"lr": 0.3, "wd": 1e-3, "decay_epochs": (0.7,), "seed": 2},
        {"lr": 0.1, "wd": 1e-3, "decay_epochs": (0.7,), "seed": 2},
    ]
    assert doc["search_trials"] == ["a", "b", "c", "d"]
    assert not reseed.reseed_finished(df, doc)


def test_short_or_failed_trials_are_never_finalists():
    rows = [{"trial_id": t, "lr": lr, "seed": 0, "m": m}
            for t, lr, m in (("a", 0.1, 0.99), ("b", 0.3, 0.5), ("c", 0.03, 0.98))]
    df = _table(rows)
    df.loc[0, "short_run"] = True
    df.loc[2, "status"] = "errored"
    doc = reseed.plan_reseed(df, "m", top=3, seeds=2, axes={"lr": [0.03, 0.1, 0.3]})
    assert [f["trial_ids"] for f in doc["finalists"]] == [["b"]]


def test_reseed_runs_the_repeats_as_trials_and_a_resume_changes_nothing(ray_session, tmp_path):
    from tune.run_sweep import main

    assert sweep(tmp_path, "r", "--max-trials", "6", "--reseed-top", "2", "--seeds", "3") == 0
    d = tmp_path / "r"
    df = read_table(d / "results.parquet")
    doc = json.loads((d / reseed.RESEED_FILE).read_text())
    assert len(df) == 6 + 4 and (df["status"] == "completed").all()
    search = df[df["trial_id"].isin(doc["search_trials"])]
    assert len(search) == 6 and list(df["trial_id"][:6]) == doc["search_trials"]
    # the finalists are the two best search trials, each now with seeds 0, 1, 2
    top2 = search.sort_values("val_full_top1", ascending=False)["config_id"].head(2).tolist()
    assert [f["config_id"] for f in doc["finalists"]] == top2
    for cid in top2:
        assert sorted(df.loc[df["config_id"] == cid, "seed"]) == [0, 1, 2]
    # the repeats differ only in seed from their finalist
    settings = [c for c in df.columns if c in ("lr", "wd", "epochs", "arch", "width")]
    for cid in top2:
        assert len(df.loc[df["config_id"] == cid, settings].drop_duplicates()) == 1
    # every row's config_id recomputes from the row itself
    assert all(config_id(r) == r["config_id"] for r in df.to_dict("records"))
    assert (d / reseed.RAY_SUBDIR).is_dir()
    before = (d / "results.parquet").read_bytes()
    assert main(["--resume", str(d)]) == 0  # finished, repeats included: nothing to do
    assert (d / "results.parquet").read_bytes() == before


def test_repeats_can_be_added_to_a_finished_sweep_on_resume(ray_session, tmp_path, capsys):
    from tune.run_sweep import main

    assert sweep(tmp_path, "s", "--max-trials", "3") == 0
    d = tmp_path / "s"
    assert len(read_table(d / "results.parquet")) == 3
    capsys.readouterr()
    assert main(["--resume", str(d), "--reseed-top", "1", "--seeds", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "seed repeats: the 1 best configurations" in out
    assert "best configuration by its mean val_full_top1 over seeds" in out
    df = read_table(d / "results.parquet")
    assert len(df) == 4 and df["config_id"].value_counts().max() == 2
    # asking for other repeats once they are planned is refused (one line, exit 2)
    assert main(["--resume", str(d), "--reseed-top", "2"]) == 2
    assert "were planned with --reseed-top 1 --seeds 2" in capsys.readouterr().err
    # The repeats asked for on that --resume are kept in space.json too: a session interrupted
    # before the search ended (no reseed.json yet) is continued by the printed plain
    # `--resume DIR` with them, not without.
    from tune.run_sweep import DEFAULTS, load_resumed_flags

    (d / reseed.RESEED_FILE).rename(d / "reseed.json.aside")
    flags = load_resumed_flags(d, dict(DEFAULTS), given=set())
    assert (flags["reseed_top"], flags["seeds"]) == (1, 2)


@pytest.mark.parametrize("extra, needle", [
    (["--reseed-top", "2", "--seeds", "1"], "--seeds must be at least 2"),
    (["--reseed-top", "-1"], "--reseed-top must be >= 0"),
    (["--reseed-top", "2", "--scheduler", "pbt"], "--scheduler pbt changes them"),
])
def test_bad_reseed_flags_are_one_line_and_exit_2(tmp_path, capsys, extra, needle):
    assert sweep(tmp_path, "bad", *extra) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_interrupted_repeats_resume_without_rerunning_finished_ones(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    args = [
        sys.executable, str(root / "tune" / "run_sweep.py"),
        "--space", "baseline_10pct", "--storage", str(tmp_path), "--name", "ri", "--no-report",
        "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "epochs=30",
        "--set", "batch_size=32", "--set", "labels=10/class", "--max-trials", "2",
        "--concurrency", "1", "--reseed-top", "1", "--seeds", "3",
    ]
    d = tmp_path / "ri"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(args, cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def completed() -> int:
        try:
            return int((read_table(d / "results.parquet")["status"] == "completed").sum())
        except (OSError, ValueError, KeyError):
            return 0

    deadline = time.time() + 300
    # the search's 2 trials and the first of the 2 repeats (one at a time) have completed
    while time.time() < deadline and proc.poll() is None and completed() < 3:
        time.sleep(0.3)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "the seed repeats stopped before all finished" in out and "--resume" in out
    first = read_table(d / "results.parquet")
    doc = json.loads((d / reseed.RESEED_FILE).read_text())
    done = first.loc[(first["status"] == "completed")
                     & ~first["trial_id"].isin(doc["search_trials"]), "trial_id"].tolist()
    assert len(done) >= 1
    stamps = {t: (d / "trials" / t / "metrics.json").stat().st_mtime_ns for t in done}

    p = subprocess.run([*args[:2], "--resume", str(d)], cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    final = read_table(d / "results.parquet")
    assert len(final) == 4 and (final["status"] == "completed").all()
    assert sorted(final["seed"][final["config_id"] == doc["finalists"][0]["config_id"]]) == [0, 1, 2]
    for t in done:  # finished repeats were not trained again
        assert (d / "trials" / t / "metrics.json").stat().st_mtime_ns == stamps[t]


def test_dry_run_names_the_seed_repeats(capsys):
    from tune.run_sweep import main

    assert main(["--space", "baseline_1pct", "--dry-run", "--reseed-top", "2", "--seeds", "4"]) == 0
    out = capsys.readouterr().out
    assert "then seed repeats: the 2 best configurations by val_full_top1" in out
    assert "until each has 4 seeds (up to 6 more trials)" in out
