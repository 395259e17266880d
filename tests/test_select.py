"""s4l-select: strategies find a planted best with few labels, criteria rank a planted order,
the simulation measures both on the held-out yardstick, and the labeling loop runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import write_sweep
from scipy import stats

from analysis.select import Candidates, criterion_scores, pick, propose
from analysis.select_cli import main
from analysis.select_sim import (
    criteria_table,
    informative,
    needed,
    needed_range,
    savings,
    simulate,
)
from s4l_models.predictions import load_sweep_predictions

C = 10


def contested(t=10, n=400, n_contested=20, best=3, seed=0):
    """All candidates right on every image but `n_contested`; there the best is always right
    and every other candidate right on a random half (wrong classes vary)."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % C
    pred = np.tile(label, (t, 1))
    hard = rng.choice(n, n_contested, replace=False)
    for i in range(t):
        if i == best:
            continue
        wrong = hard[rng.random(n_contested) < 0.5]
        pred[i, wrong] = (label[wrong] + rng.integers(1, C, len(wrong))) % C
    conf = np.where(pred == label, 0.9, 0.5).astype(np.float32)
    return Candidates(np.array([f"t{i}" for i in range(t)]), pred, conf, label,
                      np.arange(n), C), hard


def run_loop(strategy, c, budget, seed):
    rng = np.random.default_rng(seed)
    pool = np.arange(len(c.label))
    labeled = np.zeros(0, dtype=np.int64)
    while len(labeled) < budget:
        nxt = propose(strategy, c, pool, labeled, c.label[labeled], 1, rng)
        labeled = np.concatenate([labeled, nxt])
    return pick(c, labeled, c.label[labeled], rng), labeled


def test_disagreement_finds_the_planted_best_with_a_few_labels():
    found = {"disagreement": 0, "random": 0}
    for seed in range(20):
        c, hard = contested(seed=seed)
        for s in found:
            pk, labeled = run_loop(s, c, 8, seed)
            found[s] += pk.trial_id == "t3"
            if s == "disagreement":  # it asks only where the candidates disagree
                assert set(labeled) <= set(hard)
                assert pk.p_best > 0.9 and pk.labeled_low <= pk.hits / 8 <= pk.labeled_high
    assert found["disagreement"] >= 19  # 8 labels on contested images separate the best
    assert found["random"] <= 8  # 8 random labels mostly land where all candidates agree


def test_the_exact_interval_of_random_labels_covers_the_true_accuracy():
    rng = np.random.default_rng(0)
    label = np.arange(2000) % C
    pred = np.where(rng.random((3, 2000)) < np.array([[0.7], [0.8], [0.75]]), label,
                    (label + 1) % C)
    c = Candidates(np.array(["a", "b", "c"]), pred, np.full((3, 2000), 0.8, np.float32), label,
                   np.arange(2000), C)
    covered = 0
    for seed in range(40):
        pk, _ = run_loop("random", c, 60, seed)
        covered += pk.labeled_low <= c.correct[pk.trial].mean() <= pk.labeled_high
    assert covered >= 34  # 95% nominal; the exact interval is conservative


def test_the_runner_up_of_a_tie_is_the_one_least_separated_from_the_pick():
    # 10 labeled images: the pick gets 8 right; "apart" and "close" both get 6. "apart" (first
    # in table order) is right only where the pick is (discordant 2 vs 0, McNemar p 0.5);
    # "close" is right on both images the pick misses (4 vs 2, p 0.69). The pick is compared
    # with "close", the competitor the labels separate least, and the tie is counted.
    label = np.zeros(10, dtype=np.int64)
    right = {"pick": [1] * 8 + [0, 0], "apart": [1] * 6 + [0] * 4,
             "close": [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]}
    ids = np.array(list(right))
    pred = np.array([np.where(np.array(r) == 1, 0, 1) for r in right.values()])
    c = Candidates(ids, pred, np.full(pred.shape, 0.8, np.float32), label, np.arange(10), C)
    pk = pick(c, np.arange(10), label, np.random.default_rng(0))
    assert pk.trial_id == "pick" and pk.hits == 8
    assert ids[pk.runner_up] == "close" and pk.runner_up_tied == 2
    assert (pk.pick_only, pk.runner_only) == (4, 2)
    assert pk.mcnemar_p == pytest.approx(stats.binomtest(4, 6).pvalue)


def test_stratified_spreads_labels_over_the_voted_classes():
    c, _ = contested()
    got = propose("stratified", c, np.arange(400), np.zeros(0, np.int64),
                  np.zeros(0, np.int64), 20, np.random.default_rng(0))
    assert np.bincount(c.label[got], minlength=C).tolist() == [2] * C


def test_the_simulation_measures_the_savings_on_the_held_out_yardstick():
    c, _ = contested(n=600, n_contested=60)
    table = simulate(c, n_draws=40, seed=1)
    need = needed(table)
    assert set(table.strategy) == {"random", "stratified", "disagreement", "report", "no labels"}
    assert informative(table)  # the planted best is clearly better than a random pick
    # the report's baseline only at whole images per class
    assert (table.loc[table.strategy == "report", "images"] % C == 0).all()
    sv = savings(need)
    assert sv["best_active"] == "disagreement" and sv["ratio"] >= 3
    d = table[table.strategy == "disagreement"].set_index("images")
    assert d.loc[1, "p_within_0.5pt"] < 0.95 <= d.loc[need["disagreement"], "p_within_0.5pt"]
    assert (table["p_within_0.5pt_se"] >= 0).all() and table["draws"].eq(40).all()
    lo, hi = needed_range(table)["disagreement"]  # the MC range brackets the answer
    assert lo <= need["disagreement"] and (hi is None or need["disagreement"] <= hi)


def test_equally_good_trials_make_no_strategy_comparison():
    rng = np.random.default_rng(0)
    label = np.arange(400) % C
    pred = np.where(rng.random((8, 400)) < 0.8, label, (label + 1) % C)  # all alike
    c = Candidates(np.array([f"t{i}" for i in range(8)]), pred, np.full((8, 400), 0.8,
                   np.float32), label, np.arange(400), C)
    table = simulate(c, n_draws=30, seed=0)
    assert not informative(table)


def test_criteria_rank_a_planted_order():
    rng = np.random.default_rng(0)
    t, n = 8, 500
    label = np.arange(n) % C
    acc = np.linspace(0.6, 0.95, t)  # candidate i is the i-th best from the bottom
    correct = rng.random((t, n)) < acc[:, None]
    pred = np.where(correct, label, (label + 1) % C)
    conf = np.clip(np.where(correct, 0.95, 0.3) + rng.normal(0, 0.02, (t, n)), 0, 1)
    rot = np.where(rng.random((t, n)) < acc[:, None], 4, 1).astype(np.uint8)
    c = Candidates(np.array([f"t{i}" for i in range(t)]), pred, conf.astype(np.float32),
                   label, np.arange(n), C, rot=rot, has_rot=np.ones(t, bool))
    cols = np.arange(n)
    for crit in ("confidence", "agreement", "rotation"):
        assert np.argsort(criterion_scores(crit, c, cols)).tolist() == list(range(t)), crit
    lab = np.arange(40)
    atc = criterion_scores("atc", c, cols, lab, label[lab])
    assert np.corrcoef(atc, acc)[0, 1] > 0.9
    tab = criteria_table(c, atc_draws=5).set_index("criterion")
    assert tab.loc["confidence", "regret_pt"] == 0 and tab.loc["rotation", "spearman"] > 0.9


def _planted_dir(tmp_path, with_pred=True):
    c, _ = contested(n=300, n_contested=30)
    settings = [{"lr": 0.1 * (i + 1), "seed": 0} for i in range(len(c.trial_ids))]
    return write_sweep(tmp_path / "sw", settings, c.correct, c.label,
                       pred=c.pred if with_pred else None, conf=c.conf if with_pred else None)


def test_the_labeling_loop_names_the_planted_best(tmp_path, capsys):
    import shlex

    d = _planted_dir(tmp_path / "my sweeps")  # the printed commands quote such paths
    truth = np.arange(300) % C
    sheet = None
    argv = [str(d), "--budget", "12", "--batch", "4", "--out", str(tmp_path / "sel")]
    for _ in range(10):
        assert main(argv) == 0
        out = capsys.readouterr().out
        if "selected trial" in out:
            break
        # each round's next command is run exactly as printed
        cmd = shlex.split(out.split("then run: ")[-1])
        assert cmd[0] == "s4l-select" and cmd[1] == str(d)
        argv = cmd[1:]
        sheet = argv[argv.index("--labels") + 1]
        df = pd.read_csv(sheet, dtype={"label": "string"})
        blank = df["label"].isna()
        df.loc[blank, "label"] = [str(truth[i]) for i in df.loc[blank, "id"]]
        df.to_csv(sheet, index=False)
    assert "selected trial trial_00003" in out
    doc = json.loads((tmp_path / "sel" / "selection.json").read_text())
    final = pd.read_csv(sheet)
    ids = final["id"].to_numpy()
    labeled = ids  # the sweep's validation ids are 0..299, its columns in that order
    c_pred = np.asarray(load_sweep_predictions(d / "predictions.npz")["pred"])
    assert doc["labels"] == 12 and doc["selected_trial"] == "trial_00003"
    assert doc["settings"] == {"lr": pytest.approx(0.4), "seed": 0}  # the seed is named too
    # what the labels prove, and nothing more: labels chosen where the trials disagree are no
    # estimate of the pick's accuracy on the split, and the runner-up comparison is a test
    assert "not an estimate of its accuracy on the split" in out
    assert "by the noise model" not in out and "accuracy_model" not in doc
    ru = doc["runner_up"]
    right = {t: int((c_pred[t, labeled] == truth[labeled]).sum()) for t in range(c_pred.shape[0])}
    assert doc["correct_on_labeled"] == right[3]
    assert ru["correct_on_labeled"] == max(v for t, v in right.items() if t != 3)
    a_only, b_only = ru["labeled_only_pick_right"], ru["labeled_only_runner_up_right"]
    assert ru["mcnemar_p_exact"] == pytest.approx(
        stats.binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0)
    assert f"exact McNemar p = {ru['mcnemar_p_exact']:.2g}" in out
    assert doc["p_best_noise_model"] > 0.5 and "Overconfident" in doc["noise_model"]
    # a second run of round 1 writes a new sheet, never over the first
    assert main([str(d), "--budget", "12", "--out", str(tmp_path / "sel")]) == 0
    assert (tmp_path / "sel" / "labels_round1-2.csv").is_file()


def test_random_labels_estimate_the_picks_accuracy_on_the_split(tmp_path, capsys):
    # a random sample is the one case in which the labeled accuracy estimates the split's
    d = _planted_dir(tmp_path)
    truth = np.arange(300) % C
    argv = [str(d), "--budget", "20", "--batch", "20", "--strategy", "random", "--out",
            str(tmp_path / "r")]
    assert main(argv) == 0
    sheet = capsys.readouterr().out.split("--labels ")[-1].strip()
    df = pd.read_csv(sheet, dtype={"label": "string"})
    df["label"] = [str(truth[i]) for i in df["id"]]
    df.to_csv(sheet, index=False)
    assert main(argv + ["--labels", sheet]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "r" / "selection.json").read_text())
    assert doc["labeled_images_are_a_random_sample"] is True
    assert "accuracy on the split, estimated from the 20 randomly drawn labeled images" in out
    lo, hi = doc["accuracy_on_labeled_95"]
    ci = stats.binomtest(doc["correct_on_labeled"], 20).proportion_ci(method="exact")
    assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_simulate_and_criterion_from_the_cli(tmp_path, capsys):
    d = _planted_dir(tmp_path)
    assert main([str(d), "--simulate", "--draws", "10", "--out", str(tmp_path / "sim")]) == 0
    doc = json.loads((tmp_path / "sim" / "select.json").read_text())
    assert doc["candidates"] == 10 and doc["draws"] == 10
    for f in ("select_curves.csv", "select_criteria.csv", "select_curves.png"):
        assert (tmp_path / "sim" / f).stat().st_size > 0
    assert main([str(d), "--criterion", "agreement"]) == 0
    assert "agreement: ranks first trial" in capsys.readouterr().out


@pytest.mark.parametrize("argv,fragment", [
    (["--criterion", "rotation"], "needs candidates with a rotation head"),
    (["--criterion", "atc"], "fits its thresholds on labeled images"),
    (["--budget", "0"], "--budget must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, fragment):
    d = _planted_dir(tmp_path)
    assert main([str(d), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_bad_labels_and_an_old_sweep_are_refused(tmp_path, capsys):
    d = _planted_dir(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n0,11\n")
    assert main([str(d), "--labels", str(bad)]) == 2
    assert "not a class index 0..9" in capsys.readouterr().err
    for ids, said in (("99999", "id 99999 is not an image of this sweep"),
                      ("abc", "id 'abc' is not an image of this sweep")):
        bad.write_text(f"id,label\n{ids},1\n")
        assert main([str(d), "--labels", str(bad)]) == 2
        assert said in capsys.readouterr().err
    bad.write_bytes(bytes(range(256)) * 8)  # not a CSV: pandas' message has newlines
    assert main([str(d), "--labels", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read it" in err
    old = _planted_dir(tmp_path / "old", with_pred=False)
    assert main([str(old), "--simulate"]) == 2
    assert "holds only per-example correctness" in capsys.readouterr().err


def test_the_sweep_file_gathers_classes_confidences_and_rotation_hits(tmp_path):
    from s4l_models.predictions import load_sweep_predictions, save_predictions
    from tune.results import write_predictions

    rng = np.random.default_rng(0)
    label = np.arange(50) % C
    dirs = {}
    for i in range(3):
        d = tmp_path / f"t{i}"
        d.mkdir()
        pred = rng.integers(0, C, 50)
        conf = rng.random(50)
        save_predictions(d, np.arange(50), label, pred == label, np.ones(50, bool), pred, conf,
                         rot=rng.integers(0, 5, 50) if i == 1 else None)
        dirs[f"t{i}"] = str(d)
    z = load_sweep_predictions(write_predictions(tmp_path, dirs))
    assert z["pred"].shape == (3, 50) and np.array_equal(z["pred"] == label, z["top1"])
    assert z["conf"].dtype == np.uint8 and z["has_rot"].tolist() == [False, True, False]
    # a trial written before classes were stored: the sweep file keeps only the bits
    old = tmp_path / "old"
    old.mkdir()
    save_predictions(old, np.arange(50), label, np.ones(50, bool), np.ones(50, bool))
    z = load_sweep_predictions(write_predictions(tmp_path, {**dirs, "old": str(old)}))
    assert "pred" not in z and z["top1"].shape == (4, 50)
    # unreadable images (label -1, --skip-bad-images) are in no reader's arrays, and their ids
    # travel with the sweep's file: no sheet asks a person to label them
    bad = label.copy()
    bad[[3, 17]] = -1
    for i, d in enumerate(dirs.values()):
        pred = rng.integers(0, C, 50)
        save_predictions(d, np.arange(50), bad, pred == bad, np.ones(50, bool), pred,
                         rng.random(50))
    z = load_sweep_predictions(write_predictions(tmp_path, dirs))
    assert z["top1"].shape == (3, 48) and z["pred"].shape == (3, 48)
    assert (z["label"] >= 0).all() and list(z["unreadable"]) == [3, 17]
    assert 3 not in z["index"] and 17 not in z["index"]


def test_an_image_folder_sheet_names_each_image_file(tmp_path, capsys):
    from test_trainer import _image_folder

    from s4l_models.data.datasets import load_dataset

    _image_folder(tmp_path / "data")
    paths = load_dataset("imagenet", str(tmp_path / "data")).train.paths
    n = len(paths)
    label = np.arange(n) % 2
    pred = np.stack([label, 1 - label, label])
    d = write_sweep(tmp_path / "sw", [{"lr": v, "seed": 0} for v in (0.1, 0.2, 0.3)],
                    pred == label, label, pred=pred, conf=np.full(pred.shape, 0.7))
    space = json.loads((d / "space.json").read_text())
    space.update(dataset="imagenet", flags={"data_dir": str(tmp_path / "data")})
    (d / "space.json").write_text(json.dumps(space))
    assert main([str(d), "--budget", "4", "--strategy", "random"]) == 0
    sheet = pd.read_csv(capsys.readouterr().out.split("--labels ")[-1].strip())
    assert len(sheet) == 4 and sheet["label"].isna().all()
    assert [paths[i] for i in sheet["id"]] == sheet["path"].tolist()


def test_the_report_has_the_section_and_skips_what_it_cannot_simulate(tmp_path, monkeypatch):
    from analysis import select_report
    from analysis.report import build_report

    d = _planted_dir(tmp_path)
    old = _planted_dir(tmp_path / "old", with_pred=False)
    build_report([d], tmp_path / "r", n_draws=20, n_boot=20, n_permutations=20)
    page = (tmp_path / "r" / "index.html").read_text()
    assert "How many labels does this sweep need?" in page and "disagreement needs" in page
    curves = pd.read_csv(tmp_path / "r" / "select_curves.csv")
    assert set(curves.strategy) == {"random", "stratified", "disagreement", "report",
                                    "no labels"}
    build_report([old], tmp_path / "r2", n_draws=20, n_boot=20, n_permutations=20)
    assert "stores only per-example correctness" in (tmp_path / "r2" / "index.html").read_text()
    monkeypatch.setattr(select_report, "ONEHOT_MAX", 10)
    build_report([d], tmp_path / "r3", n_draws=20, n_boot=20, n_permutations=20)
    assert "more than the report simulates" in (tmp_path / "r3" / "index.html").read_text()


def _digits_like_need():
    """The committed digits report's numbers: nothing reaches 0.95; the whole pool reaches
    0.851 ± 0.022 over 200 draws, disagreement does as well from 20 labels (15 falls short),
    the report's subsets from 240 (200 falls short); at -2 MC SE disagreement needs 25 and the
    report's subsets never get there."""
    grid = {"disagreement": [1, 2, 5, 10, 15, 20, 25, 30, 248],
            "random": [1, 2, 5, 10, 15, 20, 25, 30, 248],
            "stratified": [1, 2, 5, 10, 15, 20, 25, 30, 248],
            "report": [10, 20, 100, 150, 200, 240]}
    none = {s: None for s in grid}
    need = {"p_within_0.5pt": none, "p_within_1pt": none, "p_best": none,
            "p_within_0.5pt_mc_range": {s: [None, None] for s in grid},
            "ceiling_p_within_0.5pt": (0.851, 0.022), "no_labels_p_within_0.5pt": (0.059, 0.002),
            "yardstick_informative": True,
            "to_ceiling": {"random": 248, "stratified": 248, "disagreement": 20, "report": 240},
            "to_ceiling_mc_range": {"random": [200, 248], "stratified": [200, 248],
                                    "disagreement": [20, 25], "report": [240, None]},
            "grid": grid, "draws": 200}
    sv = savings(need["p_within_0.5pt"])
    sv["to_ceiling"] = savings(need["to_ceiling"])
    return need, sv


def test_the_saving_is_said_as_a_ratio_of_grid_points_with_its_mc_range():
    from analysis.select_report import words

    need, sv = _digits_like_need()
    text = words(need, sv, pd.DataFrame(), 248)
    assert "12.0x" not in text  # the old wording: a bare ratio, as if of measured minima
    assert ("disagreement needs 12x fewer labels than the report's subsets for that (MC range "
            "from 9.6x up: at -2 MC SE the report's subsets do not get there within the pool): "
            "a ratio of two points of the grid of label counts tried, 20 against 240 (the next "
            "smaller counts tried, 15 and 200, fall short; none between was tried).") in text
    assert "Labels to do as well as the whole pool (within 2 MC SE; on the grid of label " \
        "counts tried): random 248" in text
    # the pool's level is this simulation's, and the validation-size study's differs from it
    assert "reaches only 0.851 ± 0.022 (this section's simulation, 200 draws; the report's " \
        "validation-size study estimates the same quantity" in text
    assert "2000 draws per k by default, more than these 200" in text
    # both ends of the MC range finite; the >= 0.95 saving worded the same way
    need["to_ceiling_mc_range"]["report"] = [200, 248]
    need["p_within_0.5pt"] = {"random": None, "stratified": None, "disagreement": 20,
                              "report": 240}
    need["p_within_0.5pt_mc_range"].update(disagreement=[15, 30], report=[200, 248])
    sv = savings(need["p_within_0.5pt"])
    sv["to_ceiling"] = savings(need["to_ceiling"])
    need["ceiling_p_within_0.5pt"] = (0.99, 0.005)
    text = words(need, sv, pd.DataFrame(), 248)
    assert ("disagreement needs 12x fewer labels than the report's random stratified subsets "
            "(MC range 6.7x-16.5x): a ratio of two points of the grid of label counts tried, 20 "
            "against 240 (the next smaller counts tried, 15 and 200, fall short; none between "
            "was tried).") in text
    assert "MC range 8x-12.4x" in text  # to the ceiling: 200/25 to 248/20
    assert "reaches only" not in text


def test_study_candidates_keep_the_grid_and_the_ceiling_mc_range():
    from analysis.select_report import study_candidates, words

    c, _ = contested(n=600, n_contested=60)
    table, crit, need, sv = study_candidates(c, n_draws=20, seed=1)
    assert need["draws"] == 20
    for s, g in table[table.strategy != "no labels"].groupby("strategy"):
        assert need["grid"][s] == sorted(g["images"])
    assert need["yardstick_informative"]
    for s, n in need["to_ceiling"].items():
        lo, hi = need["to_ceiling_mc_range"][s]
        assert lo is not None and lo <= n and (hi is None or n <= hi)
    json.dumps(need, default=float)  # s4l-select --simulate writes it to select.json
    assert sv["ratio"] and sv["to_ceiling"]["ratio"]  # disagreement 4, the report's 90 (seeded)
    text = words(need, sv, crit, 300)
    assert text.count("a ratio of two points of the grid of label counts tried") == 2
    assert "(MC range " in text.split("fewer labels than the report's random stratified")[1]


def test_no_saving_is_claimed_when_a_pick_without_labels_already_gets_there():
    from analysis.select_report import words

    need, _ = _digits_like_need()
    # every trial within 0.5 pt: each strategy "needs" its smallest count, 1 against 10
    need["p_within_0.5pt"] = {"random": 1, "stratified": 1, "disagreement": 1, "report": 10}
    need["no_labels_p_within_0.5pt"] = (1.0, 0.0)
    sv = savings(need["p_within_0.5pt"])
    assert sv["ratio"]  # the bare numbers would make a 10x "saving"
    text = words(need, sv, pd.DataFrame(), 248)
    assert "fewer labels" not in text
    assert "A pick without labels already gets there (P = 1.000 ± 0.000)" in text
    assert "no strategy is compared" in text


def test_a_simulation_never_replaces_an_earlier_one(tmp_path, capsys):
    d = _planted_dir(tmp_path)
    sim = tmp_path / "sim"
    assert main([str(d), "--simulate", "--draws", "10", "--out", str(sim)]) == 0
    before = {f.name: f.read_bytes() for f in sim.iterdir()}
    assert main([str(d), "--simulate", "--draws", "5", "--seed", "1", "--out", str(sim)]) == 2
    assert "already holds a simulation (select.json)" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in sim.iterdir()} == before
    # without --out: a new folder under the sweep each time
    for _ in range(2):
        assert main([str(d), "--simulate", "--draws", "5"]) == 0
    assert (d / "select" / "simulate" / "select.json").is_file()
    assert (d / "select" / "simulate-2" / "select.json").is_file()


def test_a_missing_predictions_file_is_rebuilt_from_the_trials(tmp_path, capsys):
    from s4l_models.predictions import load_sweep_predictions, save_predictions

    d = _planted_dir(tmp_path)
    saved = load_sweep_predictions(d / "predictions.npz")
    ids = [str(t) for t in saved["trial_ids"]]
    for i, t in enumerate(ids):  # each trial's own file, as the trainer writes it
        save_predictions(d / "trials" / t, saved["index"], saved["label"], saved["top1"][i],
                         saved["top5"][i], pred=saved["pred"][i], conf=saved["conf"][i])
    (d / "predictions.npz").unlink()
    assert main([str(d), "--criterion", "agreement"]) == 0
    assert "rebuilt it from the completed trials' own" in capsys.readouterr().err
    again = load_sweep_predictions(d / "predictions.npz")
    assert [str(t) for t in again["trial_ids"]] == ids
    assert np.array_equal(again["top1"], saved["top1"]) and np.array_equal(again["pred"],
                                                                           saved["pred"])
    # with no trial file left, a one-line error that says so
    (d / "predictions.npz").unlink()
    for t in ids:
        (d / "trials" / t / "val_predictions.npz").unlink()
    assert main([str(d), "--criterion", "agreement"]) == 2
    assert "no completed trial kept its val_predictions.npz" in capsys.readouterr().err


def test_an_unreadable_predictions_file_is_one_line(tmp_path, capsys):
    d = _planted_dir(tmp_path)
    (d / "predictions.npz").write_bytes(b"PK\x03\x04 cut short")
    assert main([str(d), "--criterion", "agreement"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "predictions.npz is unreadable" in err
