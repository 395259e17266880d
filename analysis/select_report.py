"""The report's section "How many labels does this sweep need?" (analysis/select_sim.py's
simulation and label-free criteria on every sweep that stores predicted classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from s4l_models.errors import UserError
from s4l_models.predictions import load_sweep_predictions

from .load import PREDICTIONS_FILE, Sweep
from .select import ONEHOT_MAX, candidates_from
from .select_sim import (
    BASELINE,
    DRAWS,
    NO_LABELS,
    ceiling,
    ceiling_target,
    chance,
    criteria_table,
    informative,
    needed,
    needed_for_ceiling,
    needed_range,
    savings,
    simulate,
)
from .valsize import DRAWS as VALSIZE_DRAWS

ACTIVE = ("disagreement",)


class TooLarge(Exception):
    """A sweep too large for the report's simulation (the one-hot votes would not fit)."""


def curves_figure(table: pd.DataFrame, title: str = ""):
    """P(pick within 0.5 pt of the held-out best) against labeled images, per strategy."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for s, g in table.groupby("strategy", sort=False):
        g = g.sort_values("images")
        if s == NO_LABELS:
            ax.axhline(float(g["p_within_0.5pt"].iloc[0]), color="grey", lw=0.8, ls=":",
                       label="a pick without labels")
            continue
        ax.errorbar(g["images"], g["p_within_0.5pt"], yerr=2 * g["p_within_0.5pt_se"],
                    label="report: k random images per class" if s == BASELINE else s,
                    marker="o", ms=3, capsize=2, linestyle="--" if s == BASELINE else "-")
    ax.axhline(0.95, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("labeled validation images (from the pool half)")
    ax.set_ylabel("P(pick within 0.5 pt of the held-out best)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def study(sweep: Sweep, n_draws: int = DRAWS, seed: int = 0, log=None):
    """(curves table, criteria table, labels needed, savings) for a sweep; None when its
    predictions hold no predicted classes (a sweep written before they were stored)."""
    if sweep.predictions is None:
        return None
    t, n = sweep.predictions.top1.shape
    if t * n * int(sweep.predictions.label.max() + 1) > ONEHOT_MAX:
        raise TooLarge(f"{t} trials x {n} images is more than the report simulates; run "
                       "s4l-select SWEEP --simulate --draws 50 for it")
    raw = sweep.predictions.raw or load_sweep_predictions(Path(sweep.run_dir) / PREDICTIONS_FILE)
    try:
        c = candidates_from(raw, [str(t) for t in sweep.predictions.trial_ids])
    except UserError:
        return None
    return study_candidates(c, n_draws, seed, log)


def study_candidates(c, n_draws: int = DRAWS, seed: int = 0, log=None):
    """`study` on given candidates (analysis/select.py): curves, criteria, labels needed and
    the savings of the active strategies over the report's subsets."""
    table = simulate(c, n_draws=n_draws, seed=seed, log=log)
    crit = criteria_table(c, seed=seed)
    need = {col: needed(table, col) for col in ("p_within_0.5pt", "p_within_1pt", "p_best")}
    need["p_within_0.5pt_mc_range"] = needed_range(table, "p_within_0.5pt")
    need["ceiling_p_within_0.5pt"] = ceiling(table)
    need["no_labels_p_within_0.5pt"] = chance(table)
    need["yardstick_informative"] = informative(table)
    need["to_ceiling"] = needed_for_ceiling(table) if need["yardstick_informative"] else None
    if need["to_ceiling"] is not None:
        need["to_ceiling_mc_range"] = needed_range(table, "p_within_0.5pt",
                                                   target=ceiling_target(table))
    # the label counts tried per strategy: every count above is a point of this grid
    need["grid"] = {str(s): sorted(int(b) for b in g["images"])
                    for s, g in table[table["strategy"] != NO_LABELS].groupby("strategy")}
    need["draws"] = int(table["draws"].iloc[0])
    sv = savings(need["p_within_0.5pt"], ACTIVE)
    sv["to_ceiling"] = (savings(need["to_ceiling"], ACTIVE) if need["to_ceiling"] is not None
                        else None)
    return table, crit, need, sv


def words(need: dict, sv: dict, crit: pd.DataFrame, pool: int) -> str:
    """One paragraph: labels needed per strategy, the saving, the criteria's regret."""
    per, rng = need["p_within_0.5pt"], need["p_within_0.5pt_mc_range"]

    def span(s):
        lo, hi = rng[s]
        return "" if lo == hi else f" (MC range {lo or '-'}-{hi or 'beyond the pool'})"

    parts = [f"{'the report' + chr(39) + 's k-per-class subsets' if s == BASELINE else s} "
             f"{n if n is not None else f'not within the {pool}-image pool'}{span(s)}"
             for s, n in per.items()]
    grid = need.get("grid") or {}
    text = ("Labeled images needed (on the grid of label counts tried) to pick a trial within "
            "0.5 pt of the held-out best with probability >= 0.95: " + ", ".join(parts) + ".")
    low, low_se = need["no_labels_p_within_0.5pt"]
    if low >= 0.95:
        # every strategy "needs" its smallest count: the goal needs no labels at all
        return text + (f" A pick without labels already gets there (P = {low:.3f} ± {low_se:.3f}"
                       "): these trials do not differ by more than 0.5 pt on held-out images, "
                       "so labels buy nothing here and no strategy is compared.")
    if sv["ratio"]:
        text += _saving(sv, rng, grid, "the report's random stratified subsets", "")
    elif sv["baseline_images"] is None and sv["active_images"] is not None:
        a = sv["active_images"]
        text += (f" {sv['best_active']} gets there with {a} "
                 f"({_grid_point(grid, sv['best_active'], a)}); the random stratified subsets "
                 "never do within the pool.")
    value, se = need["ceiling_p_within_0.5pt"]
    if value < 0.95:
        draws = need.get("draws", DRAWS)
        other = f"{VALSIZE_DRAWS} draws per k by default"
        if VALSIZE_DRAWS > draws:
            other += f", more than these {draws}"
        text += (f" Labeling the whole pool reaches only {value:.3f} ± {se:.3f} (this section's "
                 f"simulation, {draws} draws; the report's validation-size study estimates the "
                 f"same quantity, its whole pool's P(within 0.5 pt), from its own simulation "
                 f"({other}), so its figure differs from this one by Monte-Carlo error; a pick "
                 f"without labels: {low:.3f}): the held-out half cannot resolve these trials to "
                 "0.5 pt, so no strategy can reach 0.95.")
    to = need["to_ceiling"]
    if to is None:
        text += (" The whole pool does not do clearly better than no labels here, so no "
                 "comparison of strategies is made.")
    else:
        text += (" Labels to do as well as the whole pool (within 2 MC SE; on the grid of label "
                 "counts tried): " + ", ".join(
                     f"{'the report' + chr(39) + 's subsets' if s == BASELINE else s} "
                     f"{n if n is not None else 'never'}" for s, n in to.items()) + ".")
        tc = sv["to_ceiling"]
        if tc["ratio"]:
            text += _saving(tc, need.get("to_ceiling_mc_range") or {}, grid,
                            "the report's subsets", " for that")
    if len(crit):
        text += " Without labels: " + "; ".join(
            f"{r.criterion} regret {r.regret_pt:.2f} pt (Spearman {r.spearman:.2f})"
            for r in crit.itertuples()) + "."
    return text


def _x(r: float) -> str:
    return f"{round(r, 1):g}x"  # 12x, 9.6x, 22.5x


def _below(grid: dict, s: str, n: int) -> int | None:
    """The largest label count tried for strategy `s` below `n` (None: `n` is the smallest)."""
    smaller = [b for b in grid.get(s, []) if b < n]
    return max(smaller) if smaller else None


def _grid_point(grid: dict, s: str, n: int) -> str:
    if s not in grid:
        return "a point of the grid of label counts tried"
    prev = _below(grid, s, n)
    if prev is None:
        return "the smallest label count tried"
    return (f"a point of the grid of label counts tried; the next smaller count tried, {prev}, "
            f"falls short{'; none between was tried' if n - prev > 1 else ''}")


def _saving(sv: dict, rng: dict, grid: dict, baseline: str, goal: str) -> str:
    """The best active strategy's saving over the baseline, said as what it is: the ratio of
    two points of the grid of label counts tried, with the range the two counts' Monte-Carlo
    ranges (rule at estimate +- 2 SE) imply."""
    best, a, b = sv["best_active"], sv["active_images"], sv["baseline_images"]
    a_lo, a_hi = rng.get(best, [a, a])
    b_lo, b_hi = rng.get(BASELINE, [b, b])
    lo = b_lo / a_hi if (b_lo and a_hi) else None
    hi = b_hi / a_lo if (b_hi and a_lo) else None
    if not rng:
        mc = ""
    elif lo is not None and hi is not None:
        mc = (" (the same at ±2 MC SE)" if _x(lo) == _x(hi) == _x(sv["ratio"])
              else f" (MC range {_x(lo)}-{_x(hi)})")
    elif lo is not None:
        mc = (f" (MC range from {_x(lo)} up: at -2 MC SE {baseline} do not get there within "
              "the pool)")
    elif hi is not None:
        mc = f" (MC range up to {_x(hi)}: at -2 MC SE {best} does not get there within the pool)"
    else:
        mc = " (MC range unbounded: at -2 MC SE neither gets there within the pool)"
    pa, pb = _below(grid, best, a), _below(grid, BASELINE, b)
    if best not in grid or BASELINE not in grid:
        where = ""
    elif pa is not None and pb is not None:
        gap = "; none between was tried" if a - pa > 1 or b - pb > 1 else ""
        where = f" (the next smaller counts tried, {pa} and {pb}, fall short{gap})"
    else:
        where = f" ({a}: {_grid_point(grid, best, a)}; {b}: {_grid_point(grid, BASELINE, b)})"
    return (f" {best} needs {_x(sv['ratio'])} fewer labels than {baseline}{goal}{mc}: a ratio "
            f"of two points of the grid of label counts tried, {a} against {b}{where}.")


def pool_size(sweep: Sweep) -> int:
    return int((np.bincount(sweep.predictions.label) // 2).sum())


__all__ = ["TooLarge", "study", "study_candidates", "words", "curves_figure", "pool_size"]
