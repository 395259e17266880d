"""Tests for analysis.valsize: stratified subsets, exact two-trial probabilities, close pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import comb

from analysis import valsize as vs


def test_k_grid():
    assert vs.k_grid(np.repeat(np.arange(3), 50)) == [1, 2, 5, 10, 20, 50]
    assert vs.k_grid(np.repeat(np.arange(3), 7)) == [1, 2, 5, 7]
    assert vs.k_grid(np.repeat(np.arange(3), 1)) == [1]


def test_subsets_are_class_stratified_without_repeats():
    label = np.concatenate([np.repeat(np.arange(4), 6), [3, 3, 3]])  # class 3 larger
    rng = np.random.default_rng(0)
    label = label[rng.permutation(len(label))]
    cols = vs.stratified_subsets(label, 5, n_draws=50, seed=1)
    assert cols.shape == (50, 20)
    for row in cols:
        assert len(set(row)) == 20
        assert np.array_equal(np.bincount(label[row], minlength=4), [5, 5, 5, 5])
    assert len({tuple(sorted(r)) for r in cols}) > 40  # actually random
    with pytest.raises(ValueError):
        vs.stratified_subsets(label, 7, n_draws=1)


def _exact_p_better(a: np.ndarray, b: np.ndarray, label: np.ndarray, k: int) -> float:
    """P(trial a scores more than b on a random k-per-class subset) + half the tie probability.

    Per class the draw is multivariate hypergeometric over (a right b wrong), (a wrong b right)
    and the rest; the difference of the two scores is summed over classes by convolution.
    """
    pmf = np.array([1.0])  # of D = score_a - score_b, offset by the running minimum
    for c in np.unique(label):
        m = label == c
        n10, n01 = int((a & ~b)[m].sum()), int((~a & b)[m].sum())
        ns, n = int(m.sum()) - n10 - n01, int(m.sum())
        d = np.zeros(2 * k + 1)
        for i in range(k + 1):
            for j in range(k + 1 - i):
                d[i - j + k] += comb(n10, i) * comb(n01, j) * comb(ns, k - i - j) / comb(n, k)
        pmf = np.convolve(pmf, d)
    zero = (len(pmf) - 1) // 2
    return float(pmf[zero + 1:].sum() + 0.5 * pmf[zero])


def test_two_trials_match_the_exact_probability():
    rng = np.random.default_rng(3)
    label = np.repeat(np.arange(10), 60)
    top1 = np.stack([rng.random(600) < 0.80, rng.random(600) < 0.72])
    gap = 100 * (top1[0].mean() - top1[1].mean())
    assert gap > 0
    res = vs.study(top1, label, ks=[1, 5, 20], n_draws=3000, seed=0, pair_gap=100.0)
    table = res.table.set_index("k")
    for k in (1, 5, 20):
        exact = _exact_p_better(top1[0], top1[1], label, k)
        assert table.loc[k, "p_best"] == pytest.approx(exact, abs=0.03), k
        # the only close pair is (0, 1): it is misranked exactly when the worse one is picked
        assert table.loc[k, "pair_misrank"] == pytest.approx(1 - exact, abs=0.03), k
        assert table.loc[k, "regret_mean_pt"] == pytest.approx((1 - exact) * gap, abs=0.03 * gap)
    assert table.loc[1, "p_best"] < table.loc[5, "p_best"] < table.loc[20, "p_best"]
    assert res.n_pairs == 1


def test_full_split_picks_the_best_and_recommendation():
    rng = np.random.default_rng(4)
    label = np.repeat(np.arange(5), 20)
    acc = np.array([0.9, 0.5, 0.4, 0.3])  # one clear winner
    top1 = rng.random((4, 100)) < acc[:, None]
    res = vs.study(top1, label, n_draws=300, seed=1)
    last = res.table.iloc[-1]
    assert last["k"] == 20 and last["images"] == 100
    assert last["p_best"] == 1.0 and last["regret_max_pt"] == 0.0
    assert res.recommended_k is not None and res.recommended_k <= 5
    assert res.recommendation.startswith(f"for this sweep, k >= {res.recommended_k} images")
    fig, table = vs.plot_valsize(res)
    assert list(table["k_per_class"]) == [str(k) for k in vs.k_grid(label)]


def test_unbalanced_split_adds_the_whole_split():
    label = np.array([0] * 3 + [1] * 8)
    top1 = np.array([[1] * 11, [0] * 11], dtype=bool)
    res = vs.study(top1, label, n_draws=20)
    assert list(res.table["k_per_class"]) == ["1", "2", "3", "all"]
    assert res.table.iloc[-1]["images"] == 11
    assert res.n_pairs == 0  # 100 points apart: no close pair


def test_no_recommendation_when_never_reliable():
    rng = np.random.default_rng(5)
    label = np.repeat(np.arange(10), 4)
    top1 = rng.random((30, 40)) < 0.5  # 30 equally good trials: noise decides
    res = vs.study(top1, label, ks=[1, 2], n_draws=200)
    assert res.recommended_k is None and "keep the full validation split" in res.recommendation
    res = vs.study(top1, label, n_draws=100)  # up to the whole (balanced) split
    assert res.recommended_k == 4 and "i.e. only the whole split" in res.recommendation


def test_close_pairs_match_brute_force():
    rng = np.random.default_rng(6)
    counts = rng.integers(0, 40, 60).astype(float)
    n = 200  # 1 point = 2 examples
    better, worse = vs.close_pairs(counts, n, 1.0, 10**6, rng)
    got = set(zip(better.tolist(), worse.tolist()))
    want = {(i, j) for i in range(60) for j in range(60) if 0 < counts[i] - counts[j] <= 2}
    assert got == want
    b, w = vs.close_pairs(counts, n, 1.0, 10, rng)
    assert len(b) == 10 and set(zip(b.tolist(), w.tolist())) <= want
