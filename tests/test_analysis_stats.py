"""Tests for analysis.stats: planted correlations, tie rule, regret, top-k overlap; the two
yardsticks, exact intervals, McNemar, few-points warnings; splits.npz masks in analysis.load.

The nulls of the p-values are checked in test_analysis_nulls.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import planted_sweep, tiny_masks, write_sweep

from analysis import stats as st
from analysis.load import Predictions, Sweep, load_sweep


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
    # 3 pairs: r and its p exist, but a bootstrap interval over 3 pairs does not hold its level
    # (every resample's r is +-1, undefined or the observed r), so none is given below MIN_TRIALS
    x, y = [0.1, 0.5, 0.3], [0.2, 0.9, 0.1]
    c = st.correlations(x, y, n_boot=200)
    assert np.isfinite(c["pearson"]) and np.isfinite(c["pearson_p"])
    assert np.isnan(c["pearson_lo"]) and np.isnan(c["pearson_hi"])
    n = st.MIN_TRIALS
    c = st.correlations(np.arange(n, dtype=float), np.arange(n) % 4, n_boot=200)
    assert c["pearson_lo"] <= c["pearson"] <= c["pearson_hi"]
    assert st.fmt_p(float("nan")) == "p = n/a" and st.fmt_p(0.0) == "p < 1e-300"


def test_planted_best_and_regret():
    ids = [f"t{i}" for i in range(5)]
    full = np.array([0.50, 0.60, 0.70, 0.65, 0.55])
    tiny = np.array([0.4, 0.9, 0.5, 0.6, 0.1])  # tiny picks t1 (full 0.60), best is t2 (0.70)
    s = st.select(tiny, full, ids)
    assert (s.order_pick, s.best, s.order_pick_is_best) == ("t1", "t2", False)
    assert s.order_pick_regret_pt == pytest.approx(10.0)
    assert s.n_tied == 1 and s.expected_regret_pt == pytest.approx(10.0)
    s = st.select(full, full, ids)
    assert s.order_pick_is_best and s.order_pick_regret_pt == 0.0


def test_tie_rule_first_in_order_and_random_expectation():
    ids = ["a", "b", "c", "d"]
    full = np.array([0.60, 0.70, 0.50, 0.65])
    tiny = np.array([0.8, 0.9, 0.9, 0.9])  # b, c, d tie at the top
    s = st.select(tiny, full, ids)
    assert s.order_pick == "b" and s.tied == ["b", "c", "d"]
    assert s.order_pick_regret_pt == pytest.approx(0.0) and s.order_pick_is_best
    # random among b (0), c (20), d (5) points of regret
    assert s.expected_regret_pt == pytest.approx(25 / 3)
    assert s.p_pick_best == pytest.approx(1 / 3)


def test_topk_overlap():
    full = np.arange(20.0)
    assert st.topk_overlap(full, full, 5) == 1.0
    assert st.topk_overlap(-full, full, 5) == 0.0
    tiny = full.copy()
    tiny[19] = -1  # the best on full drops out of tiny's top 5
    assert st.topk_overlap(tiny, full, 5) == pytest.approx(4 / 5)
    assert st.topk_overlap(tiny, full, 1) == 0.0
    assert st.topk_overlap(full[:3], full[:3], 10) == 1.0  # k capped at the number of trials


def _stable_sort_overlap(tiny, full, k):
    """The old definition: top k by a stable sort, ties broken by trial order."""
    k = min(k, len(full))
    return len(set(st.top_k(tiny, k)) & set(st.top_k(full, k))) / k


def _overlap_by_enumeration(tiny, full, k):
    """E overlap over every tie-break of both rankings, independently (all orders, exact)."""
    n = len(tiny)
    perms = list(itertools.permutations(range(n)))

    def top(scores, perm):  # ties broken by the position in `perm`, a random order
        rank = np.empty(n)
        rank[list(perm)] = np.arange(n)
        return set(np.lexsort((rank, -np.asarray(scores, float)))[:k])

    tops_t = [top(tiny, q) for q in perms]
    tops_f = [top(full, q) for q in perms]
    return np.mean([len(a & b) for a in tops_t for b in tops_f]) / k


def test_topk_overlap_is_the_expectation_over_random_tie_breaks():
    # hand-computed: tiny ties trials 0-2 for 2 slots (P = 2/3 each); full's top 2 = {0, 1}
    assert st.topk_overlap([1, 1, 1, 0], [3, 2, 1, 0], 2) == pytest.approx(2 / 3)
    assert st.p_in_top_k([1, 1, 1, 0], 2) == pytest.approx([2 / 3, 2 / 3, 2 / 3, 0])
    # ties on both rankings: P_tiny = (1/2, 1/2, 1/2, 1/2), P_full = (1, 1/3, 1/3, 1/3)
    assert st.topk_overlap([0.5] * 4, [0.9, 0.4, 0.4, 0.4], 2) == pytest.approx(
        (1 / 2 + 3 * (1 / 2) * (1 / 3)) / 2)
    # against an exhaustive enumeration of the tie-breaks of both rankings
    for tiny, full, k in [([1, 1, 1, 0, 0], [5, 4, 4, 4, 1], 2),
                          ([2, 2, 1, 1, 1], [3, 3, 3, 0, 0], 3),
                          ([1, 1, 1, 1, 1], [1, 0, 0, 0, 0], 1),
                          ([0.3, 0.1, 0.3, 0.2, 0.3], [0.6, 0.6, 0.5, 0.6, 0.1], 4)]:
        assert st.topk_overlap(tiny, full, k) == pytest.approx(
            _overlap_by_enumeration(tiny, full, k), abs=1e-12), (tiny, full, k)


def test_topk_overlap_ignores_trial_order_with_ties():
    # digits-like: most trials tie at the top of a 10-image subset
    rng = np.random.default_rng(4)
    tiny = np.where(rng.random(30) < 0.8, 1.0, rng.integers(5, 10, 30) / 10)
    full = np.round(rng.uniform(0.9, 0.97, 30), 2)  # ties on the yardstick too
    values, old = set(), set()
    for _ in range(40):
        perm = rng.permutation(30)
        for k in st.TOPK:
            values.add((k, round(st.topk_overlap(tiny[perm], full[perm], k), 12)))
            old.add((k, _stable_sort_overlap(tiny[perm], full[perm], k)))
    assert len(values) == len(st.TOPK)  # one value per k, whatever the order
    assert len(old) > len(st.TOPK)  # the stable sort's value moved with the order


def test_topk_overlap_without_ties_is_the_set_overlap():
    rng = np.random.default_rng(5)
    for _ in range(20):
        tiny, full = rng.random(25), rng.random(25)
        for k in (1, 5, 10, 25, 40):
            want = len(set(np.argsort(-tiny)[:k]) & set(np.argsort(-full)[:k])) / min(k, 25)
            assert st.topk_overlap(tiny, full, k) == pytest.approx(want)


# --- two yardsticks, exact intervals, McNemar, warnings (planted answers) -----------------------

def _mem_sweep(top1, label, ks=(5,), order=None):
    """In-memory sweep with the contract of load_sweep; `order` permutes the trial order."""
    top1 = np.asarray(top1, dtype=bool)
    ids = np.array([f"t{i:03d}" for i in range(len(top1))])
    if order is not None:
        top1, ids = top1[order], ids[order]
    masks = tiny_masks(label, ks)
    df = pd.DataFrame({"trial_id": ids, "status": "completed", "val_full_top1": top1.mean(1)})
    for k, m in masks.items():
        df[f"val_{k}pc_top1"] = top1[:, m].mean(1)
    preds = Predictions(trial_ids=ids, label=np.asarray(label), top1=top1, top5=top1,
                        index=np.arange(top1.shape[1]), tiny=masks)
    return Sweep(run_dir=Path("."), name="mem", space_name="mem", df=df, completed=df,
                 axes=[], predictions=preds)


def _settings(n):
    return [{"method": "supervised", "wd": [1e-4, 1e-3][i % 2], "seed": 0} for i in range(n)]


def test_bootstrap_endpoints_carry_a_monte_carlo_se():
    # The MC SE of an endpoint should match the spread of that endpoint over bootstrap seeds.
    # 20 seeds: the SD estimate has ~16% relative error, the MCSE (a few order statistics)
    # ~25%; the accepted ratio 0.5..2 is > 3 of those combined SE wide.
    rng = np.random.default_rng(4)
    x = rng.random(50)
    y = x + rng.normal(0, 0.3, 50)
    runs = [st.correlations(x, y, n_boot=1000, seed=s) for s in range(20)]
    assert st.BOOT == 2000
    for key in ("pearson_lo", "pearson_hi", "kendall_lo", "spearman_hi"):
        spread = np.std([c[key] for c in runs], ddof=1)
        mcse = np.mean([c[key + "_mcse"] for c in runs])
        assert 0.5 < mcse / spread < 2.0, (key, mcse, spread)


def test_vectorised_kendall_equals_scipy():
    from scipy import stats as sps

    rng = np.random.default_rng(9)
    for n in (5, 40, 200):  # 200 goes through scipy itself
        a = np.round(rng.random((6, n)) * 5) / 5  # heavy ties, as a 5-image subset
        b = a + rng.normal(0, 0.3, (6, n))
        b[0] = 1.0  # a constant row: undefined
        got = st.rowwise_stats(a, b)["kendall"]
        assert np.isnan(got[0])
        want = [sps.kendalltau(u, v).statistic for u, v in zip(a[1:], b[1:])]
        assert got[1:] == pytest.approx(want, abs=1e-12)


def test_one_clearly_best_trial_is_picked_on_both_yardsticks(tmp_path):
    # 20 trials at 50% (every example a coin flip) and trial 7 at 95%: on 50 subset images
    # the others score 0.5 +- 0.07, trial 7 0.95 +- 0.03 (measured: best other 0.58, trial 7
    # 0.88; on the 450 other images ~0.5 vs ~0.95, 20 SE apart).
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(10), 50)
    p = np.full((20, 500), 0.5)
    p[7] = 0.95
    top1 = rng.random(p.shape) < p
    sweep = load_sweep(write_sweep(tmp_path / "s", _settings(20), top1, label, ks=(5,)))
    (res,) = st.tiny_study(sweep, n_boot=200)
    assert res.disjoint is not None and res.disjoint.n_images == 450
    for y in (res.nested, res.disjoint):
        s = y.selection
        assert (s.n_tied, s.order_pick, s.best) == (1, "trial_00007", "trial_00007"), y.name
        assert s.p_pick_best == 1.0 and s.expected_regret_pt == 0.0, y.name
        assert s.order_pick_is_best and s.order_pick_regret_pt == 0.0
    assert res.ci["pick"].trial == "trial_00007" and res.ci["pick"].n == 50
    assert res.ci["pick"].source == "mask"
    assert res.ci["pick"].lo <= res.ci["pick"].acc <= res.ci["pick"].hi
    assert res.mcnemar.a == "trial_00007" and res.mcnemar.can_tell  # 17 vs 2, p = 7e-4


def test_tie_headline_is_the_expectation_and_ignores_trial_order():
    ids = ["a", "b", "c", "d"]
    full = np.array([0.60, 0.70, 0.50, 0.65])
    tiny = np.array([0.8, 0.9, 0.9, 0.9])  # b, c, d tie at the top: regrets 0, 20, 5 pt
    heads = set()
    for perm in itertools.permutations(range(4)):
        perm = list(perm)
        s = st.select(tiny[perm], full[perm], [ids[i] for i in perm])
        heads.add((round(s.expected_regret_pt, 9), s.p_pick_best, s.n_tied,
                   frozenset(s.tied)))
        assert s.order_pick == s.tied[0]  # the secondary pick does depend on order
    assert heads == {(round(25 / 3, 9), 1 / 3, 3, frozenset("bcd"))}
    # ties at the top of the yardstick: any of them counts as best
    s = st.select(np.array([0.9, 0.9, 0.1]), np.array([0.7, 0.7, 0.2]), ["x", "y", "z"])
    assert s.p_pick_best == 1.0 and s.n_best == 2 and s.expected_regret_pt == 0.0


def test_tie_headline_of_a_sweep_ignores_trial_order():
    # 1/class (10 images): ties at the top are common; reversing the trial order changes the
    # order pick but not the expectation, on either yardstick.
    rng = np.random.default_rng(3)
    label = np.repeat(np.arange(10), 30)
    top1 = rng.random((25, 300)) < rng.uniform(0.4, 0.7, (25, 1))
    a = st.tiny_study(_mem_sweep(top1, label, ks=(1,)), n_boot=0)[0]
    b = st.tiny_study(_mem_sweep(top1, label, ks=(1,), order=np.arange(25)[::-1]), n_boot=0)[0]
    assert a.nested.selection.n_tied > 1
    for ya, yb in ((a.nested, b.nested), (a.disjoint, b.disjoint)):
        sa, sb = ya.selection, yb.selection
        assert sa.expected_regret_pt == pytest.approx(sb.expected_regret_pt, abs=1e-9)
        assert sa.p_pick_best == sb.p_pick_best and set(sa.tied) == set(sb.tied)
        assert ya.overlap == pytest.approx(yb.overlap, abs=1e-12)  # top-k overlap too
    assert a.nested.selection.order_pick != b.nested.selection.order_pick


def test_binom_ci_is_clopper_pearson():
    # published exact 95% intervals
    assert st.binom_ci(10, 10) == pytest.approx((0.6915, 1.0), abs=1e-4)
    assert st.binom_ci(0, 10) == pytest.approx((0.0, 0.3085), abs=1e-4)
    assert st.binom_ci(5, 10) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert st.binom_ci(9, 10) == pytest.approx((0.5550, 0.9975), abs=1e-4)
    assert all(np.isnan(st.binom_ci(0, 0)))


def test_mcnemar_identical_and_clearly_different_trials():
    mask = np.arange(100) < 10
    a = np.arange(100) % 3 == 0
    m = st.mcnemar(a, a, mask, a="x", b="y")
    assert m.tiny_p == 1.0 and m.rest_p == 1.0 and not m.can_tell
    assert "cannot tell them apart" in m.verdict
    one = a.copy()
    one[0] = ~one[0]  # 1 discordant image of 10: the smallest possible p is 1.0
    m = st.mcnemar(a, one, mask)
    assert m.tiny_min_p == 1.0 and "cannot tell them apart" in m.verdict
    # 50 examples: x right on 45, y right on 10 of those: 35 vs 0 discordant, p = 2 / 2^35
    x = np.arange(50) < 45
    y = np.arange(50) < 10
    m = st.mcnemar(x, y, np.ones(50, bool), subset="the subset")
    assert (m.tiny_a_only, m.tiny_b_only) == (35, 0)
    assert m.tiny_p == pytest.approx(2 * 0.5 ** 35) and m.can_tell
    assert m.verdict.startswith("the subset tells")


def test_warnings_fire_on_an_outlier_on_chance_and_on_few_trials():
    label = np.repeat(np.arange(10), 100)
    rng = np.random.default_rng(0)
    # one trial at 100%, 29 at 30%: r ~0.88 carried by the one trial; without it r ~0 (rest of
    # the split) / ~0.3 (full split). Measured on this seed: change 0.92 vs half-width 0.62
    # (nested), 1.11 vs 0.71 (disjoint); over 8 seeds the margin was never below 0.08.
    p = np.full((30, 1000), 0.3)
    p[0] = 1.0
    res = st.tiny_study(_mem_sweep(rng.random(p.shape) < p, label), n_boot=2000, n_null=0)[0]
    words = " ".join(res.warnings)
    assert "without the best trial on the full split" in words
    assert "without the best trial on the rest of the split" in words
    # every trial at chance (10 classes: 10% +- 0.95 pt): ~95% of trials within 2 SE
    at_chance = rng.random((20, 1000)) < 0.1
    res = st.tiny_study(_mem_sweep(at_chance, label), n_boot=200, n_null=0)[0]
    assert any("sit at chance" in w and "for 10 classes" in w for w in res.warnings)
    # 6 trials
    few = rng.random((6, 1000)) < rng.uniform(0.3, 0.8, (6, 1))
    res = st.tiny_study(_mem_sweep(few, label), n_boot=200, n_null=0)[0]
    assert any(w.startswith("Only 6 trials") and "fewer than 10" in w for w in res.warnings)
    assert st.MIN_TRIALS == 10


def test_no_warnings_on_a_healthy_planted_sweep(tmp_path):
    # 71 trials spread over 30-70% by wd/epochs; r ~0.88 (1/class) and ~0.95 (5/class).
    # Measured: leaving out the best one or two trials moves r by <= 0.008, the intervals'
    # half-widths are >= 0.019 (a margin > 2x); no trial near chance (10%).
    sweep = load_sweep(planted_sweep(tmp_path / "p"))
    results = st.tiny_study(sweep, n_boot=1000)
    assert [r.k for r in results] == [1, 5]
    for r in results:
        assert r.warnings == [], r.warnings


def test_masks_from_splits_npz_reproduce_the_table(tmp_path):
    rng = np.random.default_rng(1)
    label = np.repeat(np.arange(5), 20)
    top1 = rng.random((8, 100)) < 0.6
    index = 1000 + 7 * np.arange(100)[::-1]  # example ids are not column positions
    sweep = load_sweep(write_sweep(tmp_path / "s", _settings(8), top1, label, ks=(1, 5),
                                   index=index))
    p = sweep.predictions
    assert sorted(p.tiny) == [1, 5] and p.tiny[1].sum() == 5 and p.tiny[5].sum() == 25
    assert not (p.tiny[1] & ~p.tiny[5]).any()  # nested: 1/class inside 5/class
    for k in (1, 5):
        table = sweep.completed[f"val_{k}pc_top1"].to_numpy()
        assert p.top1[:, p.tiny[k]].mean(1) == pytest.approx(table, abs=1e-12)
    assert not any("splits.npz" in n for n in sweep.notes)
    # the same format as s4l_models.data.splits.save_splits: its own loader reads it
    from s4l_models.data.splits import load_splits

    saved = load_splits(tmp_path / "s")
    assert saved.meta["tiny_k"] == [1, 5] and set(saved.tiny[5]) <= set(index)


def test_missing_or_disagreeing_splits_are_notes_not_errors(tmp_path):
    rng = np.random.default_rng(2)
    label = np.repeat(np.arange(5), 20)
    top1 = rng.random((12, 100)) < rng.uniform(0.3, 0.8, (12, 1))
    sweep = load_sweep(write_sweep(tmp_path / "a", _settings(12), top1, label, splits=False))
    assert sweep.predictions.tiny == {}
    assert any("splits.npz is missing" in n for n in sweep.notes)
    res = st.tiny_study(sweep, n_boot=100)
    for r in res:
        assert r.disjoint is None and r.mcnemar is None and r.nested.null == st.UNAVAILABLE
        assert r.ci["pick"].source == "table" and r.ci["pick"].n == 5 * r.k
    planted = {"val_1pc_top1": list(rng.random(12))}
    sweep = load_sweep(write_sweep(tmp_path / "b", _settings(12), top1, label, columns=planted))
    assert any("does not reproduce val_1pc_top1" in n for n in sweep.notes)
    assert sorted(sweep.predictions.tiny) == [1, 5]


def test_tiny_table_has_one_row_per_subset_and_yardstick(tmp_path):
    sweep = load_sweep(planted_sweep(tmp_path / "p", grid={"wd": [1e-4, 1e-2],
                                                           "epochs": [30, 300]}, seeds=3))
    results = st.tiny_study(sweep, n_boot=200)
    df = st.tiny_table(results)
    assert list(zip(df["subset"], df["yardstick"])) == [
        ("1/class", "nested"), ("1/class", "disjoint"), ("5/class", "nested"),
        ("5/class", "disjoint")]
    for col in ("pearson", "pearson_p", "pearson_null", "null_r", "pearson_lo_mcse",
                "kendall_hi", "expected_regret_pt", "p_pick_best", "order_pick",
                "order_pick_regret_pt", "pick_tiny_lo", "best_full_tiny_hi", "mcnemar_tiny_p",
                "mcnemar_verdict", "top10_overlap", "warnings", "null", "yardstick_images"):
        assert col in df.columns, col
    assert (df.loc[df["yardstick"] == "disjoint", "null_r"] == 0).all()
    nested = df[df["yardstick"] == "nested"]
    assert ((nested["null_r"] > 0) & (nested["null_r"] < 1)).all()
    # the old attribute names still answer for the nested yardstick (report.py, figure3.py)
    r = results[0]
    assert r.corr is r.nested.corr and r.selection.order_pick == r.nested.selection.order_pick
    assert r.overlap == r.nested.overlap and r.row()["yardstick"] == "nested"


def test_report_shows_one_null_r_the_simulated_mean_everywhere():
    # The p-value is tested against the simulated null, so the words, the figure's label and
    # the table all show the mean r of its draws; the sqrt(subset/split) formula (`null_r`,
    # planted here at a value the draws' mean cannot have) appears in none of them.
    from analysis import figure3 as fig3
    from analysis import report as rp

    rng = np.random.default_rng(7)
    label = np.repeat(np.arange(10), 30)
    top1 = rng.random((20, 300)) < rng.uniform(0.4, 0.8, (20, 1))
    res = st.tiny_study(_mem_sweep(top1, label, ks=(5,)), n_boot=50)[0]
    mean = res.nested.corr["pearson_null"]
    assert np.isfinite(mean) and res.nested.null_mean_r == mean
    res.nested.corr["null_r"] = -0.913
    words, label_text = rp.tiny_key(res), fig3._label(res.nested)
    assert f"overlap alone gives r = {mean:.2f} (mean r under H0" in words
    assert f"mean r under H0 (overlap only) = {mean:.2f}" in label_text
    shown = rp._tiny_display(st.tiny_table([res]), multi=False)
    assert shown["Pearson r: mean under H0"].iloc[0] == f"{mean:.2f}"
    for text in (words, label_text, rp.tiny_words(res)):
        assert "-0.91" not in text


def test_report_words_give_the_expected_overlap_with_one_decimal():
    from analysis import report as rp

    rng = np.random.default_rng(8)
    label = np.repeat(np.arange(10), 30)
    top1 = rng.random((30, 300)) < rng.uniform(0.85, 0.95, (30, 1))  # many ties on 1/class
    res = st.tiny_study(_mem_sweep(top1, label, ks=(1,)), n_boot=0)[0]
    assert res.nested.selection.n_tied > 5
    words = rp.tiny_words(res)
    assert "expected over uniformly random tie-breaks of both rankings" in words
    for k, v in res.nested.overlap.items():
        assert f"top-{k} {v * k:.1f}/{k}" in words
    assert any(abs(v * k - round(v * k)) > 0.05 for k, v in res.nested.overlap.items())


def test_a_monte_carlo_p_at_its_floor_reads_as_a_bound():
    # 2,000 null draws: no draw reaching r gives p = 1/2001, which means "p <= 1/2001"
    floor = 1 / 2001
    assert st.fmt_p(floor, floor) == "p ≤ 5.0e-04"
    assert st.fmt_p(2 * floor, floor) == "p = 1.0e-03"
    assert st.fmt_p(0.2, 1 / 11) == "p = 0.200" and st.fmt_p(1 / 11, 1 / 11) == "p ≤ 0.091"
    assert st.fmt_p(floor) == "p = 5.0e-04"  # a p of a test without a floor is printed as is
    # correlations against simulated nulls record their floor: no null draw reaches r = 1
    x = np.linspace(0, 1, 12)
    null = (np.random.default_rng(0).random((99, 12)), np.random.default_rng(1).random((99, 12)))
    c = st.correlations(x, x, null_draws=null, n_boot=0)
    assert c["pearson_p"] == pytest.approx(1 / 100)
    assert c["pearson_p_min"] == pytest.approx(1 / 100)


def test_mcnemar_of_a_pair_tied_with_others_leaves_out_the_order_dependent_counts():
    mask = np.arange(100) < 10
    a = np.arange(100) % 3 == 0
    b = np.arange(100) % 4 == 0
    m = st.mcnemar(a, b, mask, a="x", b="y", n_tied=5)
    assert m.rest_a_only is None and m.rest_b_only is None and np.isnan(m.rest_p)
    assert "first two in trial order of the 5 trials" in m.verdict and m.n_tied == 5
    m2 = st.mcnemar(a, b, mask, a="x", b="y")  # a unique pair: every count
    assert m2.rest_a_only == int((a[10:] & ~b[10:]).sum()) and np.isfinite(m2.rest_p)
    assert m2.tiny_p == m.tiny_p


def test_the_spread_of_r_over_other_subsets_matches_a_direct_count():
    # r of random k-per-class subsets against the full split and the rest, computed here one
    # subset at a time with np.corrcoef, from the very subsets the function draws
    from analysis.valsize import stratified_subsets

    rng = np.random.default_rng(3)
    t, n, k = 12, 60, 2
    label = np.arange(n) % 5
    skill = np.linspace(0.55, 0.9, t)[:, None]
    top1 = rng.random((t, n)) < skill
    own = np.isin(np.arange(n), stratified_subsets(label, k, 1, seed=99)[0])
    obs = (np.corrcoef(top1[:, own].mean(1), top1.mean(1))[0, 1],
           np.corrcoef(top1[:, own].mean(1), top1[:, ~own].mean(1))[0, 1])
    nested, disjoint = st.other_subsets_r(top1, label, k, obs, n_draws=300, seed=7)
    r_n, r_d = [], []
    for cols in stratified_subsets(label, k, 300, seed=7):
        m = np.isin(np.arange(n), cols)
        tiny = top1[:, m].mean(1)
        if np.ptp(tiny) == 0:
            r_n.append(np.nan), r_d.append(np.nan)
            continue
        r_n.append(np.corrcoef(tiny, top1.mean(1))[0, 1])
        r_d.append(np.corrcoef(tiny, top1[:, ~m].mean(1))[0, 1])
    for got, want, o in ((nested, np.array(r_n), obs[0]), (disjoint, np.array(r_d), obs[1])):
        ok = want[np.isfinite(want)]
        assert got["subset_draws"] == 300
        assert got["pearson_subsets_undefined"] == pytest.approx(1 - len(ok) / 300)
        assert got["pearson_subsets_median"] == pytest.approx(np.median(ok), abs=1e-9)
        assert (got["pearson_subsets_lo"], got["pearson_subsets_hi"]) == pytest.approx(
            tuple(np.percentile(ok, [2.5, 97.5])), abs=1e-9)
        assert got["pearson_subsets_at_or_below"] == pytest.approx(np.mean(ok <= o + 1e-9))
    # no draws asked for, too few trials, or a class smaller than k: nothing claimed
    assert st.other_subsets_r(top1, label, k, obs, n_draws=0, seed=0) == ({}, {})
    assert st.other_subsets_r(top1[:2], label, k, obs, n_draws=50, seed=0) == ({}, {})
    assert st.other_subsets_r(top1, label, 13, obs, n_draws=50, seed=0) == ({}, {})
