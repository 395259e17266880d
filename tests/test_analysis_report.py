"""Tests for s4l-report: the whole report, bad input, and the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from planted_sweeps import planted_sweep

from analysis import cli
from analysis.load import FULL
from analysis.report import OWN_MARKER, build_report, owned

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One planted sweep with 2 seeds per configuration and its report (built once)."""
    base = tmp_path_factory.mktemp("report")
    grid = {"wd": [1e-4, 1e-3, 1e-2], "epochs": [30, 300],
            "arch": ["resnet18_v1", "resnet50_v2"]}
    run = planted_sweep(base / "sweep", grid=grid, seeds=2, n_classes=10, per_class=30)
    index = build_report([run], base / "out", n_forests=2, n_draws=200, n_boot=200)
    return run, index


def test_report_writes_every_file(report):
    run, index = report
    out = index.parent
    assert index == out / "index.html"
    for name in ("figure3", "valsize", "sensitivity", "parallel"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    csvs = {p.name for p in out.glob("*.csv")}
    assert csvs == {"sweeps.csv", "tiny_subsets.csv", "valsize.csv", "sensitivity.csv",
                    "sensitivity_values.csv", "leaderboard.csv", "configurations.csv",
                    "cost_by_axis.csv", "fanova.csv"}
    tiny = pd.read_csv(out / "tiny_subsets.csv")
    # one row per subset and yardstick: the full split (nested) and the rest of it (disjoint)
    assert list(zip(tiny["subset"], tiny["yardstick"])) == [
        ("1/class", "nested"), ("1/class", "disjoint"), ("5/class", "nested"),
        ("5/class", "disjoint")]
    assert {"pearson", "pearson_null", "spearman_p", "kendall_lo", "kendall_lo_mcse",
            "expected_regret_pt", "p_pick_best", "top10_overlap", "pick_tiny_lo",
            "mcnemar_tiny_p"} <= set(tiny.columns)
    nested = tiny[tiny["yardstick"] == "nested"]
    assert (nested["pearson_null"] > 0.05).all()  # the overlap alone correlates
    assert (tiny.loc[tiny["yardstick"] == "disjoint", "pearson_null"].abs() < 0.1).all()
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.loc[0, "n_seeds"] == 2 and np.isfinite(board.loc[0, "val_full_top1_std"])
    vs = pd.read_csv(out / "valsize.csv")
    # held-out design: k-per-class from a pool of half of each class's 30 images, then the
    # whole pool; the nested (paper's) design up to the whole class
    assert vs.loc[vs["design"] == "heldout", "k_per_class"].tolist() == ["1", "2", "5", "10",
                                                                        "pool"]
    assert vs.loc[vs["design"] == "nested", "k"].tolist() == [1, 2, 5, 10, 20, 30]
    assert {"p_best_se", "p_within_0.5pt_se", "regret_mean_pt_se"} <= set(vs.columns)


def test_report_states_the_key_numbers_in_words(report):
    page = report[1].read_text()
    assert len(re.findall(r"r = [-0-9.]+", page)) >= 2  # Pearson r of both tiny subsets
    assert "images per class" in page and "within 0.5 pt of the best" in page
    assert "held-out" in page and "Monte-Carlo standard error" in page
    assert "overlap alone gives r = " in page  # the nested p-value's null is named
    assert "agrees with the paper" in page  # planted: wd and epochs matter, arch does not
    assert "(n=2)" in page and " ± " in page  # leaderboard over 2 seeds
    assert "pooled standard deviation" in page  # seeds were repeated
    assert "1 of 24 trials are left out (errored 1)" in page
    assert page.count("data:image/png;base64,") == 4  # self-contained: Figure 3, valsize, sensitivity, parallel coordinates


def test_several_sweeps_get_suffixed_files(tmp_path):
    a = planted_sweep(tmp_path / "a", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    b = planted_sweep(tmp_path / "b", grid={"wd": [1e-4, 1e-2], "lr": [0.03, 0.1]}, seed=1)
    (b / "predictions.npz").unlink()  # the study is skipped for b, with a note
    index = build_report([a, b], tmp_path / "out", n_forests=2, n_draws=50, n_boot=50)
    names = {p.name for p in index.parent.iterdir()}
    assert {"figure3.png", "valsize-a.png", "sensitivity-a.png", "sensitivity-b.png"} <= names
    assert "valsize-b.png" not in names
    page = index.read_text()
    assert "b: skipped, no per-example predictions" in page
    assert "predictions.npz is missing" in page


def test_a_combined_report_needs_its_own_out(tmp_path, capsys):
    """Without --out, a report of several sweeps would replace the first one's own report."""
    a = planted_sweep(tmp_path / "a", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    b = planted_sweep(tmp_path / "b", grid={"wd": [1e-4, 1e-2], "lr": [0.03, 0.1]}, seed=1)
    assert cli.main([str(a), "--forests", "2", "--draws", "20", "--boot", "0", "--quiet"]) == 0
    before = (a / "report" / "index.html").read_bytes()
    capsys.readouterr()
    assert cli.main([str(a), str(b), "--forests", "2",
                     "--draws", "20", "--boot", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "give --out DIR" in err and len(err.splitlines()) == 1
    assert (a / "report" / "index.html").read_bytes() == before


def test_cli_writes_the_report(tmp_path, capsys):
    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    assert cli.main([str(run), "--out", str(tmp_path / "r"), "--forests", "2",
                     "--draws", "30", "--boot", "30",
                     "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'r' / 'index.html'}"
    assert cli.main([str(run), "--forests", "2",
                     "--draws", "20", "--boot", "0"]) == 0  # default out, verbose
    assert (run / "report" / "index.html").is_file()
    said = capsys.readouterr()
    lines = said.out.strip().splitlines()
    assert lines[-1] == f"report: {run / 'report' / 'index.html'}"
    assert any(line.startswith("for this sweep, ") and "held-out" in line
               for line in lines)  # the recommendation, on the held-out yardstick
    assert any(line.startswith("1/class: r = ") for line in lines)
    assert "validation-size study" in said.err  # progress goes to stderr



def test_the_report_overwrites_only_an_earlier_report(tmp_path, capsys, monkeypatch):
    import errno

    import matplotlib.figure

    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "index.html").write_text("<html>my own page</html>")
    (mine / "leaderboard.csv").write_text("mine\n")
    argv = ["--forests", "2", "--draws", "20", "--boot", "0", "--quiet"]
    assert cli.main([str(run), "--out", str(mine), *argv]) == 2
    err = capsys.readouterr().err
    assert "holds index.html, not from an earlier s4l-report" in err and len(
        err.strip().splitlines()) == 1
    assert (mine / "index.html").read_text() == "<html>my own page</html>"
    assert (mine / "leaderboard.csv").read_text() == "mine\n"
    # a folder holding only one of the report's figures, under its own name, is refused too
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "valsize.png").write_bytes(b"my plot")
    assert cli.main([str(run), "--out", str(plots), *argv]) == 2
    assert "holds valsize.png" in capsys.readouterr().err
    assert (plots / "valsize.png").read_bytes() == b"my plot"
    # an earlier report is rebuilt in place; a full disk mid-way leaves every earlier file whole
    out = tmp_path / "r"
    assert cli.main([str(run), "--out", str(out), *argv]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    # check_out knows every file the report writes (the marker aside), so none is overwritten
    # unrecognised in a user's folder
    written = sorted(n for n in before if n != OWN_MARKER)
    assert "valsize.png" in written and [n for n in written if not owned(n)] == []
    real = matplotlib.figure.Figure.savefig

    def full(self, fname, *a, **k):
        real(self, fname, *a, **k)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    assert cli.main([str(run), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk full writing" in err[0] and "rerun s4l-report" in err[0]
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before

# ---------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the problem and the fix, no traceback
# ---------------------------------------------------------------------------------------


def _table(path: Path, df: pd.DataFrame) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path / "results.parquet", index=False)
    return path


def _good_rows(n=3, **extra) -> pd.DataFrame:
    df = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "status": "completed",
                       "error": "", "wd": [1e-3] * n, "val_1pc_top1": 0.5,
                       "val_full_top1": [0.5, 0.6, 0.7], "results_version": 2})
    for k, v in extra.items():
        df[k] = v
    return df


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty_dir").mkdir()
    no_completed = _good_rows(status="errored")
    no_completed["val_full_top1"] = np.nan
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.parquet").write_bytes(b"not parquet at all")
    empty_csv = tmp / "empty_csv"
    empty_csv.mkdir()
    (empty_csv / "results.csv").write_text("")
    nested = tmp / "storage"
    _table(nested / "mysweep", _good_rows())
    percent = _good_rows()
    percent["val_full_top1"] = [50.0, 60.0, 70.0]
    bad_space = _table(tmp / "bad_space", _good_rows())
    (bad_space / "space.json").write_text("{not json")
    new_space = _table(tmp / "new_space", _good_rows())
    (new_space / "space.json").write_text(json.dumps({"axes": ["wd"], "results_version": 9}))
    return {
        "missing dir": ([str(tmp / "nothing-here")], "does not exist"),
        "no results": ([str(tmp / "empty_dir")], "holds no results.parquet or results.csv"),
        "nested": ([str(nested)], "did you mean"),
        "empty table": ([str(_table(tmp / "empty", _good_rows().iloc[:0]))], "has no trials"),
        "empty csv": ([str(empty_csv)], "has no trials"),
        "no completed": ([str(_table(tmp / "nocomp", no_completed))],
                         "see the error column"),
        # a watched sweep whose first trial still runs: nothing to fix, only to wait for
        "none finished yet": ([str(_table(tmp / "running", no_completed.assign(
            status="running")))], "no trial has finished yet"),
        "no version": ([str(_table(tmp / "old", _good_rows().drop(columns="results_version")))],
                       "older or unknown format"),
        "other version": ([str(_table(tmp / "v1", _good_rows(results_version=1)))],
                          "has results_version 1 but this s4l-report reads version(s) 2, 3, 4, 5"),
        "all short": ([str(_table(tmp / "short", _good_rows(short_run=True)))],
                      "too short to mean anything"),
        "missing column": ([str(_table(tmp / "nofull", _good_rows().drop(columns=FULL)))],
                           "lacks required column(s) val_full_top1"),
        "corrupt": ([str(corrupt)], "cannot read"),
        "percent": ([str(_table(tmp / "percent", percent))], "not percent"),
        "bad space": ([str(bad_space)], "cannot read"),
        "space version": ([str(new_space)], "space.json has results_version 9"),
        "no args": ([], "the following arguments are required"),
        "bad flag": ([str(tmp), "--draws", "many"], "invalid int value"),
        "no forests": ([str(tmp), "--forests", "0"], "--forests must be >= 1"),
    }


def test_an_unreadable_parquet_is_read_from_its_csv_copy_and_said(tmp_path, capsys):
    from analysis.load import load_sweep

    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    whole = load_sweep(run)
    (run / "results.parquet").write_bytes(b"truncated")
    sweep = load_sweep(run)
    assert sweep.completed["trial_id"].tolist() == whole.completed["trial_id"].tolist()
    assert any("results.parquet is unreadable" in n and "its copy results.csv" in n
               and "Rerun the sweep" in n for n in sweep.notes)
    # without the copy: one piece of advice, the one that can work for this sweep (it has no
    # Ray state, so --resume cannot rebuild it)
    (run / "results.csv").unlink()
    assert cli.main([str(run), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no results.csv beside it" in err and "--resume" not in err and len(err.splitlines()) == 1
    (run / "ray").mkdir()
    (run / "ray" / "tuner.pkl").write_bytes(b"")
    assert cli.main([str(run), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_short_runs_are_left_out_of_the_statistics_and_counted(tmp_path):
    from analysis.load import load_sweep

    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-3, 1e-2], "epochs": [30, 300]},
                        seeds=2, errored=0)
    df = pd.read_parquet(run / "results.parquet")
    # plant: the two best trials were too short to mean anything
    best_two = df[FULL].nlargest(2).index
    df["short_run"] = df.index.isin(best_two)
    df.to_parquet(run / "results.parquet", index=False)
    sweep = load_sweep(run)
    assert len(sweep.completed) == len(df) - 2
    assert not set(df.loc[best_two, "trial_id"]) & set(sweep.completed["trial_id"])
    assert any("2 completed trials are too short" in n for n in sweep.notes)
    assert len(load_sweep(run, include_short=True).completed) == len(df)
    # the report says how many it left out, and the figure's best is a meaningful trial
    index = build_report([run], tmp_path / "out", n_forests=2, n_draws=20, n_boot=0)
    page = index.read_text()
    assert "2 completed trials are too short to mean anything" in page
    assert cli.main([str(run), "--out", str(tmp_path / "o2"), "--forests", "2",
                     "--draws", "20", "--boot", "0",
                     "--include-short-runs", "--quiet"]) == 0
    assert "included because --include-short-runs" in (tmp_path / "o2" / "index.html").read_text()



def test_trials_that_all_score_the_same_get_an_honest_report(tmp_path):
    """Every trial with the same predictions: no statistic can rank them, and the report says
    so instead of failing (fANOVA has no variance to share) or recommending a validation size."""
    from planted_sweeps import write_sweep

    label = np.repeat(np.arange(10), 40)
    same = np.arange(400) % 5 != 0  # 80% right, the same examples in every trial
    settings = [{"method": "supervised", "dataset": "synthetic", "labels": "1%", "seed": 0,
                 "wd": wd, "lr": lr} for wd in (1e-4, 1e-3) for lr in (0.1, 0.03)]
    run = write_sweep(tmp_path / "s", settings, np.repeat(same[None], 4, axis=0), label,
                      axes=["wd", "lr"])
    index = build_report([run], tmp_path / "out", n_forests=2, n_draws=50, n_boot=50)
    page = index.read_text()
    assert "Every completed trial has the same full-split top-1" in page
    assert "cannot tell validation sizes apart" in page
    assert "fewer labels than" not in page
    assert "the scores do not vary on the subset or on the split" in page
    assert "without per-example predictions" not in page


def test_csv_is_read_when_parquet_is_absent(tmp_path):
    from analysis.load import load_sweep

    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    a = load_sweep(run)
    (run / "results.parquet").unlink()
    b = load_sweep(run)
    assert b.completed["trial_id"].tolist() == a.completed["trial_id"].tolist()
    assert np.allclose(b.completed[FULL], a.completed[FULL])
    assert b.axes == a.axes == ["wd", "epochs"] and b.tiny_ks == [1, 5]
    assert b.predictions is not None and b.predictions.top1.shape[0] == len(b.completed)


def test_package_exposes_build_report(tmp_path):
    import analysis

    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-2], "epochs": [30, 300]})
    index = analysis.build_report(run, tmp_path / "r", n_forests=2, n_draws=20, n_boot=20)
    assert index == tmp_path / "r" / "index.html" and index.is_file()
    assert (tmp_path / "r" / "summary.txt").read_text().count("\n") >= 4


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    for case, (argv, expect) in _bad_inputs(tmp_path).items():
        rc = cli.main(argv + ["--out", str(tmp_path / "out")] if argv else argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2, case
        assert err.startswith("error: ") and "\n" not in err, (case, err)
        assert expect in err, (case, err)
        assert "Traceback" not in err, case


def test_bad_input_through_the_console_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.cli", str(tmp_path / "nothing-here"), "--out",
         str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------
# The page in a real browser
# ---------------------------------------------------------------------------------------

CHECK_JS = """
<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre");
  out.id = "imgcheck";
  out.textContent = JSON.stringify({n: imgs.length, bad: bad,
    tables: document.querySelectorAll("table").length,
    width: imgs.map(i => i.naturalWidth)});
  document.body.appendChild(out);
});
</script>
"""


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_page_renders_in_headless_chromium(report, tmp_path):
    browser = _browser()
    if browser is None:
        reason = "no chromium on PATH (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the browser test cannot run: {reason}")
        pytest.skip(reason)
    index = report[1]
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    # the page itself plus a load-time check of every image, next to it (same relative links)
    check = index.parent / "_imgcheck.html"
    check.write_text(index.read_text().replace("</body>", CHECK_JS + "</body>"))
    try:
        dom = subprocess.run(flags + ["--dump-dom", check.as_uri()], capture_output=True,
                             text=True, timeout=90).stdout
    finally:
        check.unlink()
    m = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom, re.S)
    assert m, f"the page did not finish loading in Chromium: {dom[-500:]}"
    result = json.loads(m.group(1).replace("&quot;", '"'))
    assert result["n"] == 4 and result["bad"] == [], result
    assert all(w > 500 for w in result["width"]) and result["tables"] >= 5
    shot = tmp_path / "screenshot.png"
    subprocess.run(flags + ["--window-size=1300,5000", f"--screenshot={shot}", index.as_uri()],
                   capture_output=True, timeout=90)
    assert shot.is_file() and shot.stat().st_size > 50_000


def test_boot_0_says_no_null_draws_were_asked_for_not_that_predictions_are_missing(tmp_path):
    run = planted_sweep(tmp_path / "s", grid={"wd": [1e-4, 1e-3, 1e-2], "epochs": [30, 300]})
    out = tmp_path / "r"
    assert cli.main([str(run), "--out", str(out), "--boot", "0", "--forests", "2", "--draws", "20",
                     "--permutations", "20", "--quiet"]) == 0
    summary = (out / "summary.txt").read_text()
    assert "no null draws were asked for, --boot 0" in summary
    assert "without per-example predictions" not in summary
    tiny = pd.read_csv(out / "tiny_subsets.csv")
    assert tiny["null"].str.startswith("not computed").all()
    assert "pearson_subsets_median" not in tiny.columns  # no random subsets drawn either
