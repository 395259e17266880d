"""Optuna's views in the report: fANOVA importance and parallel coordinates of a sweep."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import hpo_views as hv
from analysis.load import load_sweep
from planted_sweeps import planted_sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    # planted effects: wd and epochs large, lr small, arch and colour augmentation tiny
    d = planted_sweep(tmp_path_factory.mktemp("p") / "s", per_class=60)
    return load_sweep(d)


def test_fanova_ranks_the_planted_large_effects_first(sweep):
    table = hv.fanova(sweep, seed=0)
    assert set(table.axis) == {"wd", "lr", "epochs", "arch", "color_aug"}
    assert table.fanova_importance.sum() == pytest.approx(1.0)
    imp = dict(zip(table.axis, table.fanova_importance))
    assert min(imp["wd"], imp["epochs"]) > max(imp["arch"], imp["color_aug"], imp["lr"])
    # the same seed gives the same numbers (the report's key numbers are reproducible)
    assert hv.fanova(sweep, seed=0).equals(table)


def test_fanova_is_the_mean_of_several_forests_with_its_standard_error(sweep):
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    table = hv.fanova(sweep, seed=3, forests=4).set_index("axis")
    study, _ = hv.as_study(sweep)
    runs = [get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=s),
                                  normalize=True) for s in (3, 4, 5, 6)]
    for axis, row in table.iterrows():
        values = [r.get(axis, 0.0) for r in runs]
        assert row.fanova_importance == pytest.approx(sum(values) / 4)
        assert row.fanova_importance_se == pytest.approx(
            float(np.std(values, ddof=1) / 2))  # sd / sqrt(4)
    assert (table.forests == 4).all()
    words = hv.fanova_words(table.reset_index())
    assert "mean over 4 forests" in words and " ± " in words


def test_the_study_holds_every_completed_trial_with_its_score(sweep):
    study, axes = hv.as_study(sweep)
    assert len(study.trials) == len(sweep.completed) and "wd" in axes
    best = max(study.trials, key=lambda t: t.value)
    assert best.value == pytest.approx(100 * sweep.completed["val_full_top1"].max())


def test_parallel_coordinates_draw_one_axis_per_varying_axis(sweep):
    fig = hv.plot_parallel(sweep)
    labels = {t.get_text() for ax in fig.axes for t in ax.get_xticklabels()}
    assert {"wd", "lr", "epochs", "arch", "color_aug"} <= labels
