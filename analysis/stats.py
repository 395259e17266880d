"""Statistics of the tiny-validation-set study: correlation, selection regret, top-k overlap.

For every tiny subset (k images per class, column `val_{k}pc_top1`) of a sweep, against the
full validation split (`val_full_top1`), over the completed trials:

- Pearson, Spearman and Kendall coefficients with their scipy.stats p-values and percentile
  bootstrap confidence intervals (trials resampled with replacement);
- selection: the trial picked on the tiny subset and the best trial on the full split, the
  regret in points (best full-split accuracy minus the picked trial's, so >= 0; the issue's
  "picked minus best" is its negative) and whether it is the same trial;
- top-k overlap (k = 1, 5, 10): the share of the k best trials on the full split that are also
  among the k best on the tiny subset.

Tie rule (a tiny subset of 10 images has only 11 possible accuracies, so ties are common):
among trials tied on the top score, the pick is the first in trial order (results-table row
order); the same rule picks the best trial on the full split and orders the top-k lists. Beside
that deterministic pick we report the expected regret, and the probability of picking a trial
with the best full-split score, under a uniformly random choice among the tied trials.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from .load import FULL, Sweep, tiny_column

TOPK = (1, 5, 10)


def correlations(
    x: np.ndarray, y: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Pearson/Spearman/Kendall of (x, y) with p-values and bootstrap CIs over the pairs.

    Undefined values (fewer than 3 pairs, or a constant input) are NaN.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    out: dict[str, float] = {"n": float(n)}
    names = ("pearson", "spearman", "kendall")
    for name in names:
        for key in ("", "_p", "_lo", "_hi"):
            out[name + key] = float("nan")
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in zip(names, (sps.pearsonr, sps.spearmanr, sps.kendalltau)):
            res = fn(x, y)
            out[name], out[name + "_p"] = float(res.statistic), float(res.pvalue)
    if n_boot > 0:
        lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        boots = _bootstrap(x, y, n_boot, np.random.default_rng(seed))
        for name, values in boots.items():
            if np.isfinite(values).sum() >= max(10, n_boot // 10):
                out[name + "_lo"], out[name + "_hi"] = np.nanpercentile(values, [lo_q, hi_q])
    return out


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)


def _bootstrap(x, y, n_boot, rng, chunk: int = 256) -> dict[str, np.ndarray]:
    """Pearson and Spearman vectorised over resamples; Kendall through scipy per resample."""
    n = len(x)
    out = {k: np.empty(n_boot) for k in ("pearson", "spearman", "kendall")}
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        xs, ys = x[idx], y[idx]
        sl = slice(start, start + len(idx))
        out["pearson"][sl] = _rowwise_pearson(xs, ys)
        out["spearman"][sl] = _rowwise_pearson(
            sps.rankdata(xs, axis=1), sps.rankdata(ys, axis=1)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["kendall"][sl] = [sps.kendalltau(a, b).statistic for a, b in zip(xs, ys)]
    return out


def first_argmax(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the first (lowest index = earliest trial)."""
    return int(np.nanargmax(scores))  # numpy returns the first maximal index


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, ties broken by order (stable sort)."""
    return np.argsort(-scores, kind="stable")[:k]


@dataclass
class Selection:
    """Which trial a tiny subset picks, and what that costs on the full split."""

    picked: str  # trial picked on the tiny subset (first in order among ties)
    best: str  # best trial on the full split (first in order among ties)
    picked_tiny: float
    picked_full: float
    best_full: float
    regret_pt: float  # 100 * (best_full - picked_full) >= 0
    same_trial: bool
    n_tied: int  # trials sharing the top tiny score
    expected_regret_pt: float  # mean regret over a uniformly random pick among the tied
    p_best_random: float  # P(random tie-break picks a trial with the best full score)
    tied: list[str]


def select(tiny: np.ndarray, full: np.ndarray, trial_ids: list[str]) -> Selection:
    """Pick on `tiny`, judge on `full` (arrays in trial order, no NaN)."""
    tiny, full = np.asarray(tiny, dtype=float), np.asarray(full, dtype=float)
    ids = [str(t) for t in trial_ids]
    i, b = first_argmax(tiny), first_argmax(full)
    tied = np.flatnonzero(tiny == tiny[i])
    regret = 100 * (full[b] - full)
    return Selection(
        picked=ids[i], best=ids[b], picked_tiny=float(tiny[i]), picked_full=float(full[i]),
        best_full=float(full[b]), regret_pt=float(regret[i]), same_trial=bool(i == b),
        n_tied=len(tied), expected_regret_pt=float(regret[tied].mean()),
        p_best_random=float(np.mean(full[tied] == full[b])), tied=[ids[j] for j in tied],
    )


def topk_overlap(tiny: np.ndarray, full: np.ndarray, k: int) -> float:
    """|top-k on tiny ∩ top-k on full| / k (k capped at the number of trials)."""
    k = min(k, len(full))
    if k == 0:
        return float("nan")
    return len(set(top_k(tiny, k)) & set(top_k(full, k))) / k


@dataclass
class TinyResult:
    """Everything the report says about one tiny subset of one sweep."""

    sweep: str
    k: int  # images per class
    column: str
    n_trials: int
    corr: dict[str, float]
    selection: Selection
    overlap: dict[int, float]  # top-k overlap per k in TOPK

    def row(self) -> dict:
        sel = asdict(self.selection)
        sel["tied"] = " ".join(sel["tied"])
        row = {"sweep": self.sweep, "subset": f"{self.k}/class", "column": self.column,
               "n_trials": self.n_trials}
        row.update({k: v for k, v in self.corr.items() if k != "n"})
        row.update(sel)
        row.update({f"top{k}_overlap": v for k, v in self.overlap.items()})
        return row


def tiny_pairs(sweep: Sweep, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(tiny, full, trial_ids) of the completed trials that have both scores, trial order."""
    df = sweep.completed
    col = tiny_column(k)
    ok = df[col].notna() & df[FULL].notna()
    return (df.loc[ok, col].to_numpy(float), df.loc[ok, FULL].to_numpy(float),
            df.loc[ok, "trial_id"].astype(str).tolist())


def tiny_study(sweep: Sweep, *, n_boot: int = 1000, seed: int = 0) -> list[TinyResult]:
    """Correlation, selection and overlap for every tiny subset of the sweep."""
    results = []
    for k in sweep.tiny_ks:
        tiny, full, ids = tiny_pairs(sweep, k)
        if len(ids) == 0:
            continue
        results.append(TinyResult(
            sweep=sweep.name, k=k, column=tiny_column(k), n_trials=len(ids),
            corr=correlations(tiny, full, n_boot=n_boot, seed=seed),
            selection=select(tiny, full, ids),
            overlap={t: topk_overlap(tiny, full, t) for t in TOPK},
        ))
    return results


def tiny_table(results: list[TinyResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in results])


def fmt_p(p: float) -> str:
    """A p-value for humans: 'p < 1e-300' rather than 0."""
    if not np.isfinite(p):
        return "p = n/a"
    if p < 1e-300:
        return "p < 1e-300"
    if p < 1e-3:
        return f"p = {p:.1e}"
    return f"p = {p:.3f}"
