"""The views HPO users expect beside our sensitivity analysis, from Optuna itself.

* fANOVA importance (Hutter et al. 2014) via `optuna.importance.FanovaImportanceEvaluator`: a
  random forest fitted to (axis values -> full-split top-1) and the share of its variance each
  axis explains, summing to 1 over the axes. It is not chance-corrected and has no p-value: with
  few trials it hands out importance to noise too, which is why the report puts it beside ω²
  and the permutation test (analysis/sensitivity.py) rather than in their place.
* the parallel-coordinates plot of the axes against the metric
  (`optuna.visualization.matplotlib.plot_parallel_coordinate`).

Both see the completed trials as an Optuna study: one finished trial per sweep trial, each axis
a categorical parameter (a grid's values are categories; the order of numbers is kept for the
plot), the value its full-split top-1. Only the sweep's own axes that vary take part (not the
derived depth/version, which would split an architecture's importance between copies).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .load import FULL, Sweep
from .sensitivity import axis_cell


def varying_axes(sweep: Sweep) -> list[str]:
    df = sweep.search
    return [a for a in sweep.axes
            if a in df.columns and df[a].map(lambda v: str(axis_cell(v))).nunique() > 1]


def as_study(sweep: Sweep):
    """The search's completed trials as an Optuna study (maximising full-split top-1, in
    percent); seed repeats are left out as in the sensitivity ranking (`Sweep.search`)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    axes = varying_axes(sweep)
    df = sweep.search
    choices = {}
    for a in axes:
        vals = list(dict.fromkeys(axis_cell(v) for v in df[a]))
        try:
            vals = sorted(vals, key=float)
        except (TypeError, ValueError):
            vals = sorted(vals, key=str)
        choices[a] = tuple(vals)
    study = optuna.create_study(direction="maximize", study_name=sweep.name)
    dists = {a: CategoricalDistribution(choices[a]) for a in axes}
    study.add_trials([
        optuna.trial.create_trial(params={a: axis_cell(r[a]) for a in axes}, distributions=dists,
                                  value=100 * float(r[FULL]))
        for _, r in df.iterrows()
    ])
    return study, axes


def fanova_missing(sweep: Sweep) -> str | None:
    """Why fANOVA is undefined for this sweep, or None when it is defined."""
    df = sweep.search
    if len(df) < 3:
        return f"{len(df)} completed trial(s) of the search, fewer than 3: no fANOVA."
    if not varying_axes(sweep):
        return "No axis varies among the completed trials: no fANOVA."
    if np.ptp(df[FULL].to_numpy(float)) == 0:
        return ("Every completed trial has the same full-split top-1, so there is no variance "
                "to share among the axes: no fANOVA.")
    return None


# Random forests fANOVA averages over: one forest's shares move by several points with its seed
# (docs/figure3_digits: weight decay 0.38-0.54 over seeds 0-4, and the order of the next axes
# changes), so the mean over several forests is reported with its Monte-Carlo standard error.
FORESTS = 10


def fanova(sweep: Sweep, seed: int = 0, forests: int = FORESTS) -> pd.DataFrame:
    """fANOVA importance per varying axis, the mean over `forests` random forests (seeds
    `seed`, `seed + 1`, ...; sums to 1) with its Monte-Carlo standard error, most important
    first; empty when it is undefined (`fanova_missing` says why)."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    columns = ["sweep", "axis", "fanova_importance", "fanova_importance_se", "forests"]
    if fanova_missing(sweep) is not None:
        return pd.DataFrame(columns=columns)
    study, axes = as_study(sweep)
    runs = pd.DataFrame([
        get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed + i),
                              normalize=True)
        for i in range(forests)
    ]).fillna(0.0)
    mean = runs.mean()
    se = runs.std(ddof=1) / np.sqrt(forests) if forests > 1 else runs.mean() * np.nan
    order = mean.sort_values(ascending=False, kind="stable").index
    return pd.DataFrame([{"sweep": sweep.name, "axis": a, "fanova_importance": float(mean[a]),
                          "fanova_importance_se": float(se[a]), "forests": forests}
                         for a in order], columns=columns)


def fanova_words(table: pd.DataFrame) -> str:
    parts = ", ".join(
        f"{r.axis} {r.fanova_importance:.2f}"
        + (f" ± {r.fanova_importance_se:.2f}" if np.isfinite(r.fanova_importance_se) else "")
        for r in table.itertuples())
    n = int(table["forests"].iloc[0]) if len(table) else FORESTS
    return (f"Optuna's fANOVA importance (share of a random forest's variance, mean over {n} "
            f"forests ± its Monte-Carlo SE; not chance-corrected, no p-value): {parts}.")


def plot_parallel(sweep: Sweep):
    """Optuna's parallel-coordinates plot of the varying axes against full-split top-1."""
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    study, axes = as_study(sweep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        ax = plot_parallel_coordinate(study, params=axes, target_name="full-split top-1 [%]")
    fig = ax.figure
    fig.set_size_inches(max(6.0, 1.6 * len(axes) + 2), 4.2)
    ax.set_title(f"{sweep.name}: axes against full-split top-1 (one line per trial)", pad=14)
    fig.tight_layout()
    plt.close(fig)
    return fig


__all__ = ["FORESTS", "as_study", "fanova", "fanova_missing", "fanova_words", "plot_parallel", "varying_axes"]
