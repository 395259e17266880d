"""Sensitivity: full-split accuracy against each axis of the sweep, and which axes matter.

Axes are the sweep's own (space.json), plus `depth` and `version` split off an architecture name
such as `resnet50_v2` (and `width` from a `_x4` suffix when the table has no width column);
`seed` is no axis here (the leaderboard reports the seed-to-seed spread). Per axis value: box
and points of `val_full_top1`.

Which axes matter, without mistaking chance for an effect. Per axis, one-way on the search's
completed trials (accuracy in percent; seed repeats of the best configurations, `--reseed-top`,
are left out: they rerun configurations chosen for scoring best, and keeping them would count
those configurations several times and break the permutation test's exchangeability):

* `eta_squared` (η²): between-value / total sum of squares. It is biased upwards: with no effect
  at all, a k-valued axis on n trials still explains (k-1)/(n-1) on average (`eta_squared_null`;
  5/47 = 0.106 for 6 values on 48 trials), so raw η² favours axes with many values and small
  sweeps.
* `omega_squared` (ω², the headline; axes are ranked by it): the chance-corrected share,
  (SS_between - (k-1)·MS_within) / (SS_total + MS_within) = (k-1)(F-1) / ((k-1)(F-1) + n).
  It is 0 exactly when η² equals its null expectation (F = 1), and negative when the axis
  explains less than chance would: read a negative ω² as "no detectable effect" (the estimate
  of an effect that cannot be below 0), not as a harmful one. NaN when every trial has its own
  value (no within-value variance).
* `p_perm`: permutation p-value of the null "accuracy does not depend on this axis": the trials'
  accuracies are reassigned to the axis values at random, keeping how many trials each value
  has (scipy.stats.permutation_test, independent samples, `PERMUTATIONS` random reassignments
  or all of them when there are fewer; statistic η², the same test as one-way F for a fixed
  grouping, alternative "greater"). It needs no normality, which accuracy near 0 or 100 % or
  a handful of trials would break. `p_perm_se` is its Monte-Carlo standard error
  sqrt(p(1-p)/n_permutations) (0 when every reassignment was enumerated); `seed` makes it
  reproducible.
* `p_holm`: the p-values corrected for testing several axes (Holm's step-down, which controls
  the chance of any false "matters" among the sweep's axes at `alpha` under any dependence
  between the tests). Axes that group the trials identically (e.g. `arch`, `depth` and
  `version` when there are two architectures) are one test and counted once. `verdict` uses
  `p_holm`; `p_perm` is the per-axis value for someone who looks at one axis only.

Derived axes are not independent tests: `depth`, `version` (and `width`) are functions of
`arch`, so they share its trials and its effect (a depth effect shows up in `arch` too). They
are kept because the paper speaks of them separately. Crossed axes of a full grid are close to
independent; axes of a random or pruned search are not, and each axis's effect then includes
whatever correlates with it: `design` says when the trials do not cross the axes fully and
which axes vary together (bias-corrected Cramér's V >= `ENTANGLED_V`), and `verdict` will not
credit an axis that varies with one of the other side of the paper's claim. Each test is
one-way: the other axes' effects count as noise, so beside a dominant axis a smaller real effect can stay indistinguishable from chance (a planted
0.4-logit weight-decay effect needs about 96 trials beside a 1.2-logit epochs effect); "not
distinguishable" means "not shown by this sweep", never "shown to be absent". Beside each: the
spread of per-value best and median in points.

The paper (Section 4.1) found weight decay and schedule (epochs) crucial and the architecture
(depth, version, width) much less important; `verdict` says whether this sweep agrees, does
not agree, or cannot tell (see its docstring for the rule).
"""

from __future__ import annotations

import inspect
import json
import math
import re
from fractions import Fraction

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .load import FULL, Sweep  # noqa: E402

ARCH_RE = re.compile(r"^resnet(\d+)_(v\d)(?:_x([0-9.]+))?$")
PAPER_MATTERS = ("wd", "epochs")  # "tuning the weight decay and training duration is crucial"
PAPER_LITTLE = ("arch", "depth", "version", "width")  # "architecture ... does not matter much"
PERMUTATIONS = 2000  # Monte-Carlo SE of p at 0.05: sqrt(0.05 * 0.95 / 2000) = 0.0049
ALPHA = 0.05  # level at which `verdict` calls an axis distinguishable from chance (Holm)
# bias-corrected Cramér's V from which two axes count as varying together: above the 95th
# percentile of V for independent 2- to 6-valued axes on 24 trials (0.36-0.41)
ENTANGLED_V = 0.45
DERIVED = ("depth", "version", "width")  # read off an architecture name (axis_frame)
# scipy >= 1.15 takes the generator as `rng`; older versions (the project allows 1.13) only as
# `random_state`.
_RNG_ARG = "rng" if "rng" in inspect.signature(stats.permutation_test).parameters else \
    "random_state"
LABELS = {"wd": "weight decay", "lr": "learning rate", "epochs": "epochs (schedule)",
          "arch": "architecture", "depth": "depth", "version": "version", "width": "width",
          "color_aug": "color augmentation", "batch_size": "batch size"}


def axis_cell(v) -> object:
    """Hashable, readable axis value (lists and dicts as JSON, numpy scalars as Python's)."""
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def axis_frame(sweep: Sweep) -> tuple[pd.DataFrame, list[str]]:
    """The search's completed trials (seed repeats left out: `Sweep.search`) with derived axis
    columns, and the axes that vary among them."""
    df = sweep.search.copy()
    axes = [a for a in sweep.axes if a in df.columns]
    derived: list[str] = []
    if "arch" in df.columns:
        parsed = df["arch"].astype(str).map(lambda s: ARCH_RE.match(s.strip()))
        if parsed.notna().all():
            df["depth"] = parsed.map(lambda m: int(m.group(1)))
            df["version"] = parsed.map(lambda m: m.group(2))
            derived = ["depth", "version"]
            if "width" not in df.columns and parsed.map(lambda m: m.group(3) is not None).all():
                df["width"] = parsed.map(lambda m: float(m.group(3)))
                derived.append("width")
    if "arch" in axes:
        at = axes.index("arch") + 1
        axes[at:at] = [d for d in derived if d not in axes]
    for a in axes:
        df[a] = df[a].map(axis_cell)
    varying = [a for a in axes if df[a].map(str).nunique() > 1]
    return df, varying


def cramers_v(a, b) -> float:
    """Bias-corrected Cramér's V of two categorical columns (Bergsma 2013): 0 for independent
    columns on average, 1 when one determines the other; NaN when either has one value. The
    plain V is biased upwards on few trials (about 0.3 for independent 6- and 4-valued axes on
    24 trials), the corrected one about 0.1."""
    table = pd.crosstab(pd.Series(np.asarray(a, dtype=str)), pd.Series(np.asarray(b, dtype=str)))
    t = table.to_numpy()
    n, (r, k) = t.sum(), t.shape
    if r < 2 or k < 2 or n < 3:
        return float("nan")
    phi2 = stats.chi2_contingency(t, correction=False)[0] / n
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc, kc = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denom = min(kc - 1, rc - 1)
    return float(np.sqrt(phi2 / denom)) if denom > 0 else float("nan")


def grid_size(df: pd.DataFrame, axes: list[str]) -> int:
    """Points of the full grid of the values these axes take among the trials."""
    return math.prod(df[a].astype(str).nunique() for a in axes)


def is_crossed(df: pd.DataFrame, axes: list[str]) -> bool:
    """Do the trials form a full grid of these axes, every combination equally often? Then the
    axes are independent and each one-way effect is that axis's alone."""
    if not axes:
        return True
    cells = df[axes].astype(str).value_counts()
    return len(cells) == grid_size(df, axes) and cells.nunique() == 1


def entangled(df: pd.DataFrame, axes: list[str], threshold: float = ENTANGLED_V,
              derived=()) -> list[tuple[str, str, float]]:
    """Pairs of axes that vary together among the trials (bias-corrected Cramér's V at least
    `threshold`), strongest first. `derived`: axes read off the architecture name (axis_frame),
    which go with `arch` by construction and are not listed beside it."""
    out = []
    for i, a in enumerate(axes):
        for b in axes[i + 1:]:
            if "arch" in (a, b) and ({a, b} - {"arch"}) <= set(derived):
                continue
            v = cramers_v(df[a].map(str), df[b].map(str))
            if np.isfinite(v) and v >= threshold:
                out.append((a, b, v))
    return sorted(out, key=lambda t: -t[2])


def design(sweep: Sweep) -> tuple[str, list[tuple[str, str, float]]]:
    """(words, entangled pairs): what the sensitivity ranking rests on. The words say when seed
    repeats were left out and whether the axes are crossed; if they are not, the pairs of axes
    that vary together (`entangled`), whose one-way effects include each other's."""
    df, axes = axis_frame(sweep)
    notes = []
    left = len(sweep.completed) - len(df)
    if left:
        notes.append(
            f"The ranking uses the search's {len(df)} trials: the {left} seed repeats of its best "
            "configurations are left out, since they rerun configurations chosen for scoring "
            "best and would count those configurations several times.")
    own = [a for a in axes if a in sweep.axes]
    pairs: list[tuple[str, str, float]] = []
    if not is_crossed(df, own):
        pairs = entangled(df, axes, derived=[a for a in axes if a not in sweep.axes])
        text = (f"These {len(df)} trials do not cross the swept axes fully (the full grid of "
                f"the values they ran has {grid_size(df, own):,} points)")
        if pairs:
            shown = [f"{a} with {b} (V {v:.2f})" for a, b, v in pairs[:4]]
            text += (", and some axes vary together (bias-corrected Cramér's V ≥ "
                     f"{ENTANGLED_V:g}): " + ", ".join(shown) + "; each of their one-way effects "
                     "includes the other's")
        else:
            text += (f", but no two axes vary together (every bias-corrected Cramér's V < "
                     f"{ENTANGLED_V:g}), so the one-way effects are close to separate")
        notes.append(text + ".")
    return " ".join(notes), pairs


def words(sweep: Sweep, ranking: pd.DataFrame, alpha: float = ALPHA) -> str:
    """The verdict (`verdict`, told which axes vary together) and what it rests on (`design`)."""
    notes, pairs = design(sweep)
    text = verdict(ranking, alpha, pairs=pairs)
    return f"{text} {notes}" if notes else text


def _ordered_values(col: pd.Series) -> list:
    vals = list(pd.unique(col))
    try:
        return sorted(vals, key=lambda v: float(v))
    except (TypeError, ValueError):
        return sorted(vals, key=str)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def _codes(groups) -> np.ndarray:
    """Integer code per trial, values numbered by first occurrence (equal partitions, equal codes)."""
    return pd.factorize(pd.Series(np.asarray(groups, dtype=str)))[0]


def _anova(y, groups) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(y, codes, between-value sum of squares, total sum of squares), one-way."""
    y = np.asarray(y, dtype=float)
    codes = _codes(groups)
    n = np.bincount(codes)
    means = np.bincount(codes, weights=y) / n
    total = float(((y - y.mean()) ** 2).sum())
    between = float((n * (means - y.mean()) ** 2).sum())
    return y, codes, between, total


def eta_squared(y, groups) -> float:
    """Between-group sum of squares over total sum of squares (one-way); NaN if y is constant.

    Biased upwards: with no effect its expectation is (k-1)/(n-1) for k groups and n values.
    """
    _, _, between, total = _anova(y, groups)
    return float("nan") if total == 0 else between / total


def omega_squared(y, groups) -> float:
    """Chance-corrected share of variance, (SS_b - (k-1) MS_w) / (SS_t + MS_w), one-way.

    0 when the groups explain exactly what chance would (η² = (k-1)/(n-1), F = 1); negative when
    they explain less, which reads as "no detectable effect". NaN when y is constant or every
    group has one value (no within-group variance to compare with).
    """
    y, codes, between, total = _anova(y, groups)
    n, k = len(y), int(codes.max()) + 1
    if total == 0 or n <= k:
        return float("nan")
    within = (total - between) / (n - k)
    return (between - (k - 1) * within) / (total + within)


def _on_lattice(y: np.ndarray) -> np.ndarray:
    """y as integers (float64, centred on an integer) when its values are multiples of one
    fraction 1/D with D <= 10^6 (accuracies: correct counts over the images scored); else y
    less its mean, where exact ties have no reason to occur."""
    fracs = [Fraction(float(v)).limit_denominator(10 ** 6) for v in y]
    if all(abs(float(f) - v) <= 1e-12 * max(1.0, abs(v)) for f, v in zip(fracs, y)):
        d = math.lcm(*(f.denominator for f in fracs))
        ints = [f.numerator * (d // f.denominator) for f in fracs]
        shift = sorted(ints)[len(ints) // 2]
        centred = [i - shift for i in ints]
        if max(abs(i) for i in centred) * len(ints) < 2 ** 52:  # every sum exact in float64
            return np.asarray(centred, dtype=float)
    return y - y.mean()


def permutation_pvalue(y, groups, *, n_permutations: int = PERMUTATIONS,
                       seed: int = 0) -> tuple[float, float]:
    """(p, its Monte-Carlo standard error) of "y does not depend on the groups".

    Values of y are reassigned to the groups at random, group sizes kept (all reassignments when
    there are at most `n_permutations`: exact, SE 0); statistic η² (for fixed group sizes the
    total sum of squares is fixed, so this is the one-way F test's ordering), one-sided: p is
    the share of reassignments explaining at least as much as the observed grouping, counting
    the observed one ((c + 1) / (n_permutations + 1), never 0). NaN when y is constant.
    """
    y, codes, _, total = _anova(y, groups)
    if total == 0:
        return float("nan"), float("nan")
    k = int(codes.max()) + 1
    # The statistic is sum_j S_j^2 / n_j over the groups' sums S_j of the values (for fixed
    # group sizes and values it orders reassignments as eta^2 does). Accuracies are counts over
    # the same images (k/N): they are taken as those integers (`_on_lattice`), so every group
    # sum is exact whatever the order of its additions, and reassignments that tie the observed
    # grouping tie in the floating point too and are counted the same on every machine. Means
    # less the grand mean (~1e-3 on accuracies of ~0.9) had cancelled to within scipy's tie
    # tolerance, so the count of ties, and p, moved with the BLAS kernel.
    q = _on_lattice(y)
    samples = [q[codes == j] for j in range(k)]

    def statistic(*xs, axis=-1):
        return sum(x.sum(axis=axis) ** 2 / x.shape[axis] for x in xs)

    sizes = np.cumsum([len(s) for s in samples])
    n_max = math.prod(math.comb(int(m), int(j)) for m, j in zip(sizes[1:], sizes[:-1]))
    rng = {_RNG_ARG: np.random.default_rng(seed)}
    batch = max(1, min(n_permutations, 4_000_000 // len(y)))
    if min(len(x) for x in samples) >= 2:
        res = stats.permutation_test(
            samples, statistic, permutation_type="independent", vectorized=True,
            n_resamples=n_permutations, alternative="greater", batch=batch, **rng)
    else:
        # scipy's "independent" test needs two values per group; a value seen in one trial
        # only (common in a sampled grid) takes the equivalent one-sample form: the order of
        # the accuracies is permuted against the fixed group labels.
        onehot = np.eye(k)[codes]
        counts = onehot.sum(axis=0)

        def by_order(x, axis=-1):
            sums = np.moveaxis(x, axis, -1) @ onehot  # integers: exact in any BLAS
            return (sums ** 2 / counts).sum(axis=-1)

        res = stats.permutation_test(
            (q,), by_order, permutation_type="pairings", vectorized=True,
            n_resamples=n_permutations, alternative="greater", batch=batch, **rng)
        n_max = math.factorial(len(y))
    p = float(res.pvalue)
    se = 0.0 if n_max <= n_permutations else math.sqrt(p * (1 - p) / n_permutations)
    return p, se


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN stays NaN, not counted."""
    return holm_with_se(pvalues)[0]


def holm_with_se(pvalues, ses=None) -> tuple[np.ndarray, np.ndarray]:
    """Holm's adjusted p-values and their Monte-Carlo standard errors: an adjusted p is
    (m - j) p_(j) for the ordered p-value j that sets it (the running maximum), so its SE is
    (m - j) times that p-value's (0 where the adjustment is capped at 1); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    se_in = np.zeros(p.shape) if ses is None else np.asarray(ses, dtype=float)
    out, out_se = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q, qs = p[ok], se_in[ok]
    m = len(q)
    if m:
        order = np.argsort(q, kind="stable")
        terms = (m - np.arange(m)) * q[order]
        setter = np.array([int(np.argmax(terms[: i + 1])) for i in range(m)])
        adj = np.minimum(1.0, terms[setter])
        adj_se = np.where(terms[setter] >= 1.0, 0.0, (m - setter) * qs[order][setter])
        res, res_se = np.empty(m), np.empty(m)
        res[order], res_se[order] = adj, adj_se
        out[ok], out_se[ok] = res, res_se
    return out, out_se


RANKING_COLUMNS = ["sweep", "axis", "rank", "n_values", "omega_squared", "eta_squared",
                   "eta_squared_null", "p_perm", "p_perm_se", "p_holm", "p_holm_se",
                   "best_spread_pt",
                   "median_spread_pt", "n_trials"]


def sensitivity(sweep: Sweep, *, n_permutations: int = PERMUTATIONS,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranking per axis, summary per axis value), accuracy in percent.

    The ranking has one row per varying axis (`RANKING_COLUMNS`), ranked by ω² (NaN last); see
    the module docstring for what each column means. Every axis's permutation test uses the
    same `seed`, so axes that group the trials identically get the same p and the whole table
    is reproducible.
    """
    df, axes = axis_frame(sweep)
    y = 100 * df[FULL].to_numpy(float)
    n = len(y)
    rank_rows, value_rows, tests = [], [], {}
    for a in axes:
        g = df[a].map(str).to_numpy()
        key = _codes(g).tobytes()  # the partition of the trials: one test per distinct one
        if key not in tests:
            tests[key] = permutation_pvalue(y, g, n_permutations=n_permutations, seed=seed)
        p, se = tests[key]
        per = pd.DataFrame({"g": g, "y": y}).groupby("g", sort=False)["y"]
        best, med = per.max(), per.median()
        k = len(best)
        rank_rows.append({
            "sweep": sweep.name, "axis": a, "n_values": k,
            "omega_squared": omega_squared(y, g), "eta_squared": eta_squared(y, g),
            "eta_squared_null": (k - 1) / (n - 1) if n > 1 else float("nan"),
            "p_perm": p, "p_perm_se": se, "_key": key,
            "best_spread_pt": best.max() - best.min(),
            "median_spread_pt": med.max() - med.min(), "n_trials": n,
        })
        for v in _ordered_values(df[a]):
            sel = y[g == str(v)]
            value_rows.append({"sweep": sweep.name, "axis": a, "value": _fmt(v), "n": len(sel),
                               "best": sel.max(), "median": np.median(sel), "mean": sel.mean(),
                               "worst": sel.min()})
    ranking = pd.DataFrame(rank_rows, columns=[c for c in RANKING_COLUMNS if c != "rank"]
                           + ["_key"])
    adj, adj_se = holm_with_se([p for p, _ in tests.values()], [se for _, se in tests.values()])
    ranking["p_holm"] = ranking["_key"].map(dict(zip(tests, adj))).astype(float)
    ranking["p_holm_se"] = ranking["_key"].map(dict(zip(tests, adj_se))).astype(float)
    ranking = ranking.drop(columns="_key")
    ranking = ranking.sort_values("omega_squared", ascending=False, na_position="last",
                                  kind="stable").reset_index(drop=True)
    ranking.insert(2, "rank", np.arange(1, len(ranking) + 1))
    return ranking[RANKING_COLUMNS], pd.DataFrame(value_rows)


def _pval(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_eq(p: float) -> str:
    s = _pval(p)
    return s if s.startswith("<") else f"= {s}"


def are_(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def verdict(ranking: pd.DataFrame, alpha: float = ALPHA,
            pairs: list[tuple[str, str, float]] = ()) -> str:
    """The ranking in words (ω² and p per axis) and what it says about the paper's finding.

    An axis is "distinguishable from chance" when its Holm-corrected p (`p_holm`) is below
    `alpha`; an axis that is not counts as showing no effect. With C the largest ω² among the
    paper's crucial axes (wd, epochs) that are distinguishable and A the largest among the
    architecture axes (arch, depth, version, width) that are (each -inf when there is none):
    the sweep *agrees* with the paper when C > A (some crucial axis matters, and every
    architecture axis either shows no effect or a smaller one); it *does not agree* when
    A > C (an architecture axis matters more than every crucial axis that matters, or the
    crucial ones show none); otherwise (nothing distinguishable, or a tie) it cannot tell and
    says which axes are and are not distinguishable. The size comparison is of point
    estimates of ω², not a test of their difference. When the crucial or the architecture axes
    do not vary, the finding cannot be checked at all. `pairs`: axes that vary together among
    the trials (`entangled`); when the axis that decides agreement or disagreement varies with
    an axis of the other side, the effect may be that axis's, and the sweep cannot tell.
    """
    if ranking.empty:
        return "No axis varies among the completed trials, so there is no sensitivity to rank."
    axes = list(ranking["axis"])
    omega = dict(zip(axes, ranking["omega_squared"].astype(float)))
    p = dict(zip(axes, ranking["p_perm"].astype(float)))
    p_adj = dict(zip(axes, ranking["p_holm"].astype(float)))
    se_adj = dict(zip(axes, ranking["p_holm_se"].astype(float))) if "p_holm_se" in ranking \
        else dict.fromkeys(axes, 0.0)
    n = int(ranking["n_trials"].iloc[0])

    def holm_p(a: str) -> str:
        se = se_adj[a]
        return _pval(p_adj[a]) + (f" ± {se:.3f}" if np.isfinite(se) and se > 0
                                  and p_adj[a] >= 0.001 else "")

    parts = [f"{a} {omega[a]:.3f} (p {_pval(p[a])}, Holm {holm_p(a)})" for a in axes]
    text = (f"Axes ranked by chance-corrected variance of full-split top-1 explained (ω²; "
            f"permutation p per axis, Holm-corrected across axes, ± its Monte-Carlo SE) on {n} "
            "trials: " + ", ".join(parts) + ".")
    # a Holm p within 2 Monte-Carlo SE of the line: which side it falls on is the draw's
    near = [a for a in axes if np.isfinite(se_adj[a]) and se_adj[a] > 0
            and abs(p_adj[a] - alpha) < 2 * se_adj[a]]
    if near:
        text += (f" The Holm p of {_join(near)} {are_(near)} within 2 Monte-Carlo SE of "
                 f"{alpha:g}, so which side {'it falls' if len(near) == 1 else 'they fall'} on "
                 "is the permutations' draw: rebuild the report with more --permutations to "
                 "settle it.")
    matters = [a for a in PAPER_MATTERS if a in omega]
    little = [a for a in PAPER_LITTLE if a in omega]
    if not (matters and little):
        missing = [a for a in PAPER_MATTERS + ("arch",) if a not in omega]
        return text + (f" The paper's finding (weight decay and schedule matter, architecture "
                       f"much less) cannot be checked here: {', '.join(missing)} do not vary.")
    sig = {a: bool(p_adj[a] < alpha) for a in axes}  # NaN compares False: not significant
    sig_m = [a for a in matters if sig[a]]
    sig_l = [a for a in little if sig[a]]
    size = {a: (omega[a] if np.isfinite(omega[a]) else -np.inf) for a in axes}
    top_m = max((size[a] for a in sig_m), default=-np.inf)
    top_l = max((size[a] for a in sig_l), default=-np.inf)
    paper = "The paper found weight decay and schedule crucial and architecture much less"
    chance = f"distinguishable from chance (Holm p < {alpha:g})"
    not_chance = f"not distinguishable from chance (Holm p ≥ {alpha:g})"

    def are(names: list[str]) -> str:
        return "is" if len(names) == 1 else "are"

    def sized(names: list[str]) -> str:
        return _join([f"{a} (ω² {omega[a]:.3f})" for a in names])

    across = {}  # axis -> the other side's axes it varies with
    for a, b, v in pairs:
        for x, y in ((a, b), (b, a)):
            if (x in matters and y in little) or (x in little and y in matters):
                across.setdefault(x, []).append(f"{y} (V {v:.2f})")
    deciding = None
    if sig_m and top_m > top_l:
        deciding = max(sig_m, key=lambda a: size[a])
    elif sig_l and top_l > top_m:
        deciding = max(sig_l, key=lambda a: size[a])
    if deciding in across:
        side = "a crucial" if deciding in matters else "an architecture"
        other = "architecture" if deciding in matters else "crucial"
        return (text + f" {paper}: here {sized([deciding])}, {side} axis, is {chance}, but in "
                f"these trials it varies with the {other} axis {_join(across[deciding])}, so "
                "the effect may be either's and this sweep cannot tell whether it agrees with "
                "the paper.")
    if sig_m and top_m > top_l:
        clauses = [f"{sized(sig_m)} {are(sig_m)} {chance}"]
        if sig_l:
            clauses.append(f"{sized(sig_l)} {are(sig_l)} too but smaller")
        rest = [a for a in little if not sig[a]]
        if rest:
            clauses.append(f"{_join(rest)} {are(rest)} {not_chance}")
        return (text + f" {paper}: here " + "; ".join(clauses)
                + ", so this sweep agrees with the paper.")
    if sig_l and top_l > top_m:
        best = max(sig_l, key=lambda a: size[a])
        text += f" {paper}: here {sized([best])} is {chance} and larger than "
        if sig_m:
            text += f"{sized(sig_m)}"
            rest = [a for a in matters if not sig[a]]
            if rest:
                text += f", and {_join(rest)} {are(rest)} {not_chance}"
        else:
            text += f"every crucial axis: {_join(matters)} {are(matters)} {not_chance}"
        return text + ", so this sweep does not agree with the paper."
    sig_all = [a for a in axes if sig[a]]
    if not sig_all:
        return text + (f" No axis is distinguishable from chance at this number of trials ({n}; "
                       f"every Holm p ≥ {alpha:g}), so this sweep cannot tell whether it agrees "
                       f"with the paper (weight decay and schedule crucial, architecture much "
                       f"less).")
    rest = [a for a in axes if not sig[a]]
    text += f" {_join(sig_all)} {are(sig_all)} {chance}"
    text += f"; {_join(rest)} {are(rest)} {not_chance}" if rest else ""
    if not (sig_m or sig_l):
        text += (f". Neither the paper's crucial axes ({_join(matters)}) nor the architecture "
                 f"axes ({_join(little)}) are, so at this number of trials ({n}) this sweep "
                 f"cannot tell whether it agrees with the paper.")
    else:
        text += (f". The largest crucial and architecture effects are equal (ω² {top_m:.3f}), so "
                 f"this sweep cannot tell whether it agrees with the paper.")
    return text


def plot_sensitivity(sweep: Sweep, ranking: pd.DataFrame | None = None):
    """One box+strip panel per axis (in rank order); return (fig, ranking)."""
    if ranking is None:
        ranking, _ = sensitivity(sweep)
    df, _ = axis_frame(sweep)
    axes = list(ranking["axis"])
    ncols = min(4, max(1, len(axes)))
    nrows = max(1, int(np.ceil(len(axes) / ncols)))
    fig, grid = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
    rng = np.random.default_rng(0)
    y_all = 100 * df[FULL].to_numpy(float)
    for i, ax in enumerate(grid.ravel()):
        if i >= len(axes):
            ax.axis("off")
            if not axes and i == 0:
                ax.text(0.5, 0.5, "no axis varies", ha="center", va="center")
            continue
        a = axes[i]
        values = _ordered_values(df[a])
        g = df[a].map(str).to_numpy()
        data = [y_all[g == str(v)] for v in values]
        pos = np.arange(len(values))
        ax.boxplot(data, positions=pos, widths=0.55, showfliers=False)
        for p, d in zip(pos, data):
            ax.scatter(p + rng.uniform(-0.18, 0.18, len(d)), d, s=8, alpha=0.5, color="#4c72b0",
                       linewidths=0)
        ax.set_xticks(pos, [_fmt(v) for v in values], rotation=30 if len(values) > 4 else 0,
                      fontsize=8)
        row = ranking.iloc[i]
        ax.set_title(f"#{row['rank']} {LABELS.get(a, a)}\nω² = {row['omega_squared']:.3f}, "
                     f"p {_p_eq(row['p_perm'])} (Holm {_pval(row['p_holm'])})", fontsize=9)
        if i % ncols == 0:
            ax.set_ylabel("full-split top-1 [%]")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig, ranking
