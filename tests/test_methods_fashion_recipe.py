"""bench/methods_fashion_mnist.py trains every method with the recipe of the sweep's best trial:
the best completed trial that is not short, with every setting of the recipe (the evaluation
cadence included, so that the methods are scored as often as the sweep's trials were)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from methods_fashion_mnist import RECIPE, best_recipe, settings  # noqa: E402

from tune.results import RESULTS_PARQUET  # noqa: E402


def _row(trial_id, status, short, top1, wd):
    return dict(trial_id=trial_id, status=status, short_run=short, val_full_top1=top1,
                labels="13/class", val_size=5000, split_seed=0, arch="resnet18_v2", width=0.5,
                batch_size=16, epochs=100.0, lr=0.1, wd=wd, momentum=0.9, warmup_epochs=10.0,
                decay_epochs=None, color_aug=True, evaluations=2, eval_every=0.0)


def test_the_recipe_is_the_best_meaningful_trials(tmp_path):
    rows = [_row("a", "completed", False, 0.71, 1e-3),
            _row("b", "completed", True, 0.90, 3e-2),    # short: never the recipe
            _row("c", "error", False, float("nan"), 1e-2),
            _row("d", "completed", False, 0.74, 3e-3)]
    pd.DataFrame(rows).to_parquet(tmp_path / RESULTS_PARQUET)
    best = best_recipe(tmp_path)
    assert best["trial_id"] == "d" and best["val_full_top1"] == 0.74
    assert best["recipe"]["wd"] == 3e-3 and best["recipe"]["evaluations"] == 2
    assert "decay_epochs" not in best["recipe"]  # unset settings keep the trainer's default
    assert set(best["recipe"]) <= set(RECIPE)

    class Args:
        data_dir, threads, device = None, 1, "cpu"
    s = settings("s4l_rotation", best["recipe"], Args, seed=2)
    assert s["method"] == "s4l_rotation" and s["seed"] == 2 and s["tta_rotation"] is True
    assert {k: s[k] for k in best["recipe"]} == best["recipe"]
