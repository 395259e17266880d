"""Sweeps on Ray Tune (tune/): plans, the results table, and real tiny sweeps on digits.

One local Ray instance (2 CPUs) serves every sweep of this module; `main()` reuses it. The
sweeps use baseline_10pct with architecture, width, epochs and batch pinned by --set, leaving
the paper's wd x lr axes (18 points), so each trial is a second or two of training.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from s4l_models.config import TrainConfig
from s4l_models.data.splits import load_splits
from s4l_models.errors import UserError
from s4l_models.predictions import load_sweep_predictions
from tune.results import (
    METRIC_KEYS,
    RESULTS_VERSION,
    columns,
    config_id,
    make_row,
    read_table,
    results_frame,
    trial_status,
    write_results,
)
from tune.sweep_plan import (
    DIGITS_DEFAULT_TRIALS,
    DIGITS_TRIAL_BUDGET_S,
    make_plan,
    short_line,
    warning_line,
)
from tune.trainable import decode_value, encode_value

TINY = [
    "--space", "baseline_10pct", "--no-report",
    "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "epochs=10",
    "--set", "batch_size=64",
]
WD = {0.01, 0.03, 0.001, 0.003, 0.0001, 0.0003}
LR = {0.3, 0.1, 0.03}


# --- planning (no Ray) ---------------------------------------------------------------------------
def test_digits_default_is_a_seeded_24_point_subset_covering_every_affordable_axis_value():
    plan = make_plan("baseline_1pct")
    assert plan.space.size == 8640 and plan.num_trials == DIGITS_DEFAULT_TRIALS
    assert len(plan.points) == 24
    assert len({json.dumps(p, sort_keys=True) for p in plan.points}) == 24
    # every value appears unless no configuration with it fits the per-trial budget; those are
    # named in the plan's note (the widest networks: >= 200 steps of them take many minutes)
    assert plan.left_out and set(plan.left_out) == {"width"}
    assert 4.0 in plan.left_out["width"] and 0.5 not in plan.left_out["width"]
    for axis in plan.space.axes:
        missing = set(plan.left_out.get(axis.key, []))
        assert {p[axis.key] for p in plan.points} == set(axis.values) - missing, axis.key
    assert all(plan.cost(p) <= DIGITS_TRIAL_BUDGET_S for p in plan.points)
    assert "left out" in plan.note and "width 2, 3, 4" in plan.note
    assert "--max-trials all" in plan.note
    assert make_plan("baseline_1pct").points == plan.points  # deterministic
    assert make_plan("baseline_1pct", seed=1).points != plan.points
    # cheap points preferred: far below the grid's average trial cost
    grid_mean = np.mean([plan.cost(plan.space.point_at(i)) for i in range(0, 8640, 37)])
    assert np.mean([plan.cost(p) for p in plan.points]) < grid_mean / 3


def test_the_main_command_trains_every_trial_and_the_literal_protocol_is_named_short():
    # scaled (default): the paper's 13 labels per class and >= 200 optimizer steps per trial
    plan = make_plan("baseline_1pct")
    assert plan.space.fixed["labels"] == "13/class" and plan.sizes.labeled == 130
    assert set(plan.space.axes[-1].values) == {16, 65}  # batch 256/1024 scaled x65/1024
    assert plan.short[0] == 0 and short_line(plan) is None
    for p in plan.points:
        steps = math.ceil(p["epochs"] * 130 / p["batch_size"])
        assert steps >= 200, p
    assert "labels 1% -> 13/class" in plan.adaptation.line()
    assert "batch_size 256/1024 -> 16/65" in plan.adaptation.line()
    # literal: the paper's values as they are; on digits every trial is too short and said so
    lit = make_plan("baseline_1pct", protocol="literal")
    assert lit.space.fixed["labels"] == "1%" and lit.sizes.labeled == 20
    steps = [math.ceil(p["epochs"] * 20 / p["batch_size"]) for p in lit.points]
    assert lit.short[1] == 24 and lit.short[0] == sum(n < 50 for n in steps) >= 20
    assert "too short to mean anything" in short_line(lit)
    assert "1 optimizer step" in short_line(lit) or "2 optimizer steps" in short_line(lit)
    # those that are long enough still train each batch on the 20 labeled images many times
    # over, which the plan says too (scaled: no batch exceeds the labeled set, nothing to say)
    assert min(p["batch_size"] for p in lit.points) > 20
    assert lit.warned[0] == lit.short[1] - lit.short[0] >= 1 and warning_line(plan) is None
    assert "is larger than the 20 images an epoch passes over" in warning_line(lit)
    # the dry run says both
    out = make_plan("baseline_1pct", protocol="literal", max_trials="all")
    assert out.short[0] > 0 and out.short[1] == 8640


def test_set_values_are_never_adapted():
    plan = make_plan("baseline_1pct", raw_set={"batch_size": "1024", "labels": "1%"})
    assert plan.space.fixed["batch_size"] == 1024 and plan.space.fixed["labels"] == "1%"
    assert "batch_size" not in plan.adaptation.changes and "labels" not in plan.adaptation.changes
    assert plan.short[0] == plan.short[1]  # and those runs are named as too short


def test_other_datasets_default_to_the_whole_grid_and_max_trials_all_too():
    assert make_plan("baseline_10pct", dataset="cifar10").points is None
    assert make_plan("baseline_10pct", dataset="cifar10").num_trials == 2160
    plan = make_plan("baseline_10pct", max_trials="all")
    assert plan.points is None and plan.num_trials == 2160


def test_the_sweep_evaluates_as_often_as_its_scheduler_needs_unless_set():
    from tune.runner import max_reports

    want = {"fifo": 2, "asha": 9, "hyperband": 9, "pbt": 8}
    for scheduler, n in want.items():
        plan = make_plan("baseline_10pct", max_trials=7, scheduler=scheduler)
        assert plan.space.fixed["evaluations"] == n
        assert plan.space.fixed_sources["evaluations"].startswith("(ours)")
        assert max_reports(plan) == n  # the schedulers' max_t
    plan = make_plan("baseline_10pct", max_trials=7, scheduler="asha",
                     raw_set={"evaluations": "5"})
    assert plan.space.fixed["evaluations"] == 5 and plan.space.fixed_sources["evaluations"] == "--set"
    # the cost model counts evaluations at the trainer's default cadence, so a scheduler does
    # not change which digits points a sweep picks (the main command's results stay its own)
    few, many = (make_plan("baseline_1pct", scheduler=s) for s in ("fifo", "asha"))
    assert few.points == many.points


def test_set_pins_axes_and_overrides_fixed_settings_with_types_checked():
    plan = make_plan("baseline_10pct", raw_set={"epochs": "2", "eval_every": "1", "lr": "0.1"})
    assert [a.key for a in plan.space.axes] == ["wd", "arch", "width"]
    assert plan.space.fixed["epochs"] == 2.0 and plan.space.fixed["eval_every"] == 1.0
    assert plan.space.size == 6 * 6 * 5
    for bad in ({"nope": "1"}, {"lr": "abc"}, {"splits_path": "/x"}, {"dataset": "cifar10"}):
        with pytest.raises(UserError):
            make_plan("baseline_10pct", raw_set=bad)


def test_random_and_optuna_plans_sample_the_same_axes():
    for search in ("random", "optuna"):
        plan = make_plan("baseline_10pct", search=search, max_trials=7)
        assert plan.num_trials == 7 and plan.space.keys == ("wd", "lr", "epochs", "arch", "width")
        # random search's distinct draws are known in advance; Optuna suggests as it goes
        assert (plan.points is None) == (search == "optuna")


def test_sample_points_with_fewer_points_than_values_and_without_cost():
    space = make_plan("baseline_10pct").space
    pts = space.sample_points(4, seed=3, cover=False)
    assert len(pts) == 4 and len({json.dumps(p, sort_keys=True) for p in pts}) == 4
    assert space.sample_points(4, seed=3, cover=False) == pts


def test_unknown_method_and_bad_values_are_user_errors():
    with pytest.raises(UserError, match="unknown method 'rotation'; choose one of supervised"):
        TrainConfig.from_dict({"method": "rotation"})
    with pytest.raises(UserError, match="unknown space"):
        make_plan("no_such_space")
    with pytest.raises(UserError, match="max-trials"):
        make_plan("baseline_10pct", max_trials="0")


def test_axis_values_survive_ray_encoding():
    for value in (0.1, 3, True, None, "resnet18_v1", (140.0, 160.0)):
        assert decode_value(encode_value(value)) == (list(value) if isinstance(value, tuple) else value)


# --- the results table (no Ray) ------------------------------------------------------------------
def test_status_and_row_from_a_trials_last_result(tmp_path):
    full = {"step": 10, "total_steps": 10, "epoch": 5.0, "train_seconds": 1.5, "val_full_top1": 0.5}
    assert trial_status("TERMINATED", full) == "completed"
    assert trial_status("TERMINATED", {**full, "step": 4}) == "stopped_early"
    assert trial_status("ERROR", full) == "errored"
    assert trial_status("TERMINATED", {"status": "diverged", "message": "nan"}) == "diverged"
    assert trial_status("RUNNING", full) == "running"
    cfg = TrainConfig.from_dict({"dataset": "digits"}).to_dict()
    row = make_row("t1", "completed", cfg, full, str(tmp_path))
    df = results_frame([row])
    assert list(df.columns) == columns()
    assert df.loc[0, "tiny_k"] == "[1, 5]" and math.isnan(df.loc[0, "test_top1"])
    write_results(tmp_path, df)
    # the files, as a pandas user reads them: lists as lists, no setting that is empty in every
    # row (here e.g. eps_vat and teacher), `error` empty
    back = pd.read_parquet(tmp_path / "results.parquet")
    empty = {c for c in TrainConfig.field_names() if cfg.get(c) is None}
    assert {"eps_vat", "teacher", "decay_epochs"} <= empty
    assert list(back.columns) == [c for c in columns() if c not in empty]
    assert list(back.loc[0, "tiny_k"]) == [1, 5] and back.loc[0, "val_full_top1"] == 0.5
    assert back.loc[0, "error"] == ""
    csv = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)
    assert len(csv) == 1 and csv.loc[0, "tiny_k"] == "[1, 5]" and csv.loc[0, "error"] == ""
    assert list(csv.columns) == list(back.columns)
    # the project's reader gives back the table as it was built (rows hash to their config_id)
    internal = read_table(tmp_path / "results.parquet")
    assert set(internal.columns) == set(columns()) and internal.loc[0, "tiny_k"] == "[1, 5]"
    assert internal.loc[0, "eps_vat"] is None
    assert config_id(internal.loc[0].to_dict()) == df.loc[0, "config_id"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


# --- real sweeps on one shared Ray instance ------------------------------------------------------
def run_sweep(storage, name, *extra):
    from tune.run_sweep import main

    rc = main([*TINY, "--storage", str(storage), "--name", name, *extra])
    return rc, storage / name


def table(sweep_dir) -> pd.DataFrame:
    return read_table(sweep_dir / "results.parquet")


def test_grid_sweep_of_four_trials_writes_every_output(ray_session, tmp_path, capsys):
    rc, d = run_sweep(tmp_path, "g4", "--max-trials", "4")
    out = capsys.readouterr().out
    assert rc == 0
    # the first line says what the protocol changed and why, measured on the loaded data
    assert out.splitlines()[0].startswith("scaled protocol on digits: labels 10% -> 48/class")
    assert "too short" not in out  # 480 labeled images, batch 64, 10 epochs: 75 steps each
    assert "best completed trial by val_full_top1" in out and str(d / "results.parquet") in out
    assert "4/4 done, 0 running, 0 errored" in out  # the progress line
    df = table(d)
    assert list(df.columns) == columns()
    assert len(df) == 4 and (df["status"] == "completed").all() and (df["error"] == "").all()
    assert len(pd.read_csv(d / "results.csv")) == 4
    assert len(set(zip(df["lr"], df["wd"]))) == 4
    assert set(df["wd"]) <= WD and set(df["lr"]) <= LR
    assert (df["arch"] == "resnet18_v1").all() and (df["width"] == 0.25).all()
    assert (df["epochs_done"] >= 10).all() and (df["steps_done"] == df["total_steps"]).all()
    for key in METRIC_KEYS:
        assert df[key].between(0, 1).all(), key
    assert (df["threads"] == 1).all() and (df["results_version"] == RESULTS_VERSION).all()
    # every trial used the sweep's one set of saved splits
    assert (df["splits_path"] == str(d)).all()
    splits = load_splits(d)
    for tdir in df["trial_dir"]:
        cfg = json.loads((d / "trials" / tdir.split("/")[-1] / "config.json").read_text())
        assert cfg["splits_path"] == str(d)
        assert not (d / "trials" / tdir.split("/")[-1] / "splits.npz").exists()
    pred = load_sweep_predictions(d / "predictions.npz")
    assert list(pred["trial_ids"]) == list(df["trial_id"])
    assert np.array_equal(pred["index"], splits.val)
    assert np.allclose(pred["top1"].mean(axis=1), df["val_full_top1"])
    space = json.loads((d / "space.json").read_text())
    assert space["axes"] == ["wd", "lr"] and space["metric"] == "val_full_top1"
    assert space["mode"] == "max" and space["results_version"] == RESULTS_VERSION
    assert space["space"]["name"] == "baseline_10pct" and space["flags"]["max_trials"] == "4"
    assert space["protocol"]["protocol"] == "scaled"
    assert space["protocol"]["changes"]["labels"]["paper"] == "10%"
    assert space["protocol"]["changes"]["labels"]["ours"] == "48/class"
    assert space["dataset_facts"]["measured"] is True
    assert space["short_configurations"]["count"] == 0
    assert (~df["short_run"]).all() and (df["total_steps"] == 75).all()
    # the same name again is refused (exit 2), not overwritten
    rc, _ = run_sweep(tmp_path, "g4", "--max-trials", "4")
    assert rc == 2 and "--resume" in capsys.readouterr().err


def test_random_and_optuna_sweeps_run(ray_session, tmp_path):
    for search in ("random", "optuna"):
        rc, d = run_sweep(tmp_path, search, "--search", search, "--max-trials", "3", "--seed", "1")
        assert rc == 0
        df = table(d)
        assert len(df) == 3 and (df["status"] == "completed").all(), search
        assert set(df["wd"]) <= WD and set(df["lr"]) <= LR
        if search == "random":  # distinct draws: no configuration runs twice
            assert df["config_id"].nunique() == 3


def test_optuna_is_told_a_stopped_trial_as_pruned_not_with_its_partial_score():
    # Ray's OptunaSearch tells a trial ASHA stopped as COMPLETE with its score after a ninth of
    # training; TPE would then model final accuracy from it
    from ray import tune as ray_tune

    from tune.runner import _optuna_search

    s = _optuna_search(0)
    s.set_search_properties("val_full_top1", "max", {"lr": ray_tune.choice([0.1, 0.3, 1.0])})
    s.suggest("stopped"), s.suggest("finished"), s.suggest("failed")
    s.on_trial_complete("stopped", {"val_full_top1": 0.5, "step": 3, "total_steps": 9})
    s.on_trial_complete("finished", {"val_full_top1": 0.9, "step": 9, "total_steps": 9})
    s.on_trial_complete("failed", None, error=True)
    ours = [s._ot_study.trials[i] for i in sorted(t.number for t in s._ot_trials.values())]
    assert [(t.state.name, t.value) for t in ours] == [
        ("PRUNED", None), ("COMPLETE", 0.9), ("FAIL", None)]


def test_optuna_suggests_no_configuration_twice_until_the_grid_is_spent():
    # TPE repeats itself on small grids; with one seed a repeat is the same run again
    from ray import tune as ray_tune

    from tune.runner import _optuna_search

    s = _optuna_search(0)
    s.set_search_properties("val_full_top1", "max", {
        "lr": ray_tune.choice([0.1, 0.3, 1.0]), "wd": ray_tune.choice([1e-4, 1e-3])})
    seen = []
    for i in range(6):  # the whole 6-point grid, some still running when others are asked
        config = s.suggest(f"t{i}")
        seen.append((config["lr"], config["wd"]))
        if i % 2:
            s.on_trial_complete(f"t{i}", {"val_full_top1": 0.5 + i / 100, "step": 9,
                                           "total_steps": 9})
    assert len(set(seen)) == 6
    # the grid spent: a repeat is allowed, without a storm of asks
    s.suggest("t6")
    assert len(s._ot_study.trials) <= 7 + 2 * s.REPEAT_TRIES


def test_asha_stops_some_trials_early(ray_session, tmp_path):
    rc, d = run_sweep(tmp_path, "asha", "--scheduler", "asha", "--max-trials", "9",
                      "--metric", "val_5pc_top1")
    assert rc == 0
    df = table(d)
    assert len(df) == 9
    early = df[df["status"] == "stopped_early"]
    assert len(early) >= 1
    assert (early["steps_done"] < early["total_steps"]).all()
    assert set(df["status"]) <= {"completed", "stopped_early"}
    assert not (d / "predictions.npz").exists() or len(
        load_sweep_predictions(d / "predictions.npz")["trial_ids"]
    ) == (df["status"] == "completed").sum()


def test_a_crashed_trial_is_retried_from_its_checkpoint(ray_session, tmp_path, capsys):
    # the trial kills its process at its first evaluation at or after step 20 of a fresh run
    # (step 23, after checkpoints at steps 8 and 15: 480 labeled images, batch 64, 10 epochs =
    # 75 steps, evaluated every 7.5)
    rc, d = run_sweep(tmp_path, "crash", "--set", "lr=0.1", "--set", "wd=0.001",
                      "--fail-at-step", "20", "--set", "evaluations=10")
    assert rc == 0
    assert "crashed" in capsys.readouterr().out
    df = table(d)
    assert len(df) == 1 and df.loc[0, "status"] == "completed"
    log = (d / "trials" / df.loc[0, "trial_id"] / "train.log").read_text()
    resumed_at = int(re.search(r"resuming at step (\d+)", log).group(1))
    assert 0 < resumed_at <= 20  # from its last checkpoint (15, before the crash), not 0
    # the retried trial ends exactly where an uninterrupted one does
    rc, ref = run_sweep(tmp_path, "nocrash", "--set", "lr=0.1", "--set", "wd=0.001")
    want = table(ref)
    for key in ("val_full_top1", "val_full_top5", "val_1pc_top1", "test_top1", "steps_done"):
        assert df.loc[0, key] == want.loc[0, key], key


def test_diverged_and_errored_trials_are_rows_not_failures(ray_session, tmp_path):
    rc, d = run_sweep(tmp_path, "div", "--set", "lr=1e30", "--set", "wd=0.001",
                      "--set", "warmup_epochs=0")
    assert rc == 0
    df = table(d)
    assert df.loc[0, "status"] == "diverged" and "loss became" in df.loc[0, "error"]
    # a trial that keeps crashing errors after --max-failures retries; the sweep still exits 0
    rc, d = run_sweep(tmp_path, "err", "--set", "lr=0.1", "--set", "wd=0.001",
                      "--fail-at-step", "0", "--max-failures", "1")
    assert rc == 0
    df = table(d)
    assert df.loc[0, "status"] == "errored" and df.loc[0, "error"]


def test_pbt_never_perturbs_at_a_trial_s_last_report():
    # a perturbation at the last report rewinds a finished trial to the donor's checkpoint and
    # trains its last stretch again: the interval is about a quarter of a trial, never a divisor
    from tune.runner import pbt_interval

    assert pbt_interval(8) == 3  # the PBT cadence's 8 reports: perturbations at 3 and 6
    for max_t in range(1, 60):
        k = pbt_interval(max_t)
        assert k >= max_t / 4 and max_t % k != 0, (max_t, k)


def test_pbt_exploits_with_adapted_checkpoints(ray_session, tmp_path):
    rc, d = run_sweep(tmp_path, "pbt", "--scheduler", "pbt", "--max-trials", "4")
    assert rc == 0
    df = table(d)
    assert len(df) == 4 and set(df["status"]) <= {"completed", "stopped_early"}
    assert (df["status"] == "completed").sum() >= 1


# --- many short trials: the machinery itself (test-only stand-in trainer) -------------------------
def test_stand_in_metrics_are_deterministic_rise_with_evaluations_and_favour_the_paper_optimum():
    from stand_in import stand_in_metrics

    cfg = TrainConfig.from_dict({"lr": 0.1, "wd": 1e-3, "epochs": 100})
    first, last = stand_in_metrics(cfg, 1, 3), stand_in_metrics(cfg, 3, 3)
    assert stand_in_metrics(cfg, 3, 3) == last
    assert last["val_full_top1"] > first["val_full_top1"]
    assert last["status"] == "completed" and first["status"] == "running"
    assert set(columns()) >= {k for k in last if k.startswith(("val_", "test_"))}
    worse = stand_in_metrics(TrainConfig.from_dict({"lr": 3.0, "wd": 0.1, "epochs": 100}), 3, 3)
    assert worse["val_full_top1"] < last["val_full_top1"] - 0.1


def test_release_keeps_only_the_sweep_metric_of_a_finished_trial(tmp_path):
    from types import SimpleNamespace

    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from tune.sweep_callback import SweepCallback

    meta = _TrainingRunMetadata()
    for step, value in enumerate([0.5, 0.7], 1):
        meta.update_metric("val_full_top1", value, step)
        meta.update_metric("train_loss", 1.0 / step, step)
    cb = SweepCallback(str(tmp_path), {"trials_dir": str(tmp_path / "trials"), "fixed": {},
                                       "runtime": {}}, "val_full_top1", [], 1, None)
    cb.release(SimpleNamespace(run_metadata=meta, trial_id="t"))
    assert set(meta.metric_analysis) == {"val_full_top1"}
    assert meta.metric_analysis["val_full_top1"]["max"] == 0.7
    assert meta.metric_n_steps == {}
    assert json.loads(meta.get_json_state())["metric_n_steps"] == {}  # Ray can still save it
    cb.release(SimpleNamespace(trial_id="other"))  # no run_metadata: left alone


def test_table_rewrites_wait_in_proportion_to_their_cost(tmp_path):
    from tune.results_table import TABLE_COST_FACTOR
    from tune.sweep_callback import SweepCallback

    cb = SweepCallback(str(tmp_path), {"trials_dir": str(tmp_path / "trials"), "fixed": {},
                                       "runtime": {}}, "val_full_top1", [], 1, None)
    cb.write()
    assert (tmp_path / "results.parquet").is_file()
    assert 0 < cb.table._table_wait < TABLE_COST_FACTOR * 5  # TABLE_COST_FACTOR x a sub-5 s write
    (tmp_path / "results.parquet").unlink()
    table = cb.table
    table._dirty_table, table._table_wait = True, 3600.0  # an expensive table: not rewritten yet
    table.maybe_write()
    assert not (tmp_path / "results.parquet").exists()
    table._table_wait = 0.0
    table.maybe_write()
    assert (tmp_path / "results.parquet").is_file() and not table._dirty_table


def test_a_stand_in_sweep_of_many_trials_fills_the_table_without_ray_logger_files(
    ray_session, tmp_path
):
    from tune.run_sweep import main

    rc = main(["--space", "baseline_1pct", "--max-trials", "60", "--stand-in-trainer", "3",
               "--no-report", "--quiet", "--storage", str(tmp_path), "--name", "many"])
    assert rc == 0
    sweep = tmp_path / "many"
    df = pd.read_parquet(sweep / "results.parquet")
    assert len(df) == 60 and (df["status"] == "completed").all()
    assert (df["steps_done"] == 3).all() and df["val_full_top1"].between(0, 1).all()
    assert len((sweep / "trials" / "stand_in_started.txt").read_text().splitlines()) == 60
    # Ray's per-trial result.json / progress.csv are off: our table holds the results
    assert not list(sweep.glob("*/result.json")) and not list(sweep.glob("*/progress.csv"))
