"""The results contract end to end: real sweep directories go through the sweep's own report,
`s4l-report` and the analysis's loader, which read what the sweep wrote (not hand-made tables).

One sweep with the test-only stand-in trainer (many trials, instant) and one tiny real sweep
(real training, per-example predictions, splits.npz). One local Ray instance serves the module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import cli
from analysis.load import FULL, load_sweep
from tune.results import RESULTS_VERSION, read_table
from tune.sweep_plan import SWEEP_EVALUATIONS


def _sweep(tmp_path, name, *extra):
    from tune.run_sweep import main

    return main(["--storage", str(tmp_path), "--name", name, "--quiet", *extra])


def _same_report(d, tmp_path):
    assert cli.main([str(d), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    a = (d / "report" / "summary.txt").read_text()
    assert a == (tmp_path / "again" / "summary.txt").read_text() and a.strip()


def test_a_stand_in_sweep_goes_through_the_report(ray_session, tmp_path):
    assert _sweep(tmp_path, "s", "--space", "baseline_1pct", "--stand-in-trainer", "3",
                  "--max-trials", "12") == 0
    d = tmp_path / "s"
    table = read_table(d / "results.parquet")
    assert (table["results_version"] == RESULTS_VERSION).all() and len(table) == 12
    sweep = load_sweep(d)
    assert len(sweep.completed) == 12 and sweep.axes  # the axes come from space.json
    # the report's nested Pearson r is the table's own columns' r
    tiny = pd.read_csv(d / "report" / "tiny_subsets.csv")
    row = tiny[(tiny["subset"] == "1/class") & (tiny["yardstick"] == "nested")].iloc[0]
    r = sps.pearsonr(table["val_1pc_top1"], table[FULL]).statistic
    assert row["pearson"] == pytest.approx(r)
    # no per-example predictions from a stand-in: no p-value against the wrong null
    assert np.isnan(row["pearson_p"])
    # the report left at the end is the final one, not a live page that reloads itself
    assert "http-equiv='refresh'" not in (d / "report" / "index.html").read_text()
    _same_report(d, tmp_path)


def test_a_real_sweep_goes_through_the_report(ray_session, tmp_path):
    assert _sweep(tmp_path, "real", "--space", "baseline_10pct", "--max-trials", "3",
                  "--set", "arch=resnet18_v1", "--set", "width=0.25", "--set", "epochs=10",
                  "--set", "batch_size=64") == 0
    d = tmp_path / "real"
    sweep = load_sweep(d)
    preds = sweep.predictions
    assert preds is not None and preds.top1.shape == (3, len(preds.label))
    # the tiny subsets the analysis reads from splits.npz reproduce the table's scores, and the
    # predictions reproduce val_full_top1: no note says otherwise
    assert not [n for n in sweep.notes if "disagree" in n or "cannot be located" in n]
    # every completed trial records the part of its wall time spent scoring, at the sweep's
    # FIFO cadence
    done = sweep.completed
    assert (done["evaluations"] == SWEEP_EVALUATIONS["fifo"][0]).all()
    assert ((done["eval_seconds"] > 0) & (done["eval_seconds"] < done["train_seconds"])).all()
    for k in (1, 5):
        got = preds.top1[:, preds.tiny[k]].mean(axis=1)
        want = sweep.completed.set_index("trial_id").loc[list(preds.trial_ids), f"val_{k}pc_top1"]
        assert np.allclose(got, want.to_numpy())
    tiny = pd.read_csv(d / "report" / "tiny_subsets.csv")
    assert set(tiny["yardstick"]) == {"nested", "disjoint"}
    assert (d / "report" / "valsize.csv").is_file()
    _same_report(d, tmp_path)
