"""Statistics of the tiny-validation-set study, against two yardsticks and the right null.

For every tiny subset S (k images per class, column `val_{k}pc_top1`) of a sweep, over the
completed trials, the tiny-subset scores are compared with two yardsticks:

- `nested` (the paper's Figure 3): the full validation split, `val_full_top1`, which CONTAINS S;
- `disjoint`: the rest of the split (the examples not in S), scored from the per-example
  predictions and the subset's mask (`Predictions.tiny`). It exists only when the sweep has
  predictions.npz and splits.npz.

Correlations (`correlations`). Pearson, Spearman and Kendall (tau-b) coefficients with
percentile-bootstrap intervals over trials (one shared set of `n_boot` resamples of the trials,
`BOOT` = 2000 by default; resamples on which a coefficient is undefined are dropped, and the
interval is NaN when fewer than max(10, n_boot / 10) remain). Beside each interval endpoint is
its Monte-Carlo standard error (`*_lo_mcse`, `*_hi_mcse`): the number of bootstrap values below
the true q-quantile is Binomial(B, q), so the empirical quantile lies between the order
statistics of ranks B*q -/+ sqrt(B*q*(1-q)) with probability ~68% (+-1 SE); half the distance
between them estimates the endpoint's SE (the order-statistic interval of a quantile, as in
Maritz-Jarrett or `posterior::mcse_quantile`). scipy.stats.bootstrap(paired=True) fits the API
but was not used: it resamples once per statistic (three passes instead of one shared set, and
a different set per yardstick), it returns a NaN interval as soon as one resample is degenerate
(common with few trials and a 10-image subset), and it was no faster (measured, 1000 trials,
2000 resamples: 0.14 s Pearson + 0.68 s Kendall in scipy vs 1.1 s for all three here; 0.14 s
for 70 trials, where Kendall's tau-b is vectorised over resamples).

What each p-value tests (stored in `Yardstick.null` / `Yardstick.test`):

- nested: H0 = all trials are equally good: example j is answered correctly by every trial
  independently with the same rate p_j, estimated by its observed column mean over the trials.
  Under H0 the subset score still correlates with the full-split score, because the full split
  contains the subset: `null_r` = cov/sd/sd with cov(tiny, full) = sum_{j in S} v_j / (|S| N),
  var(tiny) = sum_{j in S} v_j / |S|^2, var(full) = sum_all v_j / N^2, v_j = p_j (1 - p_j); that
  is null_r = sqrt(sum_S v_j / sum_all v_j), about sqrt(|S| / N) (the "sqrt(subset/split)
  approximation": a population value; the mean of the sample r of T trials over the simulated
  null below is pulled toward 0 and carries Monte-Carlo error, e.g. 0.11 vs 0.10 on digits
  1/class). The p-value is tested
  against the simulated null, so the report shows only ITS mean (`pearson_null`, "r under H0 =
  mean r of the simulated null") wherever it names the r that overlap alone gives; the formula
  stays in tiny_subsets.csv as `null_r`, documented as the approximation. scipy's
  independence tests reject even when all trials are equally good, given enough trials: they
  test r = 0, which the overlap alone already refutes. (The evidence beyond the overlap is
  the correlation of the subset with the rest of the split: the disjoint yardstick.) The test
  is a Monte-Carlo parametric bootstrap of H0, one-sided (r above the simulated null's draws):
  under H0 a trial's correct counts on S and on the rest are independent Poisson-binomial
  variables, whose exact distributions are computed once (FFT product of the per-example
  polynomials); every draw samples the counts of all T trials from them (2 x T numbers instead
  of T x N Bernoulli draws) and recomputes r, rho and tau; p = (1 + #{draws >= observed}) /
  (1 + #draws), so its floor is 1 / (1 + draws). The null values of r, rho and tau are the
  means of the draws. Cost (1000
  trials x 5000 examples, 2000 draws, 2 cores): 0.006 s for the distributions, 0.2 s to sample,
  1-1.5 s for the three coefficients (Kendall dominates); shuffling each example's column
  across trials instead costs 0.07 s per draw (140 s for 2000). Level, measured on 2000 null
  sweeps (30 equally good trials, 10 classes x 50 images, 5/class subset): 5.5% at 5% (SE
  0.5%); the column-shuffle permutation test gave 4.0% (500 sweeps) and Fisher z around
  atanh(null_r) 5.7%, while scipy's pearsonr rejects ~40% of them. Fisher z was not used: it
  assumes bivariate normality, which a 10-image score with 11 possible values is not, and has
  no exact null for rho and tau. Without predictions the nested p-values are NaN
  ("unavailable"): the independence test is never reported for a subset inside its yardstick.
- disjoint: the same H0 and the same draws; subset and yardstick share no example, so the null
  correlation is 0 (up to the draws' small-sample bias, which the Monte-Carlo test includes).

`correlations(x, y)` called on its own (no `null_draws`) keeps scipy.stats' two-sided
independence tests: right for two scores on disjoint samples, wrong for a subset against a set
that contains it.

Selection (`select`). Headline: a uniformly random choice among the trials tied at the top of
the tiny subset (a 10-image subset has only 11 possible accuracies, so ties are common), in
expectation: `expected_regret_pt` (best yardstick score minus the yardstick score of the pick,
in points, averaged over the tied trials) and `p_pick_best` (the share of the tied trials whose
yardstick score is the top one; ties at the top of the yardstick all count as best). These do
not depend on trial order. Secondary, for Figure 3's red mark only: `order_pick`, the first of
the tied trials in trial order (results-table row order), with its regret and whether it is a
best trial. `best` is the first best trial on the yardstick in trial order (`best_tied` lists
all of them). Both yardsticks get a selection; on the disjoint one "best" is best on the rest.

Top-k overlap (`topk_overlap`): the share of the k best trials on the yardstick that are among
the k best on the subset, as an EXPECTATION over uniformly random tie-breaking, independently on
the two rankings (exact: sum_i P_subset(i) P_yard(i) / k, P(i) = the probability that trial i is
in that top k; `p_in_top_k`). With 24 of 30 trials tied at 100% on a 10-image subset, a stable
sort would make the overlap a statement about trial order.

Exact binomial intervals (`binom_ci`, Clopper-Pearson): for the top tiny score (shared by the
tied trials; named by the order pick) and for the tiny score of the best full-split trial.

McNemar (`mcnemar`): the two best trials on the tiny subset (the first two of a stable sort by
tiny score, i.e. ties broken by trial order; when several trials tie at the top, any two of
them have equal subset scores, so the test asks whether the subset could separate them at all)
compared example by example on the subset and on the rest of the split: discordant counts, the
exact McNemar p (scipy.stats.binomtest on the discordant pairs), and a sentence saying whether
the subset can tell them apart (with d discordant images the smallest possible p is 2 * 0.5^d).

Few-points warnings (`warnings_for`): r moves by more than half its bootstrap interval's width
when the best one or two trials by yardstick score are left out; most trials sit at chance;
fewer than `MIN_TRIALS` trials behind a statistic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from .load import FULL, Sweep, tiny_column
from .valsize import _gather_counts, stratified_subsets

TOPK = (1, 5, 10)
BOOT = 2000  # bootstrap resamples and Monte-Carlo null draws
MIN_TRIALS = 10  # fewer trials behind a statistic: a warning
CHANCE_SE = 2.0  # "at chance": full-split accuracy within this many binomial SE of 1/classes
LEVEL = 0.95
TIE_TOL = 1e-9  # accuracies are multiples of 1/n, n <= 1e6: spacing >= 1e-6 >> this
NAMES = ("pearson", "spearman", "kendall")

NESTED_NULL = ("all trials equally good (each example's correctness exchangeable across trials "
               "at its observed rate); keeps the overlap of subset and yardstick")
DISJOINT_NULL = ("all trials equally good (each example's correctness exchangeable across "
                 "trials at its observed rate); subset and yardstick share no example, r = 0")
MC_TEST = "Monte-Carlo parametric bootstrap of the null, one-sided (coefficient above the null)"
UNAVAILABLE = ("unavailable: the overlap-aware null needs per-example predictions and the "
               "subset's mask (predictions.npz, splits.npz); the independence test would be "
               "the wrong null for a subset inside its yardstick")
INDEPENDENCE = "independence of the two scores (scipy.stats, two-sided)"
NO_DRAWS = "not computed: no null draws were asked for (--boot 0)"


# --- correlations -------------------------------------------------------------------------------

def correlations(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_boot: int = BOOT,
    seed: int = 0,
    level: float = LEVEL,
    null_draws: tuple[np.ndarray, np.ndarray] | None = None,
    p_values: bool = True,
    min_ci_n: int = MIN_TRIALS,
) -> dict[str, float]:
    """Pearson/Spearman/Kendall of (x, y) with p-values and bootstrap CIs over the pairs.

    Keys per coefficient NAME: NAME, NAME_p, NAME_lo, NAME_hi (percentile bootstrap, `level`),
    NAME_lo_mcse, NAME_hi_mcse (Monte-Carlo SE of the endpoints), NAME_null (the coefficient's
    value under the tested null); plus n, n_boot.

    p-values: with `null_draws` = (x*, y*), arrays [draws, n] simulated under the null, a
    one-sided Monte-Carlo p (coefficient >= observed) and NAME_null = mean over the draws;
    with `p_values=False`, NaN (no valid null available); otherwise scipy.stats' two-sided
    independence tests (right only when x and y share no data) with NAME_null = 0.
    Undefined values (fewer than 3 pairs, or a constant input) are NaN, and so are the
    intervals below `min_ci_n` pairs: a percentile bootstrap over a handful of pairs does not
    hold its level (with 3 pairs every resample's r is +-1, undefined or the observed r, so the
    "interval" could exclude 0 beside a p of 0.3).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    out: dict[str, float] = {"n": float(n), "n_boot": float(max(n_boot, 0))}
    for name in NAMES:
        for key in ("", "_p", "_null", "_lo", "_hi", "_lo_mcse", "_hi_mcse"):
            out[name + key] = float("nan")
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in zip(NAMES, (sps.pearsonr, sps.spearmanr, sps.kendalltau)):
            res = fn(x, y)
            out[name] = float(res.statistic)
            if null_draws is None and p_values:
                out[name + "_p"], out[name + "_null"] = float(res.pvalue), 0.0
    if null_draws is not None and p_values:
        xs, ys = (np.asarray(a, dtype=float)[:, ok] for a in null_draws)
        for name, values in rowwise_stats(xs, ys).items():
            values = values[np.isfinite(values)]
            if len(values):
                # >= with a tolerance: coefficients of discrete scores tie exactly
                hits = np.sum(values >= out[name] - 1e-12)
                out[name + "_p"] = float((1 + hits) / (1 + len(values)))
                out[name + "_p_min"] = float(1 / (1 + len(values)))  # no draw reached r
                out[name + "_null"] = float(values.mean())
    if n_boot > 0 and n >= min_ci_n:
        boots = _bootstrap(x, y, n_boot, np.random.default_rng(seed))
        for name, values in boots.items():
            lo, hi, lo_se, hi_se = percentile_ci(values, level, min_finite=max(
                10, min(n_boot // 10, KENDALL_SCIPY_DRAWS // 2)))
            out[name + "_lo"], out[name + "_hi"] = lo, hi
            out[name + "_lo_mcse"], out[name + "_hi_mcse"] = lo_se, hi_se
    return out


def percentile_ci(values: np.ndarray, level: float = LEVEL, *, min_finite: int = 10):
    """(lo, hi, lo_mcse, hi_mcse): percentile interval of the finite values and the
    Monte-Carlo SE of each endpoint (half the spread of the order statistics of ranks
    B*q -/+ sqrt(B*q*(1-q)); see the module docstring). NaN when too few finite values."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    b = len(v)
    if b < max(min_finite, 2):
        return (float("nan"),) * 4
    qs = ((1 - level) / 2, (1 + level) / 2)
    lo, hi = np.percentile(v, [100 * q for q in qs])
    se = []
    for q in qs:
        s = np.sqrt(b * q * (1 - q))
        i = int(np.clip(np.floor(b * q - s), 0, b - 1))
        j = int(np.clip(np.ceil(b * q + s), 0, b - 1))
        se.append(float(v[j] - v[i]) / 2)
    return float(lo), float(hi), se[0], se[1]


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # a constant row has no correlation (centering it can leave rounding noise, not zeros)
    const = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(~const & (den > 0), (a * b).sum(axis=1) / den, np.nan)


KENDALL_VECTOR_MAX = 120  # above this many pairs per row, scipy per row is faster
# Above KENDALL_VECTOR_MAX trials Kendall's tau goes through scipy once per resample (~0.7 ms
# each: 12 of the 13 s of a 1000-trial report at 2000 resamples); it then uses only the first
# KENDALL_SCIPY_DRAWS resamples and null draws, and its interval endpoints and p-value carry
# the correspondingly larger Monte-Carlo errors (computed from the draws it used). Pearson and
# Spearman, the figures the report leads with, keep every draw.
KENDALL_SCIPY_DRAWS = 250


def _rowwise_kendall(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every row pair (equals scipy.stats.kendalltau's default)."""
    rows, n = a.shape
    out = np.empty(rows)
    if n <= KENDALL_VECTOR_MAX:
        chunk = max(1, 2_000_000 // (n * n))
        for s in range(0, rows, chunk):
            sa = np.sign(a[s:s + chunk, :, None] - a[s:s + chunk, None, :]).astype(np.int8)
            sb = np.sign(b[s:s + chunk, :, None] - b[s:s + chunk, None, :]).astype(np.int8)
            num = (sa * sb).sum(axis=(1, 2), dtype=np.int64)
            den = np.sqrt((sa != 0).sum(axis=(1, 2), dtype=np.int64).astype(float)
                          * (sb != 0).sum(axis=(1, 2), dtype=np.int64))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[s:s + chunk] = np.where(den > 0, num / den, np.nan)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out[:] = [sps.kendalltau(u, v).statistic for u, v in zip(a, b)]
    return out


def rowwise_stats(xs: np.ndarray, ys: np.ndarray, chunk: int = 256,
                  first_row: int = 0) -> dict[str, np.ndarray]:
    """Pearson, Spearman and Kendall of every row pair of xs, ys [rows, n] (NaN if undefined).

    With more than KENDALL_VECTOR_MAX columns, Kendall only for the rows numbered below
    KENDALL_SCIPY_DRAWS (`first_row`: the number of the first row, when called in chunks)."""
    rows, n = xs.shape
    out = {k: np.empty(rows) for k in NAMES}
    out["kendall"][:] = np.nan
    for s in range(0, rows, chunk):
        a, b = xs[s:s + chunk], ys[s:s + chunk]
        sl = slice(s, s + len(a))
        out["pearson"][sl] = _rowwise_pearson(a, b)
        out["spearman"][sl] = _rowwise_pearson(sps.rankdata(a, axis=1), sps.rankdata(b, axis=1))
        m = len(a) if n <= KENDALL_VECTOR_MAX else max(0, KENDALL_SCIPY_DRAWS - first_row - s)
        if m > 0:
            out["kendall"][s:s + min(m, len(a))] = _rowwise_kendall(a[:m], b[:m])
    return out


def _bootstrap(x, y, n_boot, rng, chunk: int = 256) -> dict[str, np.ndarray]:
    """Coefficients on n_boot resamples of the pairs (one shared set of resamples)."""
    n = len(x)
    parts = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        parts.append(rowwise_stats(x[idx], y[idx], chunk=chunk, first_row=start))
    return {k: np.concatenate([p[k] for p in parts]) for k in NAMES}


# --- the overlap-aware null ---------------------------------------------------------------------

def null_r(rates: np.ndarray, mask: np.ndarray) -> float:
    """Pearson r of subset score and full-split score when all trials are equally good.

    `rates` [N]: each example's probability of being answered correctly (the same for every
    trial, independently); `mask` [N] bool: the subset. sqrt(sum_S v / sum_all v), v = p(1-p).
    """
    v = np.asarray(rates, dtype=float) * (1 - np.asarray(rates, dtype=float))
    total, sub = v.sum(), v[np.asarray(mask, dtype=bool)].sum()
    if total <= 0 or sub <= 0:
        return float("nan")
    return float(np.sqrt(sub / total))


def poisson_binomial_pmf(rates: np.ndarray) -> np.ndarray:
    """P(sum = s), s = 0..len(rates), of independent Bernoulli(rates) (exact up to rounding).

    The product of the polynomials (1 - p_j + p_j z), pairwise by levels: direct convolution
    while short, FFT once long; O(N log^2 N).
    """
    p = np.asarray(rates, dtype=float).ravel()
    n, ones = len(p), int(np.sum(p >= 1))
    p = p[(p > 0) & (p < 1)]
    poly = np.stack([1 - p, p], axis=1) if len(p) else np.ones((1, 1))
    size = 1 << max(0, int(np.ceil(np.log2(len(poly)))))
    if size > len(poly):  # pad with the identity polynomial 1
        pad = np.zeros((size - len(poly), poly.shape[1]))
        pad[:, 0] = 1
        poly = np.vstack([poly, pad])
    while len(poly) > 1:
        a, b = poly[0::2], poly[1::2]
        length = poly.shape[1]
        if length <= 32:
            prod = np.zeros((len(a), 2 * length - 1))
            for i in range(length):
                prod[:, i:i + length] += a[:, i:i + 1] * b
        else:
            nfft = 1 << int(np.ceil(np.log2(2 * length - 1)))
            prod = np.fft.irfft(np.fft.rfft(a, nfft) * np.fft.rfft(b, nfft), nfft)
            prod = np.clip(prod[:, :2 * length - 1], 0, None)
        poly = prod
    pmf = poly[0][: len(p) + 1]
    out = np.zeros(n + 1)
    out[ones:ones + len(pmf)] = pmf
    return out / out.sum()


@dataclass
class NullModel:
    """H0 "all trials equally good": per-trial correct counts on the subset and on the rest."""

    rates: np.ndarray  # [N] per-example rate (column mean over the trials)
    mask: np.ndarray  # [N] bool, the subset
    r: float  # null_r: Pearson r of subset and full-split score under H0
    tiny_cdf: np.ndarray
    rest_cdf: np.ndarray

    @classmethod
    def from_predictions(cls, top1: np.ndarray, mask: np.ndarray) -> NullModel:
        rates = np.asarray(top1, dtype=bool).mean(axis=0)
        mask = np.asarray(mask, dtype=bool)
        return cls(rates=rates, mask=mask, r=null_r(rates, mask),
                   tiny_cdf=np.cumsum(poisson_binomial_pmf(rates[mask])),
                   rest_cdf=np.cumsum(poisson_binomial_pmf(rates[~mask])))

    def draw(self, n_trials: int, n_draws: int, rng: np.random.Generator):
        """(tiny, rest, full) accuracies [n_draws, n_trials] of trials drawn under H0."""
        def counts(cdf):
            u = rng.random((n_draws, n_trials)) * cdf[-1]
            return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)

        n_s, n_all = int(self.mask.sum()), len(self.mask)
        t, r = counts(self.tiny_cdf), counts(self.rest_cdf)
        with np.errstate(invalid="ignore", divide="ignore"):
            rest = r / (n_all - n_s) if n_all > n_s else np.full(t.shape, np.nan)
        return t / max(n_s, 1), rest, (t + r) / n_all


# --- selection ----------------------------------------------------------------------------------

def first_argmax(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the first (lowest index = earliest trial)."""
    return int(np.nanargmax(scores))  # numpy returns the first maximal index


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, ties broken by order (stable sort)."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]


@dataclass
class Selection:
    """What picking on the tiny subset costs on one yardstick.

    Headline (independent of trial order): a uniformly random pick among the trials tied at
    the top of the subset, in expectation. Secondary: `order_pick*`, the first tied trial in
    trial order (what Figure 3 marks red).
    """

    yardstick: str  # "nested" (full split) or "disjoint" (rest of the split)
    n_trials: int
    top_tiny: float  # the top subset score
    n_tied: int  # trials sharing it
    tied: list[str]  # their ids, trial order
    expected_regret_pt: float  # HEADLINE: mean over the tied of 100 * (best_yard - yard)
    p_pick_best: float  # HEADLINE: share of the tied trials that are best on the yardstick
    expected_yard: float  # mean yardstick score of the tied trials
    best: str  # first best trial on the yardstick in trial order
    best_yard: float
    n_best: int  # trials sharing the top yardstick score (any of them counts as best)
    best_tied: list[str]
    order_pick: str  # SECONDARY: first tied trial in trial order (Figure 3's red point)
    order_pick_tiny: float
    order_pick_yard: float
    order_pick_regret_pt: float
    order_pick_is_best: bool

    def row(self) -> dict:
        return {
            "n_tied": self.n_tied, "tied": " ".join(self.tied), "top_tiny": self.top_tiny,
            "expected_regret_pt": self.expected_regret_pt, "p_pick_best": self.p_pick_best,
            "expected_yard": self.expected_yard, "best": self.best, "best_yard": self.best_yard,
            "n_best": self.n_best, "best_tied": " ".join(self.best_tied),
            "order_pick": self.order_pick, "order_pick_tiny": self.order_pick_tiny,
            "order_pick_yard": self.order_pick_yard,
            "order_pick_regret_pt": self.order_pick_regret_pt,
            "order_pick_is_best": self.order_pick_is_best,
        }


def select(
    tiny: np.ndarray, full: np.ndarray, trial_ids: list[str], *, yardstick: str = "nested"
) -> Selection:
    """Pick on `tiny`, judge on `full` (the yardstick; arrays in trial order, no NaN)."""
    tiny, yard = np.asarray(tiny, dtype=float), np.asarray(full, dtype=float)
    ids = [str(t) for t in trial_ids]
    i, b = first_argmax(tiny), first_argmax(yard)
    tied = np.flatnonzero(tiny >= tiny[i] - TIE_TOL)
    best = np.flatnonzero(yard >= yard[b] - TIE_TOL)
    regret = 100 * (yard[b] - yard)
    is_best = yard >= yard[b] - TIE_TOL
    return Selection(
        yardstick=yardstick, n_trials=len(ids), top_tiny=float(tiny[i]), n_tied=len(tied),
        tied=[ids[j] for j in tied], expected_regret_pt=float(regret[tied].mean()),
        p_pick_best=float(is_best[tied].mean()), expected_yard=float(yard[tied].mean()),
        best=ids[b], best_yard=float(yard[b]), n_best=len(best), best_tied=[ids[j] for j in best],
        order_pick=ids[i], order_pick_tiny=float(tiny[i]), order_pick_yard=float(yard[i]),
        order_pick_regret_pt=float(regret[i]), order_pick_is_best=bool(is_best[i]),
    )


def p_in_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """P(trial i is among the k highest scores) when ties are broken uniformly at random.

    1 for a trial strictly inside the top k, 0 for one strictly outside, and for the tie
    group that straddles the k-th place (scores equal within TIE_TOL) the slots left there
    divided by the group's size. Sums to min(k, n); independent of trial order. NaN ranks last.
    """
    s = np.asarray(scores, dtype=float)
    n = len(s)
    k = min(max(int(k), 0), n)
    out = np.zeros(n)
    if k == 0:
        return out
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, kind="stable")
    v = s[order]
    # tie groups of the sorted scores: a new group where the gap exceeds TIE_TOL
    with np.errstate(invalid="ignore"):
        gap = np.diff(v) < -TIE_TOL
    starts = np.flatnonzero(np.r_[True, gap])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends):  # a trials rank above this group, b - a in it
        if a >= k:
            break
        out[order[a:b]] = (min(b, k) - a) / (b - a)
    return out


def topk_overlap(tiny: np.ndarray, full: np.ndarray, k: int) -> float:
    """Expected |top-k on tiny ∩ top-k on full| / k under uniformly random tie-breaking.

    k is capped at the number of trials. Ties (scores equal within TIE_TOL) at the k-th place
    of either ranking are broken uniformly at random, independently on the two rankings, and
    the overlap is the exact expectation over those tie-breaks: with P_tiny(i) and P_full(i)
    the probabilities that trial i is in each top k (`p_in_top_k`: 1 strictly inside, slots
    left / tie-group size for the group straddling the cutoff, 0 otherwise),
    E|A ∩ B| / k = sum_i P_tiny(i) P_full(i) / k. It does not depend on trial order; without
    ties at either cutoff it is the plain set overlap. E.g. tiny (1, 1, 1, 0), full
    (3, 2, 1, 0), k = 2: P_tiny = (2/3, 2/3, 2/3, 0), P_full = (1, 1, 0, 0), overlap 2/3.
    """
    k = min(k, len(full))
    if k == 0:
        return float("nan")
    return float(np.dot(p_in_top_k(tiny, k), p_in_top_k(full, k)) / k)


# --- exact intervals and McNemar ----------------------------------------------------------------

def binom_ci(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion; (nan, nan) when n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level,
                                                            method="exact")
    return float(ci.low), float(ci.high)


@dataclass
class BinomCI:
    """A subset accuracy as correct / n with its exact interval."""

    trial: str
    correct: int
    n: int
    acc: float
    lo: float
    hi: float
    level: float = LEVEL
    source: str = "mask"  # "mask": counted from the predictions; "table": round(acc * n)


def _binom(trial: str, correct: int, n: int, source: str) -> BinomCI:
    lo, hi = binom_ci(correct, n)
    return BinomCI(trial=trial, correct=int(correct), n=int(n),
                   acc=correct / n if n else float("nan"), lo=lo, hi=hi, source=source)


def min_mcnemar_p(discordant: int) -> float:
    """The smallest exact two-sided McNemar p with this many discordant examples."""
    return 1.0 if discordant <= 0 else float(min(1.0, 2 * 0.5 ** discordant))


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p: binomial test of a_only among the discordant pairs."""
    d = int(a_only) + int(b_only)
    return 1.0 if d == 0 else float(sps.binomtest(int(a_only), d, 0.5).pvalue)


@dataclass
class McNemar:
    """Can the tiny subset tell its two best trials apart? Example by example."""

    a: str  # first by tiny score (ties: trial order)
    b: str  # second
    rule: str
    tiny_n: int  # examples in the subset
    tiny_a_only: int  # subset examples a answers correctly and b does not
    tiny_b_only: int
    tiny_p: float  # exact McNemar p on the subset
    tiny_min_p: float  # the smallest p the subset's discordant count allows
    rest_n: int  # examples in the rest of the split
    rest_a_only: int | None  # None when more than two trials tie for the pair (`n_tied`)
    rest_b_only: int | None
    rest_p: float  # NaN then
    can_tell: bool  # the subset's p < alpha
    verdict: str  # sentence-ready
    alpha: float = 0.05
    n_tied: int = 2  # trials with at least the second-best subset score


MCNEMAR_RULE = ("the two best trials on the subset: first two of a stable sort by subset score "
                "(ties broken by trial order; when more than two trials tie for them, the "
                "rest-of-split counts are left out, since they would depend on that order)")


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray, mask: np.ndarray | None = None, *,
            a: str = "a", b: str = "b", alpha: float = 0.05, subset: str = "the subset",
            n_tied: int = 2) -> McNemar:
    """McNemar of two trials' per-example correctness [N] on the subset `mask` and the rest.
    `n_tied` > 2: the pair is two of that many trials tied for it; the sentence says so and
    the rest-of-split counts (which another pair of them would change) are left out."""
    x, y = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    m = np.ones(len(x), bool) if mask is None else np.asarray(mask, dtype=bool)
    ta, tb = int(np.sum(x[m] & ~y[m])), int(np.sum(~x[m] & y[m]))
    ra, rb = int(np.sum(x[~m] & ~y[~m])), int(np.sum(~x[~m] & y[~m]))
    p, p_min = mcnemar_p(ta, tb), min_mcnemar_p(ta + tb)
    n, d = int(m.sum()), ta + tb
    pair = f"{a} and {b}"
    if n_tied > 2:
        pair = (f"{a} and {b} (the first two in trial order of the {n_tied} trials with the "
                "subset's top two scores)")
    if d == 0:
        verdict = (f"{pair} answer all {n} images of {subset} alike: {subset} cannot tell them "
                   f"apart")
    elif p_min >= alpha:
        verdict = (f"{pair} differ on only {d} of the {n} images of {subset} ({ta} vs {tb}); "
                   f"even if all went one way p would be {p_min:.3g}: {subset} cannot tell them "
                   f"apart")
    elif p < alpha:
        verdict = (f"{subset} tells {pair} apart: {ta} vs {tb} discordant images of {n}, "
                   f"McNemar {fmt_p(p)}")
    else:
        verdict = (f"{subset} does not tell {pair} apart: {ta} vs {tb} discordant images of "
                   f"{n}, McNemar {fmt_p(p)}")
    return McNemar(a=a, b=b, rule=MCNEMAR_RULE, tiny_n=n, tiny_a_only=ta, tiny_b_only=tb,
                   tiny_p=p, tiny_min_p=p_min, rest_n=int((~m).sum()),
                   rest_a_only=ra if n_tied <= 2 else None,
                   rest_b_only=rb if n_tied <= 2 else None,
                   rest_p=mcnemar_p(ra, rb) if n_tied <= 2 else float("nan"),
                   can_tell=bool(p < alpha), verdict=verdict, alpha=alpha, n_tied=n_tied)


# --- one tiny subset ----------------------------------------------------------------------------

@dataclass
class Yardstick:
    """The subset scores against one yardstick: correlations, selection, top-k overlap."""

    name: str  # "nested" | "disjoint"
    description: str
    n_images: int | None  # images in the yardstick (None: unknown)
    trial_ids: list[str]
    tiny: np.ndarray  # subset scores, trial order
    scores: np.ndarray  # yardstick scores, trial order
    corr: dict[str, float]
    null: str  # what the p-values test
    test: str
    selection: Selection
    overlap: dict[int, float]  # expected top-k overlap (random tie-breaks) per k in TOPK

    @property
    def n_trials(self) -> int:
        return len(self.trial_ids)

    @property
    def null_r(self) -> float:
        """The sqrt(subset/split) approximation of Pearson r under H0 (`null_r`, a formula).

        Not what the report prints: the p-value is tested against the simulated null, whose
        mean r is `corr["pearson_null"]` (`null_mean_r`), the one number the page shows."""
        return self.corr.get("null_r", float("nan"))

    @property
    def null_mean_r(self) -> float:
        """Mean Pearson r of the simulated null the p-value is tested against (NaN without)."""
        return self.corr.get("pearson_null", float("nan"))


@dataclass
class TinyResult:
    """Everything the report says about one tiny subset of one sweep."""

    sweep: str
    k: int  # images per class
    column: str
    n_trials: int  # trials behind the nested statistics
    n_images: int | None  # images in the subset (None: unknown)
    n_full: int | None  # images in the full split
    num_classes: int | None
    nested: Yardstick
    disjoint: Yardstick | None  # needs predictions and the subset's mask
    ci: dict[str, BinomCI]  # "pick": top subset score; "best_full": best full-split trial's
    mcnemar: McNemar | None
    warnings: list[str] = field(default_factory=list)

    # The nested (paper's) yardstick, under the old names.
    @property
    def corr(self) -> dict[str, float]:
        return self.nested.corr

    @property
    def selection(self) -> Selection:
        return self.nested.selection

    @property
    def overlap(self) -> dict[int, float]:
        return self.nested.overlap

    @property
    def yardsticks(self) -> list[Yardstick]:
        return [y for y in (self.nested, self.disjoint) if y is not None]

    def rows(self) -> list[dict]:
        """One flat row per yardstick (columns: see `tiny_table`)."""
        shared = {"sweep": self.sweep, "subset": f"{self.k}/class", "k": self.k,
                  "column": self.column, "subset_images": self.n_images}
        per_subset: dict = {}
        for key, c in self.ci.items():
            per_subset.update({f"{key}_trial": c.trial, f"{key}_tiny_correct": c.correct,
                               f"{key}_tiny_n": c.n, f"{key}_tiny_lo": c.lo,
                               f"{key}_tiny_hi": c.hi})
        m = self.mcnemar
        if m is not None:
            per_subset.update({
                "mcnemar_a": m.a, "mcnemar_b": m.b, "mcnemar_tiny_a_only": m.tiny_a_only,
                "mcnemar_tiny_b_only": m.tiny_b_only, "mcnemar_tiny_p": m.tiny_p,
                "mcnemar_tiny_min_p": m.tiny_min_p, "mcnemar_rest_a_only": m.rest_a_only,
                "mcnemar_rest_b_only": m.rest_b_only, "mcnemar_rest_p": m.rest_p,
                "mcnemar_n_tied": m.n_tied,
                "mcnemar_can_tell": m.can_tell, "mcnemar_verdict": m.verdict})
        out = []
        for y in self.yardsticks:
            row = dict(shared)
            row.update({"yardstick": y.name, "yardstick_images": y.n_images,
                        "n_trials": y.n_trials, "null": y.null, "test": y.test})
            row.update({k: v for k, v in y.corr.items() if k != "n"})
            row.update(y.selection.row())
            row.update({f"top{k}_overlap": v for k, v in y.overlap.items()})
            row.update(per_subset)
            row["warnings"] = " | ".join(self.warnings)
            out.append(row)
        return out

    def row(self) -> dict:
        """The nested (paper's) row."""
        return self.rows()[0]


def other_subsets_r(top1: np.ndarray, label: np.ndarray, k: int, observed: tuple[float, float],
                    n_draws: int, seed: int) -> tuple[dict, dict]:
    """How much r depends on which images the tiny set holds: Pearson r of the trials' scores
    on `n_draws` random k-per-class subsets of the validation split against the full split
    (nested) and against the rest of it (disjoint). The sweep's own subset is one such draw, and
    its bootstrap interval (over trials) holds for it alone; the paper's question is about
    tiny sets of this size in general. Per yardstick: the median and the central 95% of the
    draws' r, the share of draws with no r (every trial ties on the subset), and the share at
    or below the sweep's own subset's r (`observed`: nested, disjoint). Empty without draws,
    with fewer than 3 trials, or when a class has fewer than k images."""
    empty: tuple[dict, dict] = ({}, {})
    t, n = top1.shape
    if n_draws <= 0 or t < 3:
        return empty
    try:
        cols = stratified_subsets(label, k, n_draws, seed)
    except ValueError:  # a class smaller than k: no subset of this shape exists
        return empty
    m = cols.shape[1]
    x = top1.astype(np.float32)
    counts = _gather_counts(np.ascontiguousarray(x.T), cols).astype(np.float64)  # [T, draws]
    total = x.sum(axis=1, dtype=np.float64)
    tiny = counts / m
    out = []
    for ref, obs in ((np.repeat((total / n)[:, None], n_draws, axis=1), observed[0]),
                     ((total[:, None] - counts) / max(1, n - m), observed[1])):
        r = _rowwise_pearson(tiny.T, ref.T)  # one row per draw
        ok = r[np.isfinite(r)]
        if len(ok) == 0:
            out.append({"pearson_subsets_undefined": 1.0, "subset_draws": n_draws})
            continue
        lo, med, hi = np.percentile(ok, [100 * (1 - LEVEL) / 2, 50, 100 * (1 + LEVEL) / 2])
        out.append({"pearson_subsets_median": float(med), "pearson_subsets_lo": float(lo),
                    "pearson_subsets_hi": float(hi),
                    "pearson_subsets_undefined": float(1 - len(ok) / n_draws),
                    "pearson_subsets_at_or_below": (float((ok <= obs + TIE_TOL).mean())
                                                    if np.isfinite(obs) else float("nan")),
                    "subset_draws": n_draws})
    return out[0], out[1]


def tiny_pairs(sweep: Sweep, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(tiny, full, trial_ids) of the completed trials that have both scores, trial order."""
    df = sweep.completed
    col = tiny_column(k)
    ok = df[col].notna() & df[FULL].notna()
    return (df.loc[ok, col].to_numpy(float), df.loc[ok, FULL].to_numpy(float),
            df.loc[ok, "trial_id"].astype(str).tolist())


def subset_images(sweep: Sweep, k: int) -> int | None:
    """Images in the sweep's k-per-class subset (its splits.npz mask, else k per class capped
    at each class's size); None without predictions."""
    p = sweep.predictions
    if p is None:
        return None
    if k in p.tiny:
        return int(p.tiny[k].sum())
    counts = np.bincount(p.label)
    return int(np.minimum(counts[counts > 0], k).sum())


def tiny_study(
    sweep: Sweep, *, n_boot: int = BOOT, n_null: int | None = None, seed: int = 0
) -> list[TinyResult]:
    """Both yardsticks, intervals, McNemar and warnings for every tiny subset of the sweep.

    `n_boot` bootstrap resamples and random subsets of the split (`other_subsets_r`); `n_null`
    Monte-Carlo null draws (default: n_boot; 0 gives NaN p-values)."""
    n_null = n_boot if n_null is None else n_null
    preds = sweep.predictions
    row_of = {t: i for i, t in enumerate(preds.trial_ids)} if preds is not None else {}
    n_full = preds.top1.shape[1] if preds is not None else None
    classes = len(np.unique(preds.label)) if preds is not None else None
    results = []
    for k in sweep.tiny_ks:
        tiny, full, ids = tiny_pairs(sweep, k)
        if len(ids) == 0:
            continue
        mask = preds.tiny.get(k) if preds is not None else None
        have = [i for i, t in enumerate(ids) if t in row_of]
        rows = [row_of[ids[i]] for i in have]  # their rows in the predictions
        model = None
        if mask is not None and len(have) >= 2 and n_null > 0:
            model = NullModel.from_predictions(preds.top1[rows], mask)
        rng = np.random.default_rng([seed, k, 1])
        if model is not None:
            x_null, rest_null, full_null = model.draw(len(ids), n_null, rng)
            corr = correlations(tiny, full, n_boot=n_boot, seed=seed,
                                null_draws=(x_null, full_null))
            corr["null_r"] = model.r
            null, test = NESTED_NULL, MC_TEST
        else:
            corr = correlations(tiny, full, n_boot=n_boot, seed=seed, p_values=False)
            corr["null_r"] = float("nan")
            null = NO_DRAWS if mask is not None and n_null <= 0 else UNAVAILABLE
            test = "none"
        nested = Yardstick(
            name="nested", description="the full validation split (contains the subset)",
            n_images=n_full, trial_ids=ids, tiny=tiny, scores=full, corr=corr, null=null,
            test=test, selection=select(tiny, full, ids, yardstick="nested"),
            overlap={t: topk_overlap(tiny, full, t) for t in TOPK})
        disjoint = None
        if mask is not None and len(have) >= 1 and (~mask).any():
            d_ids = [ids[i] for i in have]
            d_tiny = tiny[have]
            d_rows = preds.top1[rows]
            rest = d_rows[:, ~mask].mean(axis=1)
            if model is not None and len(have) > 2:
                x_null, rest_null, _ = model.draw(len(have), n_null, rng)
                d_corr = correlations(d_tiny, rest, n_boot=n_boot, seed=seed,
                                      null_draws=(x_null, rest_null))
                d_null, d_test = DISJOINT_NULL, MC_TEST
            else:
                d_corr = correlations(d_tiny, rest, n_boot=n_boot, seed=seed, p_values=False)
                d_null, d_test = (NO_DRAWS if n_null <= 0 else UNAVAILABLE), "none"
            d_corr["null_r"] = 0.0
            disjoint = Yardstick(
                name="disjoint",
                description="the rest of the split (the examples not in the subset)",
                n_images=int((~mask).sum()), trial_ids=d_ids, tiny=d_tiny, scores=rest,
                corr=d_corr, null=d_null, test=d_test,
                selection=select(d_tiny, rest, d_ids, yardstick="disjoint"),
                overlap={t: topk_overlap(d_tiny, rest, t) for t in TOPK})
        if mask is not None and len(have) >= 3:
            spread = other_subsets_r(
                preds.top1[rows], preds.label, k,
                (nested.corr["pearson"] if len(have) == len(ids) else float("nan"),
                 disjoint.corr["pearson"] if disjoint is not None else float("nan")),
                n_boot, seed)
            nested.corr.update(spread[0])
            if disjoint is not None:
                disjoint.corr.update(spread[1])
        n_img = subset_images(sweep, k)
        ci = _intervals(nested.selection, ids, tiny, preds, row_of, mask, n_img)
        mc = None
        if mask is not None and len(have) >= 2:
            d_tiny = tiny[have]
            a, b = (have[j] for j in top_k(d_tiny, 2))
            n_tied = int((d_tiny >= tiny[b] - TIE_TOL).sum())
            mc = mcnemar(preds.top1[row_of[ids[a]]], preds.top1[row_of[ids[b]]], mask,
                         a=ids[a], b=ids[b], subset=f"the {k}/class subset", n_tied=n_tied)
        res = TinyResult(sweep=sweep.name, k=k, column=tiny_column(k), n_trials=len(ids),
                         n_images=n_img, n_full=n_full, num_classes=classes, nested=nested,
                         disjoint=disjoint, ci=ci, mcnemar=mc)
        res.warnings = warnings_for(res)
        results.append(res)
    return results


def _intervals(sel: Selection, ids, tiny, preds, row_of, mask, n_img) -> dict[str, BinomCI]:
    """Exact intervals of the top subset score and of the best full-split trial's score."""
    out = {}
    for key, trial in (("pick", sel.order_pick), ("best_full", sel.best)):
        if mask is not None and trial in row_of:
            row = preds.top1[row_of[trial]]
            out[key] = _binom(trial, int(row[mask].sum()), int(mask.sum()), "mask")
        elif n_img:
            acc = tiny[ids.index(trial)]
            out[key] = _binom(trial, round(float(acc) * n_img), n_img, "table")
        else:
            out[key] = BinomCI(trial=trial, correct=0, n=0, acc=float(tiny[ids.index(trial)]),
                               lo=float("nan"), hi=float("nan"), source="unknown")
    return out


# --- few-points warnings ------------------------------------------------------------------------

def warnings_for(
    result: TinyResult, *, min_trials: int = MIN_TRIALS, chance_se: float = CHANCE_SE,
    num_classes: int | None = None,
) -> list[str]:
    """Plain sentences when a conclusion about `result` rests on few points.

    (i) leaving out the best one or two trials by yardstick score moves Pearson r by more than
    half the width of its bootstrap interval; (ii) most trials sit at chance on the full split
    (within `chance_se` binomial SE of 1/num_classes, num_classes from the label vector);
    (iii) fewer than `min_trials` trials behind a statistic.
    """
    out = []
    sub = f"{result.k}/class"
    for y in result.yardsticks:
        where = "the full split" if y.name == "nested" else "the rest of the split"
        if y.n_trials < min_trials:
            out.append(f"Only {y.n_trials} trials are behind the {sub} statistics on {where} "
                       f"(fewer than {min_trials}): correlations and the pick rest on few points.")
        r, lo, hi = y.corr["pearson"], y.corr["pearson_lo"], y.corr["pearson_hi"]
        if not (np.isfinite(r) and np.isfinite(lo) and np.isfinite(hi)):
            continue
        order = top_k(y.scores, len(y.scores))
        for drop in (1, 2):
            keep = np.sort(order[drop:])
            if len(keep) < 3:
                break
            r_drop = correlations(y.tiny[keep], y.scores[keep], n_boot=0,
                                  p_values=False)["pearson"]
            best = "trial" if drop == 1 else "2 trials"
            if not np.isfinite(r_drop):
                out.append(
                    f"Pearson r of {sub} against {where} is {r:.2f} with all {y.n_trials} "
                    f"trials but undefined without the best {best} on {where}; r rests on "
                    f"few points.")
                break
            if abs(r_drop - r) > (hi - lo) / 2:
                out.append(
                    f"Pearson r of {sub} against {where} is {r:.2f} with all {y.n_trials} "
                    f"trials but {r_drop:.2f} without the best {best} on {where}: a change of "
                    f"{abs(r_drop - r):.2f}, more than half the width of its 95% interval "
                    f"({(hi - lo) / 2:.2f}); r rests on few points.")
                break
    classes = num_classes or result.num_classes
    n = result.n_full
    full = result.nested.scores
    if classes and classes > 1 and n:
        chance = 1 / classes
        se = np.sqrt(chance * (1 - chance) / n)
        at = int(np.sum(np.abs(full - chance) <= chance_se * se))
        if at > len(full) / 2:
            out.append(
                f"{at} of {len(full)} trials sit at chance on the full split (within "
                f"{chance_se:g} binomial SE = {100 * chance_se * se:.1f} pt of {100 * chance:.1f}% "
                f"for {classes} classes): the {sub} statistics mostly describe noise.")
    return out


def tiny_table(results: list[TinyResult]) -> pd.DataFrame:
    """One row per (sweep, subset, yardstick), nested first (tiny_subsets.csv).

    Columns: sweep, subset ("5/class"), k, column, subset_images; yardstick ("nested" |
    "disjoint"), yardstick_images, n_trials, null (what the p-values test), test, n_boot;
    per coefficient NAME in pearson/spearman/kendall: NAME, NAME_p, NAME_null (value under the
    null: the mean over the simulated null's draws, the value the report shows), NAME_lo, NAME_hi,
    NAME_lo_mcse, NAME_hi_mcse; null_r (the sqrt(subset/split) approximation of Pearson r under
    H0, a formula, not shown on the page; 0 on the disjoint yardstick); selection (headline
    first): n_tied, tied, top_tiny, expected_regret_pt, p_pick_best, expected_yard, best,
    best_yard, n_best, best_tied, then the secondary order pick: order_pick, order_pick_tiny,
    order_pick_yard, order_pick_regret_pt, order_pick_is_best; how r varies with the images
    drawn (`other_subsets_r`, per yardstick): pearson_subsets_median, pearson_subsets_lo,
    pearson_subsets_hi (central 95% of the draws), pearson_subsets_undefined (share of draws
    with no r), pearson_subsets_at_or_below (share at or below this subset's r),
    subset_draws; top1/top5/top10_overlap
    (expected share over uniformly random tie-breaks of both rankings, `topk_overlap`); per
    subset (the same on both rows): pick_trial, pick_tiny_correct, pick_tiny_n, pick_tiny_lo,
    pick_tiny_hi, best_full_trial, best_full_tiny_correct/_n/_lo/_hi (exact 95% intervals),
    mcnemar_a, mcnemar_b, mcnemar_tiny_a_only, mcnemar_tiny_b_only, mcnemar_tiny_p,
    mcnemar_tiny_min_p, mcnemar_rest_a_only, mcnemar_rest_b_only, mcnemar_rest_p (empty when
    more than two trials tie for the pair), mcnemar_n_tied, mcnemar_can_tell, mcnemar_verdict
    (absent without predictions and masks); warnings (joined
    by " | ").
    """
    return pd.DataFrame([row for r in results for row in r.rows()])


def fmt_p(p: float, p_min: float | None = None) -> str:
    """A p-value for humans: 'p < 1e-300' rather than 0. `p_min`: the smallest p a Monte-Carlo
    test can give (1 / (draws + 1)); a p at it reads 'p ≤ ...', since no draw reached the
    statistic and the true p may be anywhere below."""
    if not np.isfinite(p):
        return "p = n/a"
    if p_min is not None and np.isfinite(p_min) and p <= p_min * (1 + 1e-9):
        return f"p ≤ {p_min:.1e}" if p_min < 1e-3 else f"p ≤ {p_min:.3f}"
    if p < 1e-300:
        return "p < 1e-300"
    if p < 1e-3:
        return f"p = {p:.1e}"
    return f"p = {p:.3f}"
