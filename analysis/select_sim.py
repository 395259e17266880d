"""`s4l-select --simulate`: how many labels each strategy needs, measured on a finished sweep.

The stored true labels play the person who labels: a strategy sees a label only when it asks for
that image. The yardstick is the validation-size study's held-out design (analysis/valsize.py),
so the numbers sit on the same scale as the report's: every draw makes a fresh random
class-stratified halving of the validation split; strategies label images from the pool half
only, the pick (most correct labeled images, random among ties, taken in expectation exactly as
the report does) is judged on the other half, which nothing labeled overlaps. A pick counts as
"within t points" when its held-out accuracy is within t of the held-out best; "best" is regret 0
(every candidate tied at the top of the held-out half counts as the best).

Rows: strategy x labeled images (a grid 1, 2, 3, 5, 7, 10, 15, 20, 30, ... up to the pool).
`report` is today's report's baseline: k random images of every true class (only at multiples
of the class count), the subsets the validation-size study draws. Labels needed: the smallest
grid point from which on the probability stays >= 0.95 (`needed`); None when even the whole pool
falls short (the held-out half is itself a finite sample). Monte-Carlo error: every probability
is a mean over draws of a per-draw value; its `_se` is the sd over draws / sqrt(draws).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .select import (
    CRITERIA,
    Candidates,
    criterion_scores,
    default_eps,
    onehot_votes,
    plurality,
    propose,
)
from .valsize import TARGET, TOLERANCES, _class_layout, _random_orders

DRAWS = 200  # MC SE of a probability near 0.95: sqrt(.95 * .05 / 200) = 0.015
BASELINE = "report"
NO_LABELS = "no labels"
INFORMATIVE_GAP = 0.25  # the pool's P(within 0.5 pt) must beat a label-free pick by this  # a uniformly random pick: what a yardstick gives without information
_EPS = 1e-9
_GRID = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)


def budget_grid(pool: int) -> list[int]:
    """1, 2, 3, ..., 9, 10, 15, 20, 25, 30, 40, ..., 90, 100, 150, ... up to and including
    `pool` (about 11 points per decade)."""
    out, scale = [], 1
    while True:
        for g in _GRID:
            if round(g * scale) >= pool:
                return sorted(set(out + [pool]))
            out.append(int(round(g * scale)))
        scale *= 10


def _halving(inv: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool positions, held-out positions, one random order per class of the pool)."""
    order = _random_orders(inv, 1, rng)[0]
    counts = np.bincount(inv)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pool_idx = np.concatenate([order[s:s + n // 2] for s, n in zip(starts, counts)])
    held = np.setdiff1d(np.arange(len(inv)), pool_idx)
    # the report's k-per-class subsets: the first k of every class in this order
    per_class = [order[s:s + n // 2] for s, n in zip(starts, counts)]
    return pool_idx, held, per_class


def _sequence(strategy, c: Candidates, pool, rng, step, eps, vote, onehot) -> np.ndarray:
    """The order in which `strategy` labels the whole pool (labels revealed as it asks)."""
    if strategy in ("random", "stratified"):  # they never look at labels
        return propose(strategy, c, pool, np.zeros(0, np.int64), np.zeros(0, np.int64),
                       len(pool), rng, vote=vote)
    labeled = np.zeros(0, dtype=np.int64)
    while len(labeled) < len(pool):
        nxt = propose(strategy, c, pool, labeled, c.label[labeled], step, rng, eps=eps,
                      onehot=onehot)
        labeled = np.concatenate([labeled, nxt])
    return labeled


def _outcomes(correct: np.ndarray, order: np.ndarray, budgets: list[int], held: np.ndarray,
              chance: bool = False) -> np.ndarray:
    """[len(budgets), 2 + len(TOLERANCES)]: expected regret (pt), P(best), P(within t) of the
    pick after each budget, in expectation over the pick's tie-break. `chance`: a pick among
    all candidates at random (no labels)."""
    h = correct[:, held].sum(axis=1).astype(np.float64)
    regret = 100 * (h.max() - h) / len(held)
    cum = np.cumsum(correct[:, order], axis=1)  # [T, n] correct among the first i+1 labels
    out = np.empty((len(budgets), 2 + len(TOLERANCES)))
    for i, b in enumerate(budgets):
        counts = np.zeros(len(h)) if chance else cum[:, b - 1]
        top = counts == counts.max()
        r = regret[top]
        out[i] = [r.mean(), (r <= _EPS).mean(), *[(r <= t + _EPS).mean() for t in TOLERANCES]]
    return out


def simulate(c: Candidates, strategies=("random", "stratified", "disagreement"),
             n_draws: int = DRAWS, seed: int = 0, step: int | None = None, log=None
             ) -> pd.DataFrame:
    """One row per strategy and labeled-image budget (see the module doc); `step`: images an
    active strategy asks for at a time (default: 1 up to a 100-image pool, then pool / 100,
    so a draw costs about 100 posterior updates whatever the pool; within a step the images
    are taken in the order of their entropy, so smaller budgets are still read off)."""
    rng = np.random.default_rng(seed)
    inv, counts, _ = _class_layout(c.label)
    if counts.min() < 2:
        raise ValueError("the held-out yardstick needs >= 2 validation images of every class")
    n_pool = int((counts // 2).sum())
    budgets = budget_grid(n_pool)
    n_cls = len(counts)
    kmax = int((counts // 2).min())
    report_budgets = [k * n_cls for k in range(1, kmax + 1)
                      if k * n_cls in budgets or k in (1, 2, 5, 10, 20, 50, 100, kmax)]
    step = step or max(1, n_pool // 100)
    eps = default_eps(c)
    vote = plurality(c.pred, c.n_classes)
    onehot = onehot_votes(c.pred, c.n_classes) if "disagreement" in strategies else None
    correct = c.correct
    res = {s: [] for s in strategies}
    res[BASELINE] = []
    res[NO_LABELS] = []
    for d in range(n_draws):
        pool, held, per_class = _halving(inv, rng)
        for s in strategies:
            order = _sequence(s, c, pool, rng, step, eps, vote, onehot)
            res[s].append(_outcomes(correct, order, budgets, held))
        rep = [np.concatenate([pc[:k] for pc in per_class]) for k in
               [b // n_cls for b in report_budgets]]
        res[BASELINE].append(np.stack([_outcomes(correct, o, [len(o)], held)[0] for o in rep]))
        res[NO_LABELS].append(_outcomes(correct, pool[:1], [1], held, chance=True))
        if log and (d + 1) % max(1, n_draws // 5) == 0:
            log(f"select: {d + 1}/{n_draws} draws")
    rows = []
    for s, per_draw in res.items():
        arr = np.stack(per_draw)  # [draws, budgets, 2 + tolerances]
        bs = report_budgets if s == BASELINE else [0] if s == NO_LABELS else budgets
        for i, b in enumerate(bs):
            v = arr[:, i, :]
            m = v.mean(axis=0)
            se = (v.std(axis=0, ddof=1) / np.sqrt(len(v)) if len(v) > 1
                  else np.zeros(v.shape[1]))
            row = {"strategy": s, "images": int(b), "draws": len(v),
                   "regret_mean_pt": m[0], "regret_mean_pt_se": se[0],
                   "p_best": m[1], "p_best_se": se[1]}
            for j, t in enumerate(TOLERANCES):
                row[f"p_within_{t:g}pt"] = m[2 + j]
                row[f"p_within_{t:g}pt_se"] = se[2 + j]
            rows.append(row)
    return pd.DataFrame(rows)


def needed(table: pd.DataFrame, column: str = "p_within_0.5pt", target: float = TARGET,
           shift: float = 0.0) -> dict[str, int | None]:
    """Per strategy: the smallest budget from which on `column` stays >= target (None: never).
    `shift`: judge `column + shift x its SE` instead (+-2: the Monte-Carlo range of the answer)."""
    out = {}
    for s, g in table[table["strategy"] != NO_LABELS].groupby("strategy", sort=False):
        g = g.sort_values("images")
        ok = (g[column] + shift * g[f"{column}_se"] >= target).to_numpy()
        bad = np.nonzero(~ok)[0]
        first = 0 if len(bad) == 0 else bad[-1] + 1
        out[s] = int(g["images"].iloc[first]) if first < len(g) else None
    return out


def ceiling(table: pd.DataFrame, column: str = "p_within_0.5pt") -> tuple[float, float]:
    """(value, SE) of `column` when the whole pool is labeled: every strategy has then labeled
    the same images and picks alike, so it is the most any of them can reach on this yardstick
    (below 0.95 when the held-out half cannot resolve the trials)."""
    g = table[~table["strategy"].isin([BASELINE, NO_LABELS])]
    top = g[g["images"] == g["images"].max()]
    return float(top[column].mean()), float(top[f"{column}_se"].mean())


def chance(table: pd.DataFrame, column: str = "p_within_0.5pt") -> tuple[float, float]:
    """(value, SE) of `column` for a pick made without any label."""
    row = table[table["strategy"] == NO_LABELS].iloc[0]
    return float(row[column]), float(row[f"{column}_se"])


def informative(table: pd.DataFrame, column: str = "p_within_0.5pt") -> bool:
    """Whether labeling the whole pool does clearly better than no labels (by 0.25 and by 3
    SE): otherwise the held-out yardstick hardly tells the trials apart, and "labels to do as
    well as the pool" says little (a single label may already be within its noise)."""
    (top, se_top), (low, se_low) = ceiling(table, column), chance(table, column)
    return top - low >= max(INFORMATIVE_GAP, 3 * float(np.hypot(se_top, se_low)))


def ceiling_target(table: pd.DataFrame, column: str = "p_within_0.5pt") -> float:
    """The level that counts as doing as well as the whole pool: its ceiling less 2 SE."""
    value, se = ceiling(table, column)
    return value - 2 * max(se, 1e-3)


def needed_for_ceiling(table: pd.DataFrame, column: str = "p_within_0.5pt"
                       ) -> dict[str, int | None]:
    """Per strategy: the fewest labels from which on `column` stays within 2 SE of the
    ceiling (what labeling the whole pool gives): labels to do as well as the whole pool."""
    return needed(table, column, target=ceiling_target(table, column))


def needed_range(table: pd.DataFrame, column: str = "p_within_0.5pt", target: float = TARGET
                 ) -> dict[str, list[int | None]]:
    """Per strategy: [labels needed judged at estimate + 2 SE, at estimate - 2 SE]."""
    lo, hi = (needed(table, column, target=target, shift=sh) for sh in (2.0, -2.0))
    return {s: [lo[s], hi[s]] for s in lo}


def savings(need: dict[str, int | None], active=("disagreement",)) -> dict:
    """The best active strategy against the report's baseline: labels and their ratio (None
    when either never gets there)."""
    base = need.get(BASELINE)
    got = {s: need.get(s) for s in active if need.get(s) is not None}
    if not got:
        return {"best_active": None, "active_images": None, "baseline_images": base,
                "ratio": None}
    best = min(got, key=got.get)
    return {"best_active": best, "active_images": got[best], "baseline_images": base,
            "ratio": (base / got[best]) if base else None}


def criteria_table(c: Candidates, atc_draws: int = 50, seed: int = 0) -> pd.DataFrame:
    """Each label-free criterion on the sweep: the candidate it ranks first, its regret against
    the best on the full validation split (points; ties at the top taken in expectation), and
    Spearman's rho between the criterion and full-split accuracy. `atc` fits its thresholds on
    1 random labeled image per class (the mean over `atc_draws` draws)."""

    acc = 100 * c.correct.mean(axis=1)
    cols = np.arange(len(c.label))
    rows = []
    for crit in CRITERIA:
        if crit == "rotation" and (c.has_rot is None or not c.has_rot.any()):
            continue
        if crit == "atc":
            rng = np.random.default_rng(seed)
            inv, _, _ = _class_layout(c.label)
            scores = []
            for _ in range(atc_draws):
                order = _random_orders(inv, 1, rng)[0]
                first = np.concatenate([order[inv[order] == k][:1] for k in np.unique(inv)])
                scores.append(criterion_scores("atc", c, cols, first, c.label[first]))
            runs = [_criterion_row(crit, sc, acc) for sc in scores]
            # means over the draws (Spearman over those where it is defined)
            row = {k: float(np.nanmean([r[k] for r in runs])) if any(
                np.isfinite(r[k]) for r in runs) else float("nan")
                for k in runs[0] if k != "criterion"}
            rows.append({"criterion": crit, **row, "trials": int(np.isfinite(scores[0]).sum())})
            continue
        sc = criterion_scores(crit, c, cols)
        rows.append({**_criterion_row(crit, sc, acc), "trials": int(np.isfinite(sc).sum())})
    return pd.DataFrame(rows)


def _criterion_row(crit: str, score: np.ndarray, acc: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    ok = np.isfinite(score)
    s, a = score[ok], acc[ok]
    top = s == s.max()
    regret = a.max() - a[top]
    rho = spearmanr(s, a).statistic if len(s) > 2 and np.ptp(s) > 0 and np.ptp(a) > 0 \
        else np.nan
    return {"criterion": crit, "regret_pt": float(regret.mean()),
            "p_best": float((regret <= _EPS).mean()),
            "p_within_0.5pt": float((regret <= 0.5 + _EPS).mean()),
            "spearman": float(rho)}


__all__ = ["chance", "informative", "NO_LABELS", "criteria_table", "simulate", "needed", "needed_range", "needed_for_ceiling",
           "ceiling", "savings", "budget_grid", "DRAWS", "BASELINE"]
