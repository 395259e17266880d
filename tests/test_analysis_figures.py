"""Tests for Figure 3, the sensitivity figure and the leaderboard on planted synthetic sweeps."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import planted_sweep, write_sweep

from analysis import figure3 as fig3
from analysis import leaderboard as lb
from analysis import sensitivity as sens
from analysis.load import load_sweep
from analysis.report import build_report


def _settings(n, **axes):
    base = {"method": "supervised", "dataset": "synthetic", "labels": "1%", "seed": 0}
    return [{**base, **{k: v[i] for k, v in axes.items()}} for i in range(n)]


def _rows(accs, n=100):
    """Correctness rows with exactly round(acc * n) correct examples each."""
    return np.array([np.arange(n) < round(a * n) for a in accs])


@pytest.fixture()
def planted_fig3(tmp_path):
    """6 trials; on 1/class trial 3 wins alone, on 5/class trials 1 and 4 tie; full best = 5."""
    full = [0.50, 0.60, 0.55, 0.62, 0.58, 0.70]
    cols = {"val_1pc_top1": [0.1, 0.3, 0.2, 0.9, 0.5, 0.6],
            "val_5pc_top1": [0.3, 0.8, 0.4, 0.5, 0.8, 0.7],
            "val_10pc_top1": [0.4, 0.5, 0.5, 0.6, 0.6, 0.9]}
    label = np.repeat(np.arange(10), 10)
    write_sweep(tmp_path / "s", _settings(6, wd=[1e-4, 1e-3] * 3), _rows(full), label,
                columns=cols, ks=(1, 5))
    return load_sweep(tmp_path / "s")


def test_figure3_marks_the_planted_trials(planted_fig3):
    fig, panels = fig3.figure3([planted_fig3])
    # the paper's panels (full split) for every val_{k}pc_top1 column, sorted; then the
    # disjoint ones (rest of the split) where splits.npz has the subset (1 and 5/class here)
    assert [(p.yardstick, p.k) for p in panels] == [
        ("nested", 1), ("nested", 5), ("nested", 10), ("disjoint", 1), ("disjoint", 5)]
    p1, p5, p10 = panels[:3]
    rest1 = panels[3]
    assert rest1.label.startswith("r = ") and "vs r = 0" in rest1.label
    assert "r under H0" in p5.label and "vs H0" in p5.label
    assert p1.red == "trial_00003" and p1.tied == ["trial_00003"]
    assert p1.star == "trial_00005"
    assert p5.red == "trial_00001" and p5.tied == ["trial_00001", "trial_00004"]
    assert p10.red == p10.star == "trial_00005"
    assert np.allclose(p1.y, [50, 60, 55, 62, 58, 70]) and np.allclose(p1.x[3], 90)
    assert p1.label.startswith("r = ") and "p = " in p1.label
    assert len(fig.axes) == 6  # 2 yardsticks x 3 subsets, one blank
    ax = fig.axes[0]
    red = [c for c in ax.collections if c.get_label() == "best on 1/class"][0]
    assert np.allclose(red.get_offsets(), [[90, 62]])  # the red point sits on trial 3


def test_figure3_several_sweeps_and_errored_trials(tmp_path, planted_fig3):
    other = load_sweep(planted_sweep(tmp_path / "p", grid={"wd": [1e-4, 1e-3, 1e-2]}, errored=1))
    assert len(other.completed) == 2 and len(other.df) == 3
    assert other.notes == ["1 of 3 trials are left out (errored 1)"]
    fig, panels = fig3.figure3([planted_fig3, other])
    assert [(p.sweep, p.yardstick, p.k) for p in panels][-4:] == [
        ("p", "nested", 1), ("p", "nested", 5), ("p", "disjoint", 1), ("p", "disjoint", 5)]
    assert len(panels[-1].x) == 2 and panels[-1].label == "r undefined (fewer than 3 trials)"
    assert len(fig.axes) == 12  # 2 sweeps x 2 yardsticks x 3 columns, unused ones blank
    fig3.save(fig, tmp_path / "f")
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.svg").stat().st_size > 0


def test_eta_squared():
    assert sens.eta_squared([1, 1, 3, 3], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert sens.eta_squared([1, 3, 1, 3], ["a", "a", "b", "b"]) == pytest.approx(0.0)
    assert np.isnan(sens.eta_squared([2, 2], ["a", "b"]))
    # ω²: no within-group variance -> 1; groups explaining nothing -> below 0:
    # SS_b 0, SS_t 4, MS_w 4/2: (0 - 1 * 2) / (4 + 2) = -1/3
    assert sens.omega_squared([1, 1, 3, 3], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert sens.omega_squared([1, 3, 1, 3], ["a", "a", "b", "b"]) == pytest.approx(-1 / 3)
    assert np.isnan(sens.omega_squared([2, 2], ["a", "b"]))
    assert np.isnan(sens.omega_squared([1, 2, 3], ["a", "b", "c"]))  # one trial per value
    # ω² is 0 exactly where η² is at its chance level (k-1)/(n-1), i.e. F = 1
    # (means -1, 0, 1; SS_b 4, SS_w 6, SS_t 10: η² = 0.4 = 2/5, MS_b = MS_w = 2)
    y, g = [-2, 0, -1, 1, 0, 2], list("aabbcc")
    assert sens.eta_squared(y, g) == pytest.approx(2 / 5)
    assert sens.omega_squared(y, g) == pytest.approx(0.0, abs=1e-12)


def test_sensitivity_finds_the_planted_axes(tmp_path):
    sweep = load_sweep(planted_sweep(tmp_path / "p", n_classes=10, per_class=60))
    ranking, values = sens.sensitivity(sweep)
    assert list(ranking.columns) == sens.RANKING_COLUMNS
    assert set(ranking["axis"][:2]) == {"wd", "epochs"}
    assert {"arch", "depth", "version"} <= set(ranking["axis"])  # arch split into depth/version
    r = ranking.set_index("axis")
    assert (r.loc[["wd", "epochs"], "p_holm"] < 0.05).all()
    assert r.loc["arch", "omega_squared"] < 0.05 < r.loc["wd", "omega_squared"]
    assert r.loc["arch", "p_holm"] >= 0.05  # a 0.06-logit architecture effect is chance here
    assert (r["n_trials"] == len(sweep.completed)).all()
    assert r.loc["wd", "eta_squared_null"] == pytest.approx(2 / (len(sweep.completed) - 1))
    # arch, depth and version split the trials the same way: one test, the same p
    assert r.loc["arch", "p_perm"] == r.loc["depth", "p_perm"] == r.loc["version", "p_perm"]
    assert "so this sweep agrees with the paper" in sens.verdict(ranking)
    v = values[values["axis"] == "depth"]
    assert list(v["value"]) == ["18", "50"] and v["n"].sum() == len(sweep.completed)
    fig, shown = sens.plot_sensitivity(sweep, ranking)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert len(titles) == len(ranking) and titles[0].startswith("#1 ")
    top = ranking.iloc[0]
    assert f"ω² = {top['omega_squared']:.3f}" in titles[0] and "p < 0.001" in titles[0]
    assert all("ω² = " in t and ", p " in t and "Holm" in t for t in titles)


def test_sensitivity_can_refute_the_paper(tmp_path):
    n = 16  # 8 trials would be too few: 2 of C(8,4) = 70 splits are as extreme, p = 0.029
    arch = ["resnet18_v1", "resnet50_v2"] * (n // 2)
    wd = [1e-4] * (n // 2) + [1e-2] * (n // 2)
    acc = [0.4 if a == "resnet18_v1" else 0.8 for a in arch]  # only architecture matters
    epochs = [100, 100, 300, 300] * (n // 4)
    write_sweep(tmp_path / "s", _settings(n, arch=arch, wd=wd, epochs=epochs), _rows(acc),
                np.repeat(np.arange(10), 10))
    ranking, _ = sens.sensitivity(load_sweep(tmp_path / "s"))
    assert ranking.iloc[0]["omega_squared"] == pytest.approx(1.0)
    assert ranking.iloc[0]["eta_squared"] == pytest.approx(1.0)
    assert ranking.iloc[0]["axis"] in ("arch", "depth", "version")
    r = ranking.set_index("axis")
    # Holm over the 3 distinct groupings (arch = depth = version, wd, epochs)
    assert r.loc["arch", "p_perm"] == pytest.approx(1 / (sens.PERMUTATIONS + 1))
    assert r.loc["arch", "p_holm"] == pytest.approx(3 * r.loc["arch", "p_perm"])
    assert (r.loc[["wd", "epochs"], "p_perm"] == 1.0).all()  # balanced: nothing explained
    assert (r.loc[["wd", "epochs"], "omega_squared"] < 0).all()
    assert "so this sweep does not agree with the paper" in sens.verdict(ranking)


def test_leaderboard_mean_and_std_over_seeds(tmp_path):
    # config A (wd 1e-3) over 3 seeds: 70, 72, 74 %; config B (wd 1e-2) one seed: 71 %
    accs = [0.70, 0.72, 0.74, 0.71]
    settings = _settings(4, wd=[1e-3, 1e-3, 1e-3, 1e-2], seed=[0, 1, 2, 0])
    write_sweep(tmp_path / "s", settings, _rows(accs), np.repeat(np.arange(10), 10),
                test_top1=np.array([0.60, 0.62, 0.64, 0.9]), space_name="tiny_space")
    best, configs = lb.leaderboard([load_sweep(tmp_path / "s")])
    assert len(configs) == 2 and len(best) == 1
    row = best.iloc[0]
    assert row["n_seeds"] == 3 and row["config"] == "wd=0.001" and row["space"] == "tiny_space"
    assert row["val_full_top1_mean"] == pytest.approx(72.0)
    assert row["val_full_top1_std"] == pytest.approx(2.0)  # sample std of 70, 72, 74
    assert row["test_top1_mean"] == pytest.approx(62.0)  # test reported, not used to choose
    shown = lb.display(best)
    assert shown.iloc[0]["val top-1 [%]"] == "72.00 ± 2.00 (n=3)"
    noise = lb.seed_noise_ci(configs)
    assert (noise["sd"], noise["n_configs"]) == (pytest.approx(2.0), 1)
    single = configs[configs["n_seeds"] == 1].iloc[0]
    assert lb.pm(single["val_full_top1_mean"], single["val_full_top1_std"], 1) == "71.00"


def test_seed_noise_ci_is_the_exact_chi_square_interval(tmp_path):
    from scipy import stats as sps

    # planted: three configurations with 3, 3 and 2 seeds, and one run once (no df)
    per_config = {1e-4: [70.0, 72.0, 74.0], 1e-3: [60.0, 61.0, 65.0], 1e-2: [80.0, 83.0],
                  3e-2: [50.0]}
    wd = [w for w, v in per_config.items() for _ in v]
    seed = [i for v in per_config.values() for i in range(len(v))]
    accs = [a / 100 for v in per_config.values() for a in v]
    write_sweep(tmp_path / "s", _settings(len(accs), wd=wd, seed=seed), _rows(accs),
                np.repeat(np.arange(10), 10))
    _, configs = lb.leaderboard([load_sweep(tmp_path / "s")])
    got = lb.seed_noise_ci(configs)
    # directly: squared deviations from each configuration's mean over df = sum (n_i - 1)
    ss = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in per_config.values())
    df = sum(len(v) - 1 for v in per_config.values())
    sd = np.sqrt(ss / df)
    assert (got["df"], got["n_configs"]) == (df, 3) == (5, 3)
    assert got["sd"] == pytest.approx(sd)
    assert got["lo"] == pytest.approx(np.sqrt(ss / sps.chi2.ppf(0.975, df)))
    assert got["hi"] == pytest.approx(np.sqrt(ss / sps.chi2.ppf(0.025, df)))
    assert got["lo"] < sd < got["hi"]
    assert got["diff_sd"] == pytest.approx(np.sqrt(2) * sd)
    assert got["resolve"] == pytest.approx(2 * np.sqrt(2) * sd)
    words = lb.seed_noise_words(got)
    for part in (f"({df} degrees of freedom)", f"σ = {sd:.2f} pt",
                 f"exact 95% CI {got['lo']:.2f}–{got['hi']:.2f} pt",
                 f"√2·σ = {np.sqrt(2) * sd:.2f} pt", f"2·√2·σ = {2 * np.sqrt(2) * sd:.2f} pt"):
        assert part in words, part
    # 90%: the same chi-square quantiles at 0.05 / 0.95
    got90 = lb.seed_noise_ci(configs, level=0.9)
    assert got90["hi"] == pytest.approx(np.sqrt(ss / sps.chi2.ppf(0.05, df)))
    # no repeated seeds: NaN, df 0, no sentence
    single = configs[configs["n_seeds"] == 1]
    none = lb.seed_noise_ci(single)
    assert none["df"] == 0 and np.isnan(none["sd"]) and lb.seed_noise_words(none) == ""


def test_seed_noise_ci_covers_sigma_95_percent_of_the_time():
    # 3 configurations x 3 seeds (df 6, as on digits), normal seed noise with sigma = 1 pt
    rng = np.random.default_rng(0)
    reps, hits = 1000, 0
    for _ in range(reps):
        x = rng.normal(0, 1, (3, 3))
        configs = pd.DataFrame({"val_full_top1_n": [3, 3, 3],
                                "val_full_top1_std": x.std(axis=1, ddof=1)})
        got = lb.seed_noise_ci(configs)
        hits += got["lo"] <= 1 <= got["hi"]
    assert 0.93 <= hits / reps <= 0.97  # SE 0.007


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("small_report")
    run = planted_sweep(base / "s", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]}, seeds=3)
    index = build_report([run], base / "out", n_forests=2, n_draws=20, n_boot=20, n_permutations=50)
    return html.unescape(index.read_text()), (index.parent / "summary.txt").read_text()


def test_report_defines_omega_squared_as_hays(small_report):
    page, _ = small_report
    assert "η² minus its expectation" not in page  # the old, wrong definition
    assert ("Hays' omega squared, (SS_between − (k − 1)·MS_within) / (SS_total + "
            "MS_within)") in page
    assert "0 when the axis explains exactly what chance would (F = 1)" in page
    # the old wording's number is another one: ω² differs from η² - (k - 1)/(n - 1)
    y = np.array([1.0, 2.0, 3.0, 2.5, 4.0, 6.0, 5.0, 7.5])
    g = np.array(list("aabbccdd"))
    eta, omega = sens.eta_squared(y, g), sens.omega_squared(y, g)
    assert abs(omega - (eta - 3 / 7)) > 0.01


def test_report_states_seed_noise_with_its_interval_and_the_difference_sd(small_report):
    page, summary = small_report
    line = [x for x in summary.splitlines() if x.startswith("Seed-to-seed noise")]
    assert len(line) == 1
    assert "degrees of freedom" in line[0] and "exact 95% CI" in line[0]
    assert "chi-square with" in line[0] and "√2·σ" in line[0] and "2·√2·σ" in line[0]
    assert "smaller than that are not resolved" not in page  # the old sentence
    assert "pooled standard deviation" in page


def test_report_defines_the_overlap_as_an_expectation(small_report):
    page, _ = small_report
    assert "E[top-k overlap] = expected share of the k best trials" in page
    assert "broken uniformly at random, independently on the two rankings" in page
    assert "expected over uniformly random tie-breaks of both rankings: top-1 " in page


def test_leaderboard_groups_seeds_across_sweeps_and_methods(tmp_path):
    label = np.repeat(np.arange(10), 10)
    for i, (method, acc) in enumerate([("supervised", 0.5), ("s4l_rotation", 0.6)]):
        for seed in range(2):
            s = _settings(1, wd=[1e-3], seed=[seed])
            s[0]["method"] = method
            write_sweep(tmp_path / f"{method}{seed}", s, _rows([acc + 0.02 * seed]), label,
                        space_name="space", trial_ids=[f"{method}-{seed}"], axes=["wd"])
    sweeps = [load_sweep(p) for p in sorted(tmp_path.iterdir())]
    best, _ = lb.leaderboard(sweeps)
    assert list(best["method"]) == ["s4l_rotation", "supervised"]
    assert list(best["n_seeds"]) == [2, 2]
    assert best["val_full_top1_mean"].tolist() == pytest.approx([61.0, 51.0])
    assert isinstance(best, pd.DataFrame)


def test_saved_figures_are_byte_identical_for_the_same_figure(tmp_path):
    # a report rebuilt from the same files writes the same images (no date, no random SVG ids),
    # so a committed report changes only where its data do
    import matplotlib.pyplot as plt

    from analysis.figure3 import save

    out = []
    for run in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [2, 0, 1])
        ax.set_title("same figure")
        save(fig, tmp_path / run)
        out.append({ext: (tmp_path / f"{run}.{ext}").read_bytes() for ext in ("png", "svg")})
    assert out[0] == out[1]
    assert b"<dc:date>" not in out[0]["svg"]
