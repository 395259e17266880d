"""The committed studies (docs/figure3_*) are rebuilt from the data committed beside them: the
analysis reads results.parquet, predictions.npz, splits.npz and space.json and must print the
same summary numbers and write the same tables as the committed report, with no retraining.
A number in the README that came from one of these directories can be checked this way."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main as report_main

DOCS = Path(__file__).resolve().parents[1] / "docs"
STUDIES = sorted(p for p in DOCS.glob("figure3_*") if (p / "results.parquet").is_file())
# The report's data files; every one that is committed must come out the same.
DATA_FILES = ("results.parquet", "predictions.npz", "splits.npz", "space.json")
TABLES = ("leaderboard.csv", "sensitivity.csv", "sensitivity_values.csv", "tiny_subsets.csv",
          "valsize.csv", "configurations.csv", "sweeps.csv", "cost_by_axis.csv", "fanova.csv")


def test_studies_are_committed():
    names = {p.name for p in STUDIES}
    assert {"figure3_digits", "figure3_fashion_mnist"} <= names, names


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_committed_study_reproduces(study: Path, tmp_path: Path, monkeypatch):
    for name in DATA_FILES:
        assert (study / name).is_file(), f"{study.name}/{name} is not committed"
    out = tmp_path / "report"
    monkeypatch.chdir(DOCS.parent)  # the command the README prints: s4l-report docs/figure3_...
    assert report_main([f"docs/{study.name}", "--out", str(out), "--quiet"]) == 0
    # The key numbers as printed (rounded for print), exactly
    assert (out / "summary.txt").read_text() == (study / "summary.txt").read_text()
    compared = 0
    for name in TABLES:
        if not (study / name).is_file():
            continue
        got, want = pd.read_csv(out / name), pd.read_csv(study / name)
        # full-precision columns: equal up to the last bits another BLAS may round differently
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-12)
        compared += 1
    assert compared >= 4, f"{study.name}: only {compared} tables committed"
    assert (study / "index.html").stat().st_size > 0 and (study / "figure3.png").stat().st_size > 0
