"""Tests for analysis.stats: planted correlations, tie rule, regret, top-k overlap."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import stats as st


def test_planted_correlation_near_one():
    rng = np.random.default_rng(0)
    full = rng.uniform(0.2, 0.8, 200)
    tiny = full + rng.normal(0, 0.01, 200)
    c = st.correlations(tiny, full, n_boot=300)
    for name in ("pearson", "spearman", "kendall"):
        assert c[name] > 0.9, name
        assert c[name + "_p"] < 1e-30, name
        assert c[name + "_lo"] <= c[name] <= c[name + "_hi"], name
    assert c["pearson"] > 0.99 and c["pearson_lo"] > 0.98


def test_independent_scores_have_no_correlation():
    rng = np.random.default_rng(1)
    c = st.correlations(rng.random(300), rng.random(300), n_boot=300)
    for name in ("pearson", "spearman", "kendall"):
        assert abs(c[name]) < 0.15, name
        assert c[name + "_p"] > 0.01, name
        assert c[name + "_lo"] < 0 < c[name + "_hi"], name


def test_matches_scipy_and_bootstrap_is_seeded():
    from scipy import stats as sps

    rng = np.random.default_rng(2)
    x = rng.random(40)
    y = x + rng.normal(0, 0.3, 40)
    a = st.correlations(x, y, n_boot=200, seed=5)
    b = st.correlations(x, y, n_boot=200, seed=5)
    assert a == b
    assert a["pearson"] == pytest.approx(sps.pearsonr(x, y).statistic)
    assert a["kendall_p"] == pytest.approx(sps.kendalltau(x, y).pvalue)


def test_degenerate_inputs_give_nan_not_errors():
    c = st.correlations(np.ones(10), np.arange(10.0), n_boot=50)
    assert np.isnan(c["pearson"]) and np.isnan(c["pearson_lo"])
    c = st.correlations([0.1, 0.2], [0.3, 0.4], n_boot=50)
    assert np.isnan(c["spearman"])
    assert st.fmt_p(float("nan")) == "p = n/a" and st.fmt_p(0.0) == "p < 1e-300"


def test_planted_best_and_regret():
    ids = [f"t{i}" for i in range(5)]
    full = np.array([0.50, 0.60, 0.70, 0.65, 0.55])
    tiny = np.array([0.4, 0.9, 0.5, 0.6, 0.1])  # tiny picks t1 (full 0.60), best is t2 (0.70)
    s = st.select(tiny, full, ids)
    assert (s.picked, s.best, s.same_trial) == ("t1", "t2", False)
    assert s.regret_pt == pytest.approx(10.0)
    assert s.n_tied == 1 and s.expected_regret_pt == pytest.approx(10.0)
    s = st.select(full, full, ids)
    assert s.same_trial and s.regret_pt == 0.0


def test_tie_rule_first_in_order_and_random_expectation():
    ids = ["a", "b", "c", "d"]
    full = np.array([0.60, 0.70, 0.50, 0.65])
    tiny = np.array([0.8, 0.9, 0.9, 0.9])  # b, c, d tie at the top
    s = st.select(tiny, full, ids)
    assert s.picked == "b" and s.tied == ["b", "c", "d"]
    assert s.regret_pt == pytest.approx(0.0) and s.same_trial
    # random among b (0), c (20), d (5) points of regret
    assert s.expected_regret_pt == pytest.approx(25 / 3)
    assert s.p_best_random == pytest.approx(1 / 3)


def test_topk_overlap():
    full = np.arange(20.0)
    assert st.topk_overlap(full, full, 5) == 1.0
    assert st.topk_overlap(-full, full, 5) == 0.0
    tiny = full.copy()
    tiny[19] = -1  # the best on full drops out of tiny's top 5
    assert st.topk_overlap(tiny, full, 5) == pytest.approx(4 / 5)
    assert st.topk_overlap(tiny, full, 1) == 0.0
    assert st.topk_overlap(full[:3], full[:3], 10) == 1.0  # k capped at the number of trials
