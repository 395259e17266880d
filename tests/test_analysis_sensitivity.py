"""Sensitivity that does not mistake chance for an effect: null sweeps, planted effects, verdicts.

Every sweep here is planted (analysis.synthetic), so the right answer is known: an axis whose
values carry no effect must look like chance (ω² near 0, p not small, at the nominal rate of
false alarms), a planted effect must be found and ranked, and `verdict` may say "agrees" or
"does not agree" only when the data support it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import planted_sweep, write_sweep
from scipy import stats

from analysis import sensitivity as sens
from analysis.load import load_sweep

# Values that planted_sweep gives no effect (not in its effect table), so every trial of the
# grid is an independent draw of the same accuracy: seed noise plus per-example sampling.
NULL_GRID = {"wd": [5e-4, 2e-3, 5e-3, 2e-2, 5e-2, 1e-1],  # 6 levels, as in the committed docs
             "epochs": [50, 200],
             "arch": ["resnet18_v1", "resnet18_v2", "resnet34_v1", "resnet34_v2"]}  # 6*2*4 = 48
NULL_AXES = ["wd", "epochs", "arch", "depth", "version"]  # 5 distinct groupings of the trials
REPS = 40
ALPHA = 0.05
TINY = 1e-6  # the chance that a bound below fails on a correct implementation


def _null_sweep(tmp_path, r: int):
    d = planted_sweep(tmp_path / f"null{r}", grid=NULL_GRID, errored=0, seed=r, per_class=20)
    return load_sweep(d, with_predictions=False)


def _settings(n, **axes):
    base = {"method": "supervised", "dataset": "synthetic", "labels": "1%", "seed": 0}
    return [{**base, **{k: v[i] for k, v in axes.items()}} for i in range(n)]


def _rows(accs, n=1000):
    """Correctness rows with exactly round(acc * n) correct examples each."""
    return np.array([np.arange(n) < round(a * n) for a in accs])


@pytest.fixture(scope="module")
def null_rankings(tmp_path_factory):
    """REPS independent null sweeps of 48 trials, each tested with its own permutation seed."""
    tmp = tmp_path_factory.mktemp("null")
    return [sens.sensitivity(_null_sweep(tmp, r), seed=r)[0] for r in range(REPS)]


def test_null_sweep_false_alarms_stay_at_the_nominal_rate(null_rankings):
    p = pd.DataFrame([dict(zip(r["axis"], r["p_perm"])) for r in null_rankings])[NULL_AXES]
    assert p.shape == (REPS, len(NULL_AXES)) and p.notna().all().all()
    # Per axis, the REPS sweeps are independent and a valid permutation p has P(p < α) ≤ α,
    # so the count of p < α is at most Binomial(REPS, α). Union bound over the axes: the
    # threshold below is exceeded with probability ≤ TINY on a correct implementation, whatever
    # the dependence between axes of one sweep (arch, depth and version are nested). Margin:
    # mean 2 of 40, threshold 12 of 40; a test that ignores chance (ranking raw η²: every axis
    # "matters") or a p computed the wrong way round (≈ 1 - p: half of them < 0.5) breaks it.
    limit = stats.binom.isf(TINY / len(NULL_AXES), REPS, ALPHA)
    hits = (p < ALPHA).sum()
    assert (hits <= limit).all(), (hits.to_dict(), limit)
    # Over all axes together (treating the 5 tests of a sweep as independent, which crossed
    # axes nearly are): at most 27 of 200 where 10 are expected.
    assert (p < ALPHA).to_numpy().sum() <= stats.binom.isf(TINY, p.size, ALPHA)
    # Not conservative to uselessness either: null p-values are spread over (0, 1], mean ≈ 0.5
    # (a little above: ties of accuracies quantised to 0.5 pt push p up). The per-sweep means
    # are independent with sd ≤ 0.29, so their average has sd ≤ 0.046 even if the 5 axes were
    # perfectly correlated (≈ 0.025 for nearly independent ones); the band is 3.3 to 6 sd wide
    # on either side. A p stuck at 1 (e.g. a statistic the permutations cannot change) fails.
    assert 0.35 < p.to_numpy().mean() < 0.7


def test_null_sweep_holm_controls_the_family_and_the_verdict_cannot_tell(null_rankings):
    # Holm keeps the chance of any false "matters" in a sweep ≤ α, so the number of null sweeps
    # with any Holm-significant axis is at most Binomial(REPS, α): ≤ 11 with probability 1 - 1e-6.
    any_sig = [bool((r["p_holm"] < ALPHA).any()) for r in null_rankings]
    assert sum(any_sig) <= stats.binom.isf(TINY, REPS, ALPHA)
    for r, sig in zip(null_rankings, any_sig):
        assert (r["p_holm"] >= r["p_perm"] - 1e-12).all()
        words = sens.verdict(r)
        if not sig:  # the sweeps where chance made an axis look real may say anything else
            assert "No axis is distinguishable from chance at this number of trials (48" in words
            assert "cannot tell whether it agrees with the paper" in words
            assert "so this sweep agrees" not in words and "does not agree" not in words


def test_null_six_level_axis_has_eta_squared_at_chance_and_omega_squared_near_zero(
        null_rankings):
    wd = pd.DataFrame([r[r["axis"] == "wd"].iloc[0] for r in null_rankings])
    assert (wd["n_values"] == 6).all() and (wd["n_trials"] == 48).all()
    assert wd["eta_squared_null"].to_numpy() == pytest.approx(5 / 47)
    # Under the null η² ~ Beta(5/2, 42/2): mean 5/47, sd 0.062, so the mean of 40 has sd
    # 0.0098; ω² ≈ 5(F - 1)/(5(F - 1) + 48) has mean ≈ 0 and sd ≈ 0.07 (mean of 40: 0.011).
    # Both bands are about 4 sd wide.
    assert abs(wd["eta_squared"].mean() - 5 / 47) < 0.04
    assert abs(wd["omega_squared"].mean()) < 0.045
    assert wd["omega_squared"].mean() < wd["eta_squared"].mean() - 0.06


def test_committed_docs_case_eta_squared_of_chance_is_not_an_effect(tmp_path):
    """A 6-level axis on 48 trials with η² = 0.114 (the "wd 0.114" once committed as a finding)."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 8)
    within = rng.normal(0, 1, 48)
    within -= (np.bincount(g, weights=within) / 8)[g]  # group means exactly 0
    offset = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])[g]
    target = 0.114
    c = np.sqrt(target * (within**2).sum() / ((1 - target) * (offset**2).sum()))
    acc = 0.40 + 0.02 * (within + c * offset)  # about 2 points of noise
    wd = [NULL_GRID["wd"][i] for i in g]
    arch = ["resnet18_v1", "resnet50_v2"] * 24
    epochs = [100, 100, 300, 300] * 12
    write_sweep(tmp_path / "s", _settings(48, wd=wd, arch=arch, epochs=epochs), _rows(acc),
                np.repeat(np.arange(10), 100))
    ranking, _ = sens.sensitivity(load_sweep(tmp_path / "s"))
    row = ranking[ranking["axis"] == "wd"].iloc[0]
    assert row["eta_squared"] == pytest.approx(target, abs=0.003)
    assert row["eta_squared_null"] == pytest.approx(5 / 47)
    # ω² = (k-1)(F-1) / ((k-1)(F-1) + n) with F = (0.114/5) / (0.886/42) = 1.08: about 0.008.
    assert abs(row["omega_squared"]) < 0.02
    assert row["p_perm"] > 0.2 and row["p_holm"] >= 0.05
    # the permutation p agrees with the normal-theory F test on such well-behaved data
    y = 100 * np.asarray([round(a * 1000) / 1000 for a in acc])
    f_p = stats.f_oneway(*[y[g == j] for j in range(6)]).pvalue
    assert row["p_perm"] == pytest.approx(f_p, abs=0.05)
    words = sens.verdict(ranking)
    assert f"wd {row['omega_squared']:.3f} (p {row['p_perm']:.3f}" in words
    assert "cannot tell whether it agrees" in words and "so this sweep agrees" not in words


def test_planted_effects_are_found_and_ranked(tmp_path):
    # planted logit shifts: epochs 30 vs 100 by 1.2, wd 1e-3 vs 1e-2 by 0.4, color_aug 0.1,
    # lr 0.05, arch 0.06; 96 trials
    grid = {"wd": [1e-3, 1e-2], "epochs": [30, 100], "color_aug": [False, True],
            "arch": ["resnet18_v1", "resnet50_v2"], "lr": [0.03, 0.1]}
    sweep = load_sweep(planted_sweep(tmp_path / "p", grid=grid, errored=0, seeds=3))
    ranking, _ = sens.sensitivity(sweep)
    assert list(ranking.columns) == sens.RANKING_COLUMNS
    assert list(ranking["axis"][:2]) == ["epochs", "wd"]  # the planted order
    assert list(ranking["rank"]) == list(range(1, len(ranking) + 1))
    assert ranking["omega_squared"].is_monotonic_decreasing
    top = ranking.set_index("axis")
    assert (top.loc[["epochs", "wd"], "p_holm"] < ALPHA).all()
    assert top.loc["epochs", "omega_squared"] > 0.5 > top.loc["wd", "omega_squared"] > 0.02
    # the small planted ones are below what 96 trials can tell from chance
    assert (top.loc[["arch", "depth", "version", "lr", "color_aug"], "p_holm"] >= ALPHA).all()
    assert "so this sweep agrees with the paper" in sens.verdict(ranking)


def test_permutation_pvalue_exact_and_monte_carlo():
    # 8 trials, two groups of 4 perfectly separated: 2 of the C(8,4) = 70 reassignments are as
    # extreme (the observed one and its mirror), all 70 are enumerated, so p is exact, SE 0
    p, se = sens.permutation_pvalue([1, 1, 1, 1, 3, 3, 3, 3], list("aaaabbbb"))
    assert p == pytest.approx(2 / 70) and se == 0.0
    # more reassignments than PERMUTATIONS: Monte-Carlo p ≥ 1/(n+1), with its standard error
    # (only 2 of C(30,15) = 1.6e8 reassignments are as extreme: none is drawn, p = 1/(n+1))
    y = np.r_[np.zeros(15), np.ones(15)]
    p, se = sens.permutation_pvalue(y, np.repeat(["a", "b"], 15))
    assert p == pytest.approx(1 / (sens.PERMUTATIONS + 1))
    assert se == pytest.approx(np.sqrt(p * (1 - p) / sens.PERMUTATIONS))
    assert np.sqrt(0.05 * 0.95 / sens.PERMUTATIONS) <= 0.005
    assert all(np.isnan(sens.permutation_pvalue([2, 2, 2], ["a", "b", "b"])))


def test_permutation_pvalue_counts_ties_of_accuracies_exactly():
    # Accuracies are counts over the same images (k/500 here), so many reassignments tie the
    # observed grouping exactly; each must count, whatever the floating-point order of the
    # sums (the committed digits report's p moved with the machine's BLAS kernel when means
    # less the grand mean were compared). Exact p by enumerating every ordering in fractions,
    # with groups of one trial (scipy's "pairings" form) and without ("independent").
    import itertools
    from fractions import Fraction

    def exact(y, groups):
        vals = [Fraction(round(v * 500), 500) for v in y]

        def stat(order):
            return sum(sum(v for v, g in zip(order, groups) if g == label) ** 2
                       / groups.count(label) for label in set(groups))

        observed = stat(vals)
        orders = list(itertools.permutations(vals))
        return sum(stat(o) >= observed for o in orders) / len(orders)

    y = [0.944, 0.95, 0.956, 0.944, 0.946, 0.956, 0.95]
    for groups in ([2, 2, 2, 3, 3, 0, 0], [0, 0, 0, 1, 0, 2, 0], [3, 0, 1, 3, 1, 1, 3],
                   [1, 3, 2, 2, 1, 1, 1]):
        p, se = sens.permutation_pvalue(y, groups, n_permutations=9999)
        assert se == 0.0 and p == pytest.approx(exact(y, groups), abs=1e-12), groups
        # the same values shifted by a constant: the same test
        assert sens.permutation_pvalue([v - 0.5 for v in y], groups, n_permutations=9999)[0] \
            == pytest.approx(p, abs=1e-12)


def test_holm():
    assert sens.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert sens.holm([0.5, 0.01]) == pytest.approx([0.5, 0.02])
    out = sens.holm([np.nan, 0.02, 0.9])
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.9])
    assert sens.holm([]).shape == (0,)


def test_holm_standard_errors_follow_the_p_value_that_sets_each_adjusted_one():
    adj, se = sens.holm_with_se([0.01, 0.04, 0.03], [0.001, 0.004, 0.003])
    # 0.01 x 3 sets the first; 0.03 x 2 = 0.06 sets both others (0.04 x 1 is below it)
    assert adj == pytest.approx([0.03, 0.06, 0.06]) and se == pytest.approx([0.003, 0.006, 0.006])
    adj, se = sens.holm_with_se([0.6, 0.7], [0.01, 0.01])
    assert adj == pytest.approx([1.0, 1.0]) and se == pytest.approx([0.0, 0.0])  # capped at 1


def test_a_holm_p_within_monte_carlo_error_of_the_line_is_said(tmp_path):
    ranking, _ = sens.sensitivity(_null_sweep(tmp_path, 7), seed=11)
    ranking = ranking.copy()
    ranking["p_holm"], ranking["p_holm_se"] = 0.9, 0.01
    assert "within 2 Monte-Carlo SE" not in sens.verdict(ranking)
    ranking.loc[0, ["p_holm", "p_holm_se"]] = [0.055, 0.004]
    text = sens.verdict(ranking)
    axis = ranking.loc[0, "axis"]
    assert f"The Holm p of {axis} is within 2 Monte-Carlo SE of 0.05" in text
    assert "Holm 0.055 ± 0.004" in text and "more --permutations" in text


def test_sensitivity_is_reproducible_with_the_same_seed(tmp_path):
    sweep = _null_sweep(tmp_path, 7)
    a, va = sens.sensitivity(sweep, seed=11)
    b, vb = sens.sensitivity(sweep, seed=11)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(va, vb)
    c, _ = sens.sensitivity(sweep, seed=12)
    drawn = ["p_perm", "p_perm_se", "p_holm", "p_holm_se"]
    pd.testing.assert_frame_equal(a.drop(columns=drawn), c.drop(columns=drawn))
    assert not np.array_equal(a["p_perm"], c["p_perm"])  # another seed, other permutations
    # ... but the same p up to Monte-Carlo error (6 combined SE: fails with probability < 1e-8)
    gap = (a["p_perm"] - c["p_perm"]).abs()
    assert (gap <= 6 * np.hypot(a["p_perm_se"], c["p_perm_se"])).all()
    few, _ = sens.sensitivity(sweep, n_permutations=200, seed=11)
    assert (few["p_perm_se"] > a["p_perm_se"]).all()  # fewer permutations, larger SE


def _ranking(*rows, n=48):
    """Hand-made ranking: (axis, ω², Holm p) per row; per-axis p = Holm p."""
    df = pd.DataFrame(rows, columns=["axis", "omega_squared", "p_holm"])
    df["p_perm"] = df["p_holm"]
    df["n_trials"] = n
    return df


@pytest.mark.parametrize("rows", [
    # a crucial axis matters, architecture does not
    [("wd", 0.40, 0.001), ("epochs", 0.05, 0.30), ("arch", 0.02, 0.60), ("depth", 0.01, 0.70)],
    # architecture matters too, but less than the crucial one
    [("epochs", 0.50, 0.001), ("arch", 0.10, 0.01), ("wd", 0.00, 0.50)],
    # a non-significant architecture axis with a larger point estimate is no effect
    [("arch", 0.30, 0.08), ("wd", 0.20, 0.01), ("epochs", 0.1, 0.2)],
])
def test_verdict_agrees(rows):
    words = sens.verdict(_ranking(*rows))
    assert words.endswith("so this sweep agrees with the paper.")
    assert "does not agree" not in words and "cannot tell" not in words


@pytest.mark.parametrize("rows", [
    # architecture matters more than the crucial axes that matter
    [("arch", 0.50, 0.001), ("depth", 0.50, 0.001), ("wd", 0.10, 0.01), ("epochs", 0.0, 0.9)],
    # architecture matters and the crucial ones are indistinguishable from chance, even with a
    # larger point estimate
    [("wd", 0.30, 0.20), ("version", 0.20, 0.01), ("epochs", 0.01, 0.6)],
])
def test_verdict_does_not_agree(rows):
    words = sens.verdict(_ranking(*rows))
    assert words.endswith("so this sweep does not agree with the paper.")


@pytest.mark.parametrize("rows, says", [
    # nothing distinguishable from chance: the committed docs' raw-η² finding in ω² terms
    ([("wd", 0.009, 0.38), ("arch", -0.01, 0.7), ("epochs", -0.02, 0.9)],
     "No axis is distinguishable from chance at this number of trials (48"),
    # the per-axis p is small but not after correcting for the number of axes
    ([("wd", 0.10, 0.09), ("arch", -0.01, 0.7), ("epochs", -0.02, 0.9)],
     "No axis is distinguishable from chance"),
    # only an axis the paper says nothing about
    ([("lr", 0.30, 0.001), ("wd", 0.02, 0.3), ("arch", 0.01, 0.5)],
     "Neither the paper's crucial axes (wd) nor the architecture axes (arch) are"),
    # a tie between the largest significant crucial and architecture effects
    ([("wd", 0.20, 0.001), ("arch", 0.20, 0.001)], "are equal"),
])
def test_verdict_cannot_tell(rows, says):
    words = sens.verdict(_ranking(*rows))
    assert says in words and "cannot tell whether it agrees with the paper" in words
    assert "so this sweep agrees" not in words and "does not agree" not in words
    assert all(f"{a} {o:.3f} (p " in words for a, o, _ in rows)  # ω² and p of every axis


def test_verdict_when_the_papers_axes_do_not_vary():
    words = sens.verdict(_ranking(("wd", 0.4, 0.001), ("lr", 0.1, 0.01)))
    assert "cannot be checked here: epochs, arch do not vary" in words
    assert sens.verdict(_ranking()).startswith("No axis varies")
    assert "cannot be checked" in sens.verdict(_ranking(("arch", 0.4, 0.001)))


def test_verdict_alpha():
    r = _ranking(("wd", 0.30, 0.02), ("arch", 0.01, 0.5))
    assert "so this sweep agrees with the paper." in sens.verdict(r)
    assert "cannot tell" in sens.verdict(r, alpha=0.01)


def _search_with_repeats(tmp_path, repeats: int):
    """12 search trials (wd x epochs, wd carries an effect) + `repeats` seed repeats of the best
    configuration, recorded in reseed.json as `s4l-sweep --reseed-top` writes it."""
    from tune.reseed import save_reseed

    grid = [(wd, ep) for wd in (1e-3, 1e-2) for ep in (30, 100, 300) for _ in range(2)]
    accs = [0.90 if wd == 1e-3 else 0.80 for wd, _ in grid] + [0.91] * repeats
    wds = [wd for wd, _ in grid] + [1e-3] * repeats
    eps = [ep for _, ep in grid] + [30] * repeats
    n = len(accs)
    settings = _settings(n, wd=wds, epochs=eps)
    for i in range(len(grid), n):
        settings[i]["seed"] = i
    ids = [f"t{i:02d}" for i in range(n)]
    rng = np.random.default_rng(0)
    top1 = _rows(np.array(accs) + rng.normal(0, 0.01, n))
    d = write_sweep(tmp_path / f"r{repeats}", settings, top1, np.arange(1000) % 10,
                    axes=["wd", "epochs"], trial_ids=ids)
    if repeats:
        save_reseed(d, {"top": 1, "seeds": repeats + 1, "search_trials": ids[:len(grid)],
                        "points": []})
    return load_sweep(d, with_predictions=False)


def test_seed_repeats_are_left_out_of_the_ranking_and_said(tmp_path):
    from analysis import hpo_views as hv

    sweep = _search_with_repeats(tmp_path, 4)
    assert len(sweep.completed) == 16 and len(sweep.search) == 12
    assert sweep.repeats == {"t12", "t13", "t14", "t15"}
    ranking, values = sens.sensitivity(sweep)
    assert (ranking["n_trials"] == 12).all()
    assert values.groupby("axis")["n"].sum().eq(12).all()
    words = sens.words(sweep, ranking)
    assert "the search's 12 trials: the 4 seed repeats of its best configurations are left " \
           "out" in words
    study, _ = hv.as_study(sweep)
    assert len(study.trials) == 12  # fANOVA and the parallel plot see the same trials
    # without reseed.json every completed trial is the search's, and nothing is said about it
    plain = _search_with_repeats(tmp_path, 0)
    assert len(plain.search) == len(plain.completed) == 12 and not plain.repeats
    assert "seed repeats" not in sens.words(plain, sens.sensitivity(plain)[0])


def test_cramers_v_and_crossing():
    a = np.repeat(["x", "y", "z"], 10)
    assert sens.cramers_v(a, a) == pytest.approx(1.0)  # one determines the other
    grid = pd.DataFrame([(u, v) for u in "abc" for v in "pq" for _ in range(3)],
                        columns=["u", "v"])
    assert sens.cramers_v(grid["u"], grid["v"]) == 0.0  # a full grid: independent
    assert sens.is_crossed(grid, ["u", "v"])
    assert not sens.is_crossed(grid.iloc[1:], ["u", "v"])  # one cell short
    assert not sens.is_crossed(grid[(grid.u != "a") | (grid.v != "p")], ["u", "v"])  # cell empty
    rng = np.random.default_rng(0)
    # independent columns of a random design: the bias-corrected V stays near 0 (the plain one
    # is about 0.3 at 24 trials); the mean over 200 draws, well below ENTANGLED_V
    vs = [sens.cramers_v(rng.integers(0, 6, 24), rng.integers(0, 4, 24)) for _ in range(200)]
    assert np.mean(vs) < 0.2 < sens.ENTANGLED_V
    assert np.isnan(sens.cramers_v(np.zeros(5), np.arange(5)))  # one value: undefined


def test_verdict_cannot_tell_when_the_deciding_axis_varies_with_the_other_side():
    rows = [("wd", 0.37, 0.08), ("depth", 0.33, 0.03), ("epochs", 0.18, 0.3)]
    assert sens.verdict(_ranking(*rows)).endswith("does not agree with the paper.")
    words = sens.verdict(_ranking(*rows), pairs=[("wd", "depth", 0.68)])
    assert "depth (ω² 0.330), an architecture axis, is distinguishable" in words
    assert "varies with the crucial axis wd (V 0.68)" in words
    assert words.endswith("this sweep cannot tell whether it agrees with the paper.")
    agree = [("wd", 0.40, 0.001), ("epochs", 0.05, 0.30), ("arch", 0.02, 0.60)]
    words = sens.verdict(_ranking(*agree), pairs=[("wd", "arch", 0.9)])
    assert "wd (ω² 0.400), a crucial axis" in words and "cannot tell" in words
    # axes of the same side varying together do not decide anything
    assert sens.verdict(_ranking(*agree), pairs=[("wd", "epochs", 0.9)]).endswith(
        "so this sweep agrees with the paper.")


def test_planted_confounded_design_is_not_called_agreement(tmp_path):
    # weight decay carries the whole effect, but 10 of its 12 trials at each value ran one
    # architecture: depth goes with wd, and the verdict must not credit either
    wds = [1e-3] * 12 + [1e-2] * 12
    archs = (["resnet18_v2"] * 10 + ["resnet50_v2"] * 2 + ["resnet50_v2"] * 10
             + ["resnet18_v2"] * 2)
    eps = [30, 100] * 12
    rng = np.random.default_rng(1)
    accs = np.where(np.array(wds) == 1e-3, 0.90, 0.80) + rng.normal(0, 0.005, 24)
    d = write_sweep(tmp_path / "c", _settings(24, wd=wds, arch=archs, epochs=eps), _rows(accs),
                    np.arange(1000) % 10, axes=["wd", "arch", "epochs"])
    sweep = load_sweep(d, with_predictions=False)
    ranking, _ = sens.sensitivity(sweep)
    assert ranking["axis"].iloc[0] == "wd"
    notes, pairs = sens.design(sweep)
    assert {frozenset(p[:2]) for p in pairs} >= {frozenset({"wd", "depth"})}
    words = sens.words(sweep, ranking)
    assert "varies with the architecture axis" in words
    assert "cannot tell whether it agrees with the paper" in words
    assert "so this sweep agrees" not in words
    assert "do not cross the swept axes fully" in words
