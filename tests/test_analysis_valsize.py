"""Tests for analysis.valsize: both designs, exact and brute-force probabilities, MC errors.

Every study here is seeded, so its numbers are the same on any machine with the same numpy (the
counts are exact integers in float32, whatever BLAS adds them). The margins are still chosen so
that the assertions hold for any seed: each comment says how far the figure is from its bound
in Monte-Carlo standard errors (SE) or why the bound is exact.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.special import comb

from analysis import valsize as vs


def test_k_grid():
    assert vs.k_grid(np.repeat(np.arange(3), 50), design="nested") == [1, 2, 5, 10, 20, 50]
    assert vs.k_grid(np.repeat(np.arange(3), 7), design="nested") == [1, 2, 5, 7]
    assert vs.k_grid(np.repeat(np.arange(3), 1), design="nested") == [1]
    # held-out: up to half the smallest class (its pool)
    assert vs.k_grid(np.repeat(np.arange(3), 50)) == [1, 2, 5, 10, 20, 25]
    assert vs.k_grid(np.repeat(np.arange(3), 7)) == [1, 2, 3]
    assert vs.k_grid(np.repeat(np.arange(3), 1)) == []
    with pytest.raises(ValueError):
        vs.k_grid(np.arange(3), design="other")


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


def test_nested_two_trials_match_the_exact_probability():
    rng = np.random.default_rng(3)
    label = np.repeat(np.arange(10), 60)
    top1 = np.stack([rng.random(600) < 0.80, rng.random(600) < 0.72])
    gap = 100 * (top1[0].mean() - top1[1].mean())
    assert gap > 0
    res = vs.study(top1, label, design="nested", ks=[1, 5, 20], n_draws=3000, seed=0,
                   pair_gap=100.0)
    table = res.table.set_index("k")
    for k in (1, 5, 20):
        exact = _exact_p_better(top1[0], top1[1], label, k)
        row = table.loc[k]
        # 4 SE: a Monte-Carlo miss that large has probability 6e-5 per comparison
        assert abs(row["p_best"] - exact) <= 4 * row["p_best_se"] + 1e-12, k
        # the only close pair is (0, 1): it is misranked exactly when the worse one is picked
        assert abs(row["pair_misrank"] - (1 - exact)) <= 4 * row["pair_misrank_se"] + 1e-12, k
        assert abs(row["regret_mean_pt"] - (1 - exact) * gap) <= \
            4 * row["regret_mean_pt_se"] + 1e-12, k
    assert table.loc[1, "p_best"] < table.loc[5, "p_best"] < table.loc[20, "p_best"]
    assert res.n_pairs == 1 and res.design == "nested"


def _brute_force_heldout(top1: np.ndarray, label: np.ndarray, k: int) -> dict:
    """Exact held-out figures by enumerating every halving and every subset of its pool.

    A draw is, per class, a uniformly random pool of floor(n_c / 2) examples and a uniformly
    random k of them; that is the same as a random ordered choice of k of the pool and an
    unordered rest, so we enumerate (pool, subset of the pool) pairs per class, all equally
    likely, and take the product over classes.
    """
    per_class = []
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        half = len(idx) // 2
        per_class.append([(pool, sub) for pool in itertools.combinations(idx, half)
                          for sub in itertools.combinations(pool, k)])
    n = len(label)
    out = {"p_best": [], "p_within_0.5pt": [], "p_within_1pt": [], "regret_mean_pt": [],
           "pair_misrank": []}
    for combo in itertools.product(*per_class):
        pool = np.concatenate([p for p, _ in combo])
        sub = np.concatenate([s for _, s in combo])
        held = np.setdiff1d(np.arange(n), pool)
        s = top1[:, sub].sum(axis=1)
        h = top1[:, held].sum(axis=1)
        reg = 100 * (h.max() - h) / len(held)
        picked = np.flatnonzero(s == s.max())  # each with probability 1/#tied
        out["regret_mean_pt"].append(reg[picked].mean())
        out["p_best"].append(np.mean(reg[picked] == 0))
        out["p_within_0.5pt"].append(np.mean(reg[picked] <= 0.5))
        out["p_within_1pt"].append(np.mean(reg[picked] <= 1.0))
        # close pairs (pair_gap = 100 pt: every pair not tied on the held-out half)
        mis = [float(s[i] < s[j]) + 0.5 * float(s[i] == s[j])
               for i in range(len(h)) for j in range(len(h)) if h[i] > h[j]]
        if mis:
            out["pair_misrank"].append(np.mean(mis))
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_heldout_matches_brute_force_on_a_tiny_case():
    # 3 trials, 3 classes x 4 examples: pools of 2, held-out halves of 2 per class (6 images);
    # k = 1 and the whole pool (k = 2). 12^3 = 1,728 equally likely (pool, subset) choices.
    rng = np.random.default_rng(21)
    label = np.repeat(np.arange(3), 4)
    top1 = rng.random((3, 12)) < np.array([0.75, 0.6, 0.5])[:, None]
    res = vs.study(top1, label, n_draws=6000, seed=2, pair_gap=100.0)
    assert list(res.table["k_per_class"]) == ["1", "pool"]
    for _, row in res.table.iterrows():
        exact = _brute_force_heldout(top1, label, int(row["k"]))
        for col, want in exact.items():
            # 4 MC SE of the study's own estimate (probability 6e-5 of a miss that large per
            # comparison); 1e-12 for figures that are the same in every draw (SE 0)
            assert abs(row[col] - want) <= 4 * row[col + "_se"] + 1e-12, (row["k"], col)
    # the held-out half has 6 images: 1 image is 16.7 pt, so 0.5 and 1 pt mean "the best"
    assert np.allclose(res.table["p_within_0.5pt"], res.table["p_best"])


def test_close_pairs_per_draw_match_brute_force():
    rng = np.random.default_rng(8)
    h = rng.integers(0, 12, size=(15, 40)).astype(np.float32)
    gap = 2.0
    better, worse, col, tot = vs._close_pairs_per_draw(h, gap, 500, rng)
    for b in range(h.shape[1]):
        want = {(i, j) for i in range(15) for j in range(15) if 0 < h[i, b] - h[j, b] <= gap}
        assert tot[b] == len(want)
        got = set(zip(better[col == b].tolist(), worse[col == b].tolist()))
        assert got <= want
        if want:  # 500 draws with replacement from at most 105 pairs see all of them
            assert (col == b).sum() == 500 and got == want


def test_null_sweep_heldout_finds_nothing_nested_reaches_one():
    # 20 trials that are the same model: every trial is right on example i with the same
    # probability q_i, independently. No trial is better; any "best" is noise.
    rng = np.random.default_rng(11)
    label = np.repeat(np.arange(10), 40)
    q = rng.uniform(0.3, 1.0, 400)
    top1 = rng.random((20, 400)) < q[None, :]
    held = vs.study(top1, label)
    nested = vs.study(top1, label, design="nested")
    # held-out: the pick on the pool is independent of the held-out half, so P(within 0.5 pt)
    # is the share of trials within 1 image of the held-out best, about 2/20; 0.5 is > 50 SE
    # above this (SE ~0.007 at 2,000 draws)
    assert held.recommended_k is None
    assert "none of the k tried, the whole pool included, separates the trials as judged on " \
        "held-out images" in held.recommendation
    assert held.table["p_within_0.5pt"].max() < 0.5
    pool = held.table.iloc[-1]
    assert pool["k_per_class"] == "pool" and pool["images"] == 200
    assert f"P = {pool['p_within_0.5pt']:.3f} ± {pool['p_within_0.5pt_se']:.3f}" in \
        held.recommendation
    # nested: at the whole split the subset is the yardstick, so it "finds the best" surely
    last = nested.table.iloc[-1]
    assert last["images"] == 400 and last["p_best"] == 1.0 and last["p_best_se"] == 0.0
    assert nested.recommended_k == 40 and "i.e. only the whole split" in nested.recommendation
    # ...and its agreement at k = 20 (half the split) is inflated over the held-out pool's
    k20 = nested.table.set_index("k_per_class").loc["20"]
    assert k20["p_best"] > pool["p_best"] + 4 * (k20["p_best_se"] + pool["p_best_se"])



def test_trials_that_never_differ_get_no_recommendation():
    # 5 trials with identical predictions: any pick, even without a validation image, is the
    # best, so "k = 1 suffices" would be true of no validation set at all
    rng = np.random.default_rng(13)
    label = np.repeat(np.arange(10), 40)
    top1 = np.repeat(rng.random((1, 400)) < 0.8, 5, axis=0)
    for design in vs.DESIGNS:
        res = vs.study(top1, label, design=design, n_draws=200)
        assert res.p_within_blind == 1.0
        assert res.recommended_k is None
        assert "a trial picked at random, without any validation image, is within 0.5 pt of " \
            "the best with probability 1.000" in res.recommendation
        assert "cannot tell validation sizes apart" in res.recommendation
    # one clearly best trial among 5: a random pick is the best 1 time in 5 (exactly, nested:
    # the 4 others are 10 points behind), so the study recommends a k as before
    top1[0] = True
    res = vs.study(top1, label, design="nested", n_draws=200)
    assert res.p_within_blind == pytest.approx(0.2)
    assert res.recommended_k is not None

def test_one_clearly_best_trial_is_found_at_small_k():
    # trial 0 at 97%, five others at 87%: 10 points apart (realised 96.8% vs 84-88.5%)
    rng = np.random.default_rng(12)
    label = np.repeat(np.arange(10), 100)
    top1 = rng.random((6, 1000)) < np.r_[0.97, np.full(5, 0.87)][:, None]
    res = vs.study(top1, label)
    row = res.table.set_index("k_per_class").loc["10"]
    # at k = 10 (100 images) trial 0 leads each rival by ~10 images with SD ~3.8 (z ~2.6 per
    # rival); this seed gives 0.983 ± 0.003, 13 SE above 0.95
    assert row["p_best"] >= vs.TARGET
    assert res.recommended_k is not None and res.recommended_k <= 10
    assert res.recommendation.startswith("for this sweep, to select within 0.5 pt")
    assert f"the smallest k tried that reaches it is {res.recommended_k} per class" in \
        res.recommendation
    assert "k >=" not in res.recommendation
    assert "judged on a held-out half of the validation split" in res.recommendation
    assert res.design == "heldout" and res.n_draws == vs.DRAWS
    assert res.table.iloc[-1]["p_best"] == 1.0  # the pool: 48 points ahead, no chance to lose


def test_heldout_is_below_nested_on_close_trials():
    # 10 trials 0.5 pt apart (80-84.5%), 10 classes x 60 examples
    rng = np.random.default_rng(7)
    label = np.repeat(np.arange(10), 60)
    top1 = rng.random((10, 600)) < np.linspace(0.80, 0.845, 10)[:, None]
    held = vs.study(top1, label).table.set_index("k")
    nested = vs.study(top1, label, design="nested", ks=[20, 30]).table.set_index("k")
    for k in (20, 30):
        h, n = held.loc[k], nested.loc[k]
        # nested judges 20 or 30 of 60 per class on a yardstick that contains them; held-out
        # judges them on 30 other images. Seeded: 0.25 / 0.09 held-out vs 0.47 / 0.52 nested
        # (SE ~0.01 each, gaps of 15 and 36 combined SE): we ask for 4 combined SE
        assert h["p_best"] + 4 * np.hypot(h["p_best_se"], n["p_best_se"]) < n["p_best"], k


def test_se_columns_are_binomial_for_a_zero_one_outcome():
    # trial 1 is trial 0's complement: on an odd number of images they never tie, so every
    # per-draw outcome is 0 or 1 and its MC SE is sqrt(p (1 - p) / draws) exactly
    rng = np.random.default_rng(5)
    label = np.repeat(np.arange(3), 6)
    a = rng.random(18) < 0.6
    assert a.sum() != 9  # no tie on the full split either
    top1 = np.stack([a, ~a])
    held = vs.study(top1, label, n_draws=1000, pair_gap=100.0)
    nested = vs.study(top1, label, design="nested", n_draws=1000, pair_gap=100.0)
    checked = 0
    for table in (held.table, nested.table):
        for _, row in table.iterrows():
            if row["images"] % 2 == 0 or row["images"] == 18:
                continue  # subsets of 6 images can tie; the whole split is not resampled
            for col in ("p_best", "p_within_0.5pt", "p_within_1pt", "pair_misrank"):
                p, n = row[col], row["draws"]
                assert row[col + "_se"] == pytest.approx(np.sqrt(p * (1 - p) / n), abs=1e-12)
                checked += 1
    assert checked == 4 * 4  # held-out k = 1 and pool (9 images); nested k = 1 and 5


def _table(design: str, ks: list, p: list, se: list, pool: bool = True) -> pd.DataFrame:
    labels = [str(k) for k in ks]
    if pool:
        labels[-1] = "pool"
    return pd.DataFrame({"design": design, "k_per_class": labels, "k": ks,
                         "images": [10 * k for k in ks], "p_within_0.5pt": p,
                         "p_within_0.5pt_se": se})


def test_recommend_range_and_borderline():
    # clear: 0.96 at k = 5 is 2.5 SE above 0.95, 0.80 at k = 2 far below
    rec = vs.recommend(_table("heldout", [1, 2, 5, 10, 20], [0.5, 0.8, 0.96, 0.99, 1.0],
                              [0.01, 0.01, 0.004, 0.002, 0.0]), 10)
    assert rec.k == 5 and rec.range == (5, 5) and not rec.borderline
    assert "judged on a held-out half of the validation split" in rec.text
    assert "P = 0.960 ± 0.004 MC SE at k = 5" in rec.text and "borderline" not in rec.text
    # borderline: 0.955 ± 0.004 at k = 5 and 0.945 ± 0.004 at k = 2 both within 2 SE of 0.95
    rec = vs.recommend(_table("heldout", [1, 2, 5, 10, 20], [0.5, 0.945, 0.955, 0.99, 1.0],
                              [0.01, 0.004, 0.004, 0.002, 0.0]), 10)
    assert rec.k == 5 and rec.range == (2, 10) and rec.borderline and "borderline" in rec.text
    # only the k before is near: still borderline
    rec = vs.recommend(_table("heldout", [1, 2, 5], [0.5, 0.945, 0.99], [0.01, 0.004, 0.002]),
                       10)
    assert rec.k == 5 and rec.range == (2, 5) and rec.borderline
    # no k clears 0.95 by 2 SE: the upper end of the range is None
    rec = vs.recommend(_table("heldout", [1, 2, 5], [0.5, 0.951, 0.952], [0.01, 0.004, 0.004]),
                       10)
    assert rec.k == 2 and rec.range == (2, None) and rec.borderline
    # a dip below the target after reaching it: the smallest k *from which on* it holds
    rec = vs.recommend(_table("heldout", [1, 2, 5, 10], [0.96, 0.94, 0.97, 0.98],
                              [0.001, 0.001, 0.001, 0.001]), 10)
    assert rec.k == 5 and rec.range == (5, 5) and not rec.borderline
    # none: say so, with the pool's probability and SE
    rec = vs.recommend(_table("heldout", [1, 2, 5], [0.2, 0.4, 0.6], [0.01, 0.01, 0.01]), 10)
    assert rec.k is None and rec.range == (None, None) and not rec.borderline
    assert "none of the k tried, the whole pool included, separates the trials" in rec.text
    assert "k tried: 1, 2 per class and the whole pool" in rec.text
    assert "; the pool: P = 0.600 ± 0.010 MC SE)" in rec.text
    rec = vs.recommend(_table("heldout", [1, 2, 5], [0.2, 0.4, 0.94], [0.01, 0.01, 0.01]), 10)
    assert rec.k is None and rec.range == (5, None) and rec.borderline
    # nested: the trivial whole-split row of an unbalanced split does not count
    t = _table("nested", [1, 2, 5], [0.5, 0.8, 0.9], [0.01, 0.01, 0.01], pool=False)
    t = pd.concat([t, pd.DataFrame({"design": ["nested"], "k_per_class": ["all"], "k": [9],
                                    "images": [60], "p_within_0.5pt": [1.0],
                                    "p_within_0.5pt_se": [0.0]})], ignore_index=True)
    rec = vs.recommend(t, 10)
    assert rec.k is None and "keep the full validation split" in rec.text
    assert "nested design" in rec.text


def test_unbalanced_splits_end_with_the_whole_pool_or_split():
    label = np.array([0] * 3 + [1] * 8)
    top1 = np.array([[1] * 11, [0] * 11], dtype=bool)
    res = vs.study(top1, label, design="nested", n_draws=20)
    assert list(res.table["k_per_class"]) == ["1", "2", "3", "all"]
    assert res.table.iloc[-1]["images"] == 11
    assert res.n_pairs == 0  # 100 points apart: no close pair
    res = vs.study(top1, label, n_draws=20)  # pools of 1 and 4, held-out halves of 2 and 4
    assert list(res.table["k_per_class"]) == ["1", "pool"]
    assert list(res.table["images"]) == [2, 5]
    assert (res.table["p_best"] == 1.0).all() and res.recommended_k == 1
    assert np.isnan(res.table["pair_misrank"]).all()  # never a close pair on the held-out half
    with pytest.raises(ValueError, match="at least 2 validation examples"):
        vs.study(top1, np.array([0] * 1 + [1] * 10), n_draws=5)


def test_nested_no_recommendation_when_never_reliable():
    rng = np.random.default_rng(5)
    label = np.repeat(np.arange(10), 4)
    top1 = rng.random((30, 40)) < 0.5  # 30 equally good trials: noise decides
    res = vs.study(top1, label, design="nested", ks=[1, 2], n_draws=200)
    assert res.recommended_k is None and "keep the full validation split" in res.recommendation
    res = vs.study(top1, label, design="nested", n_draws=100)  # up to the whole split
    assert res.recommended_k == 4 and "i.e. only the whole split" in res.recommendation


def test_counting_paths_agree():
    # gather-sums of added examples, BLAS products and the chunked bool path give the same
    # integer counts, hence the same table for the same seed
    rng = np.random.default_rng(9)
    label = np.repeat(np.arange(4), 40)
    top1 = rng.random((12, 160)) < rng.uniform(0.6, 0.9, 12)[:, None]
    ref = vs.study(top1, label, n_draws=300, seed=4).table
    old = vs._SPARSE_FACTOR, vs._DENSE_MAX_ELEMS
    try:
        vs._SPARSE_FACTOR = 10**9  # every row by a BLAS product
        dense = vs.study(top1, label, n_draws=300, seed=4).table
        vs._DENSE_MAX_ELEMS = 0  # bool matrix converted in chunks
        chunked = vs.study(top1, label, n_draws=300, seed=4).table
    finally:
        vs._SPARSE_FACTOR, vs._DENSE_MAX_ELEMS = old
    pd.testing.assert_frame_equal(ref, dense)
    pd.testing.assert_frame_equal(ref, chunked)


def test_plot_both_designs():
    rng = np.random.default_rng(4)
    label = np.repeat(np.arange(5), 20)
    top1 = rng.random((4, 100)) < np.array([0.9, 0.5, 0.4, 0.3])[:, None]
    held = vs.study(top1, label, n_draws=300, seed=1)
    nested = vs.study(top1, label, design="nested", n_draws=300, seed=1)
    fig, table = vs.plot_valsize(held, nested, title="t")
    assert list(table["design"]) == ["heldout"] * len(held.table) + ["nested"] * len(
        nested.table)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any("nested (paper's construction)" in s for s in labels)
    fig, table = vs.plot_valsize(held)
    assert list(table["k_per_class"]) == ["1", "2", "5", "pool"]


def test_recommend_names_only_the_k_tried():
    # the digits nested case: 20 falls short, 48 (the smallest class, the next grid point)
    # reaches it. Nothing between was tried, so "k >= 48" is no demonstrated minimum: the
    # sentence names 48 as the smallest k *tried* and 20 as the next smaller one, which fails.
    t = _table("nested", [1, 2, 5, 10, 20, 48], [0.1, 0.2, 0.4, 0.6, 0.9, 1.0],
               [0.01, 0.01, 0.01, 0.01, 0.01, 0.0], pool=False)
    t["images"] = [10 * k for k in t["k"]]
    t = pd.concat([t, pd.DataFrame({"design": ["nested"], "k_per_class": ["all"], "k": [60],
                                    "images": [530], "p_within_0.5pt": [1.0],
                                    "p_within_0.5pt_se": [0.0]})], ignore_index=True)
    rec = vs.recommend(t, 10)
    assert rec.k == 48 and rec.range == (48, 48)
    assert "k >=" not in rec.text and "k ≥" not in rec.text
    assert rec.text.startswith("for this sweep, to select within 0.5 pt of the best with 95% "
                               "probability, judged on the whole split")
    assert "the smallest k tried that reaches it is 48 per class (480 images)" in rec.text
    assert "the next smaller k tried, 20, does not reach it; nothing between was tried" in \
        rec.text
    assert "k tried: 1, 2, 5, 10, 20, 48 per class" in rec.text  # not the "all" row
    assert "(P = 1.000 ± 0.000 MC SE at k = 48; k = 48 also at ±2 MC SE)" in rec.text
    # held-out, the MC range kept: neighbours 1 and 2 leave nothing between
    rec = vs.recommend(_table("heldout", [1, 2, 5, 10, 20], [0.5, 0.945, 0.955, 0.99, 1.0],
                              [0.01, 0.004, 0.004, 0.002, 0.0]), 10)
    assert "the smallest k tried that reaches it is 5 per class (50 images)" in rec.text
    assert "the next smaller k tried, 2, does not reach it; nothing between was tried" in \
        rec.text
    assert "k from 2 (+2 MC SE) to 10 (-2 MC SE)" in rec.text and "k >=" not in rec.text
    rec = vs.recommend(_table("heldout", [1, 2, 5], [0.5, 0.951, 0.952], [0.01, 0.004, 0.004]),
                       10)
    assert "the next smaller k tried, 1, does not reach it;" in rec.text
    assert "nothing between" not in rec.text  # 1 and 2 are neighbours
    assert "k = 2 at +2 MC SE, no k tried clears 95% at -2 MC SE" in rec.text
    # the first k tried already reaches it: no smaller k was tried
    rec = vs.recommend(_table("heldout", [1, 2, 5], [0.99, 0.99, 1.0], [0.001, 0.001, 0.0]), 10)
    assert rec.k == 1 and "the smallest k tried; no smaller k was tried" in rec.text
    # a dip: 1 reaches it, 2 does not, 5 on does; the rule is "from which on"
    rec = vs.recommend(_table("heldout", [1, 2, 5, 10], [0.96, 0.94, 0.97, 0.98],
                              [0.001, 0.001, 0.001, 0.001]), 10)
    assert "the smallest k tried from which on every k tried reaches it is 5 per class" in \
        rec.text and "k = 1 reaches it too, but not every larger k tried does" in rec.text
    # only the whole pool reaches it
    rec = vs.recommend(_table("heldout", [1, 2, 5, 12], [0.5, 0.6, 0.9, 0.99],
                              [0.01, 0.01, 0.01, 0.001]), 10)
    assert "is the whole pool (k = 12 of the smallest class; 120 images, i.e. only the whole " \
        "pool, half the split)" in rec.text
    assert "the next smaller k tried, 5, does not reach it; nothing between was tried" in \
        rec.text
