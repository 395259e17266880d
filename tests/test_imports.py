"""Import boundaries: reading a sweep's files needs no torch."""

from __future__ import annotations

import subprocess
import sys


def test_the_analysis_and_the_results_schema_import_without_torch():
    # a fresh interpreter: this test process has long imported torch
    code = ("import sys, analysis, analysis.load, analysis.report, tune.results, "
            "s4l_models.predictions; sys.exit(1 if 'torch' in sys.modules else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr or "importing the analysis imported torch"


def test_the_package_names_still_load_on_use():
    from s4l_models import TrainConfig, create_model, list_methods

    assert "supervised" in list_methods() and TrainConfig().arch and callable(create_model)
