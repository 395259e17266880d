"""The nulls of the tiny-subset p-values, checked on sweeps where all trials are equally good.

Every sweep here is drawn with numpy's seeded Generator (the same streams on any machine); the
margins below are several binomial or sampling SE wide, so they do not hinge on the last bits
of a floating-point sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import tiny_masks
from scipy import stats as sps

from analysis import stats as st
from analysis.load import Predictions, Sweep


def mem_sweep(top1: np.ndarray, label: np.ndarray, ks=(5,), name: str = "mem") -> Sweep:
    """An in-memory sweep (table + predictions + masks) with the contract of load_sweep."""
    t, n = top1.shape
    masks = tiny_masks(label, ks)
    ids = [f"t{i:03d}" for i in range(t)]
    df = pd.DataFrame({"trial_id": ids, "status": "completed", "val_full_top1": top1.mean(1)})
    for k, m in masks.items():
        df[f"val_{k}pc_top1"] = top1[:, m].mean(1)
    preds = Predictions(trial_ids=np.array(ids), label=label, top1=top1, top5=top1,
                        index=np.arange(n), tiny=masks)
    return Sweep(run_dir=Path("."), name=name, space_name=name, df=df, completed=df, axes=[],
                 predictions=preds)


# 10 classes x 50 examples, tiny = 5/class (50 of 500 examples, nested in the full split);
# every trial answers example j correctly with the same probability pi_j (H0 is true).
C, PER, T, K = 10, 50, 30, 5
LABEL = np.repeat(np.arange(C), PER)
MASK = tiny_masks(LABEL, (K,))[K]
PI = 1 / (1 + np.exp(-np.random.default_rng(7).normal(0.3, 1.5, C * PER)))


def test_null_r_formula_matches_a_simulation():
    # 20000 equally good trials: the sample r of tiny vs full estimates the population r with
    # SE (1 - r^2) / sqrt(20000) ~ 0.0064; the margin 0.03 is ~5 SE.
    rng = np.random.default_rng(11)
    x = rng.random((20000, len(PI))) < PI
    r = np.corrcoef(x[:, MASK].mean(1), x.mean(1))[0, 1]
    assert st.null_r(PI, MASK) == pytest.approx(r, abs=0.03)
    # the overlap alone gives r ~ sqrt(|S| / N) = sqrt(0.1) = 0.32, far from 0
    assert 0.25 < st.null_r(PI, MASK) < 0.40
    # uniform rates: exactly sqrt(|S| / N)
    assert st.null_r(np.full(500, 0.3), MASK) == pytest.approx(np.sqrt(50 / 500))
    # the Monte-Carlo draws centre on the formula (2000 draws of 30 trials: SE of the mean
    # ~0.17 / sqrt(2000) ~ 0.004; margin 0.02)
    model = st.NullModel.from_predictions(x[:200], MASK)
    tiny, _, full = model.draw(30, 2000, np.random.default_rng(3))
    assert st.rowwise_stats(tiny, full)["pearson"].mean() == pytest.approx(model.r, abs=0.02)


def test_poisson_binomial_pmf_is_exact():
    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 40, 300):  # 300 uses the FFT levels
        p = rng.random(n)
        p[:2] = [0.0, 1.0][: min(2, n)]  # degenerate examples shift the distribution
        pmf = np.zeros(n + 1)
        pmf[0] = 1.0
        for pj in p:  # the textbook recursion
            pmf[1:] = pmf[1:] * (1 - pj) + pmf[:-1] * pj
            pmf[0] *= 1 - pj
        assert st.poisson_binomial_pmf(p) == pytest.approx(pmf, abs=1e-12)


def test_nested_p_keeps_its_level_where_the_independence_test_does_not():
    """200 null sweeps of 30 equally good trials: the overlap-aware nested p-value rejects at
    about the nominal 5%; scipy's pearsonr (independence) rejects ~40% of them, because the
    subset inside the full split correlates with it anyway (r ~ 0.32 here)."""
    reps, alpha = 200, 0.05
    # Under an exact 5% test, P(more than `limit` rejections of 200) < 1e-4 (limit = 22, 11%);
    # the Monte-Carlo null with plug-in rates measured 5.5% over 1000 such sweeps.
    limit = sps.binom.isf(1e-4, reps, alpha)
    rng = np.random.default_rng(2024)
    nested = {n: 0 for n in st.NAMES}
    disjoint = {n: 0 for n in st.NAMES}
    naive, r_disjoint = 0, []
    for rep in range(reps):
        top1 = rng.random((T, len(PI))) < PI
        res = st.tiny_study(mem_sweep(top1, LABEL, ks=(K,)), n_boot=0, n_null=200, seed=rep)[0]
        assert res.nested.null == st.NESTED_NULL and res.disjoint.null == st.DISJOINT_NULL
        for n in st.NAMES:
            nested[n] += res.nested.corr[n + "_p"] < alpha
            disjoint[n] += res.disjoint.corr[n + "_p"] < alpha
        naive += sps.pearsonr(res.nested.tiny, res.nested.scores).pvalue < alpha
        r_disjoint.append(res.disjoint.corr["pearson"])
    for n in st.NAMES:
        assert nested[n] <= limit, (n, nested[n])
        assert disjoint[n] <= limit, (n, disjoint[n])
    # naive: measured ~40%; 25% is 4 binomial SE (0.035) below
    assert naive / reps > 0.25, naive
    assert naive > 3 * max(nested.values())
    # the disjoint r has mean ~0: SD per sweep ~0.18, SE of the mean 0.013, margin 0.06
    assert abs(np.mean(r_disjoint)) < 0.06


def test_nested_p_detects_real_differences():
    # trials differ by a shared logit shift (SD 0.5): the subset ranks them, p at its floor
    rng = np.random.default_rng(8)
    logit = rng.normal(0, 0.5, (T, 1)) + np.log(PI / (1 - PI))
    top1 = rng.random((T, len(PI))) < 1 / (1 + np.exp(-logit))
    res = st.tiny_study(mem_sweep(top1, LABEL, ks=(K,)), n_boot=0, n_null=400)[0]
    for y in (res.nested, res.disjoint):
        assert y.corr["pearson_p"] < 0.01, y.name
        assert y.corr["pearson"] > y.corr["pearson_null"] + 0.2, y.name


def test_without_predictions_the_nested_p_is_unavailable():
    top1 = np.random.default_rng(1).random((T, len(PI))) < PI
    sweep = mem_sweep(top1, LABEL, ks=(K,))
    sweep.predictions = None
    res = st.tiny_study(sweep, n_boot=100)[0]
    assert res.disjoint is None and res.mcnemar is None
    assert res.nested.null == st.UNAVAILABLE
    for n in st.NAMES:  # never the independence test against the wrong null
        assert np.isnan(res.nested.corr[n + "_p"]) and np.isfinite(res.nested.corr[n])
    row = st.tiny_table([res]).iloc[0]
    assert row["yardstick"] == "nested" and np.isnan(row["pearson_p"])
