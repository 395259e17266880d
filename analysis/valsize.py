"""Beyond the paper: how large must the validation set be to select the right trial?

From the stored per-example correctness of every completed trial on the full validation split
(`predictions.npz`: a bool matrix trials x examples), draw many random class-stratified subsets
of k images per class, score every trial on each subset, pick the top trial and judge the pick
against a yardstick:

- the selection regret in points (best accuracy on the yardstick minus the picked trial's), its
  distribution over the draws;
- the probability of picking the best trial, or one within 0.5 / 1 point of it;
- how often two close candidates (pairs of trials within `pair_gap` points on the yardstick,
  not tied there) are ranked the wrong way round, the concern Oliver et al. raised.

Two designs, which differ only in the yardstick:

`design="heldout"` (the default, and the one the recommendation uses). Every draw makes a fresh
random class-stratified halving of the validation split: a selection pool of floor(n_c / 2)
images of every class c and a held-out half (the other ceil(n_c / 2)). The k-per-class subset
is drawn from the pool only, the pick is made on the subset and judged on the held-out half,
which the subset never overlaps. k runs over 1, 2, 5, 10, 20, ... up to floor(min class / 2),
and the last row ("pool") is the whole pool, half the split. This is a ceiling: the held-out
half is itself a finite sample, so even the whole pool may not pick the held-out best with 95%
probability; then no k separates the trials as judged on held-out images, and the
recommendation says so. One property to read the last points with: the halves are the two
parts of one fixed split, so for two trials the subset's and the held-out half's differences
add up to their full-split difference once the subset is the whole pool. For trials nearly
tied on the full split that makes the pick on the pool anti-correlated with the held-out half,
and P(pick the best) can fall at the pool (P(within 0.5 pt), which forgives near-ties, much
less so); for small k, a small part of the pool, the effect vanishes.

`design="nested"`: the paper's construction, kept for comparison. The subsets are drawn from
the whole split and judged on the whole split, i.e. on a yardstick that contains them. The
agreement then rises to 1 by construction (at the whole split the subset *is* the yardstick;
at k = 20 of 50 per class 40% of the yardstick is the subset), whatever the trials are: on a
sweep of equally good trials it reaches P(pick the best) = 1 at the whole split, while the
held-out design stays near 1 / #trials. That is why the recommendation never uses it.

Ties. On the subset, ties at the top are broken uniformly at random and the expectation over
that choice is taken exactly (each tied trial gets weight 1/#tied), so no order bias enters the
small-k results. On the yardstick, every trial tied at the top counts as "the best": regret is
best-on-yardstick minus picked-on-yardstick, so a pick tied at the top has regret 0, and
P(best) = P(regret = 0); the yardstick cannot tell tied trials apart, and counting all but one
of them as wrong would penalise the subset for the yardstick's own resolution. P(within t pt)
is P(regret <= t). Close pairs: in the held-out design they are the pairs within `pair_gap`
points on each draw's held-out half (not tied there), `pairs_per_draw` of them sampled
uniformly with replacement per draw; a pair tied on the subset counts as half wrong (a coin
flip), and draws whose held-out half has no close pair are left out of that column. (Choosing
the pairs on the full split instead would make them close on pool + held-out together and so
anti-correlate the subset with the held-out half: a biased yardstick.) In the nested design the
pairs are fixed, chosen on the full split as before (at most `max_pairs`), and every draw scores
all of them, or a uniform sample of `pairs_per_draw` when there are more.

Monte-Carlo error. Every resampled figure is a mean over draws of a per-draw value (for a
probability: the tie-break-weighted indicator of that draw); its `_se` column is the standard
deviation over draws divided by sqrt(draws) (for a 0/1 outcome exactly the binomial
sqrt(p (1 - p) / draws)). The default DRAWS = 2000 puts at most 0.005 on a probability near
0.95 (sqrt(0.95 * 0.05 / 2000) = 0.0049). The recommendation is the smallest k tried from
which on every tried k has P(within 0.5 pt) >= 0.95, worded as such with the next smaller k
tried, which falls short (nothing between two grid points is tested, so it is no demonstrated
minimum); it is flagged borderline when 0.95 lies within 2 SE of the estimate at that k or the
k before, and `recommended_range` gives the k the rule would pick from the estimates + 2 SE
and from the estimates - 2 SE.

The table (`ValSizeResult.table`), one row per k: design, k_per_class (str(k); "pool" for the
held-out design's whole pool; "all" for the nested design's whole split when classes differ in
size, not resampled), k, images, draws, regret_mean_pt (+ _se), regret_median_pt,
regret_q90_pt, regret_q95_pt, regret_max_pt, p_best (+ _se), p_within_0.5pt (+ _se),
p_within_1pt (+ _se), pair_misrank (+ _se), pair_wrong, pair_tie.

Cost. Every draw is one random order of each class; the subsets of one draw are its first k
images of each class, so they are nested across k (each k's subsets are uniformly distributed;
only the correlation between k differs from independent draws) and the held-out half is the
rest of each class's order. Scores are exact integer counts in float32 (exact up to 2^24
examples): for small increments of the subset a sparse gather-sum of the added examples onto the
previous k's counts, otherwise one BLAS product per block of draws (correctness [T, N] @ subset
indicator [N, draws]); the held-out counts are the full-split counts minus the pool's. Nothing
loops over trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # pandas and matplotlib are imported where used: `s4l-report --help` stays fast
    import pandas as pd

TOLERANCES = (0.5, 1.0)  # points: "within 0.5 / 1 pt of the best"
TARGET = 0.95  # probability the recommendation asks for
TARGET_TOL = TOLERANCES[0]  # the recommendation's tolerance (points)
DRAWS = 2000  # MC SE of a probability near 0.95: sqrt(.95 * .05 / 2000) = 0.0049 <= 0.005
DESIGNS = ("heldout", "nested")
_EPS = 1e-9
_SPARSE_FACTOR = 16  # a gather-sum of m examples costs about a BLAS product over 16 m (2 cores)
_DENSE_MAX_ELEMS = 25_000_000  # above this many trial x example cells, convert in chunks


def k_grid(label: np.ndarray, design: str = "heldout") -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below the largest k, then the largest k.

    The largest k is floor(smallest class / 2) for the held-out design (the pool of the
    smallest class) and the smallest class size for the nested design; [] if it is 0.
    """
    _check_design(design)
    counts = np.bincount(np.unique(label, return_inverse=True)[1])
    kmax = int(counts.min()) // (2 if design == "heldout" else 1)
    if kmax < 1:
        return []
    ks, base = [], 1
    while True:
        for m in (1, 2, 5):
            if base * m < kmax:
                ks.append(base * m)
            else:
                return ks + [kmax]
        base *= 10


@dataclass
class ValSizeResult:
    """Per-k summaries (`table`) and per-draw regrets (`regret[label]`) of the study."""

    table: pd.DataFrame
    regret: dict[str, np.ndarray]  # per x-label: expected regret (points) of each draw
    n_classes: int
    n_examples: int
    n_trials: int
    n_pairs: int  # nested: close pairs on the full split; held-out: mean per draw
    recommended_k: int | None
    recommendation: str
    design: str = "heldout"
    recommended_range: tuple[int | None, int | None] = (None, None)  # (estimate + 2 SE, - 2 SE)
    borderline: bool = False
    n_draws: int = 0
    notes: list[str] = field(default_factory=list)
    # P(within TARGET_TOL pt of the best on the yardstick) of a trial picked at random
    p_within_blind: float = float("nan")


class Recommendation(NamedTuple):
    k: int | None  # smallest k tried from which on the estimate reaches the target
    text: str
    range: tuple[int | None, int | None]  # the same rule on estimate + 2 SE and estimate - 2 SE
    borderline: bool  # target within 2 SE of the estimate at k or the k before


def _check_design(design: str) -> None:
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, not {design!r}")


def _class_layout(label: np.ndarray):
    """(class index of every example, examples per class, start of each class when sorted)."""
    _, inv = np.unique(label, return_inverse=True)
    counts = np.bincount(inv)
    return inv, counts, np.concatenate([[0], np.cumsum(counts)[:-1]])


def _random_orders(inv: np.ndarray, b: int, rng) -> np.ndarray:
    """[b, N]: per row, all examples grouped by class, in a uniformly random order per class."""
    grouped = np.argsort(inv, kind="stable")  # example positions, class by class
    counts = np.bincount(inv)
    out = np.empty((b, len(inv)), dtype=np.int64)
    start = 0
    for n_c in counts:  # a Fisher-Yates shuffle of every row, per class
        out[:, start:start + n_c] = rng.permuted(
            np.broadcast_to(grouped[start:start + n_c], (b, n_c)), axis=1)
        start += n_c
    return out


def _first_k(order: np.ndarray, starts: np.ndarray, k: int) -> np.ndarray:
    """[b, C*k] example positions: the first k of every class in each row's order."""
    return order[:, (starts[:, None] + np.arange(k)[None, :]).ravel()]


def _slots(starts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Positions in a row of `_random_orders`: places lo[c] .. hi[c] - 1 of every class c."""
    return np.concatenate([s + np.arange(a, b) for s, a, b in zip(starts, lo, hi)]).astype(
        np.int64)


def stratified_subsets(label: np.ndarray, k: int, n_draws: int, seed: int = 0) -> np.ndarray:
    """[n_draws, C*k] positions of random class-stratified subsets (k per class, no repeats)."""
    inv, counts, starts = _class_layout(label)
    if k > counts.min():
        raise ValueError(f"k = {k} exceeds the smallest class ({counts.min()} examples)")
    return _first_k(_random_orders(inv, n_draws, np.random.default_rng(seed)), starts, k)


def _indicator(cols: np.ndarray, n: int) -> np.ndarray:
    """0/1 matrix [n, draws] with ones at each draw's selected examples (a transposed view)."""
    m = np.zeros((cols.shape[0], n), dtype=np.float32)
    np.put_along_axis(m, cols, 1.0, axis=1)
    return m.T


def _counts(x: np.ndarray, ind: np.ndarray, max_elems: int = 50_000_000) -> np.ndarray:
    """Correct counts [T, draws] = correctness @ indicator, in chunks of trials if large."""
    if x.dtype == np.float32:
        return x @ ind
    step = max(1, max_elems // max(1, x.shape[1]))
    return np.concatenate(
        [x[i:i + step].astype(np.float32) @ ind for i in range(0, x.shape[0], step)]
    )


def _gather_counts(xt: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Correct counts [T, draws] of the examples `cols` [draws, m]: a sparse gather-sum."""
    from scipy import sparse

    b, m = cols.shape
    sel = sparse.csr_matrix(
        (np.ones(b * m, dtype=np.float32), cols.ravel(), np.arange(0, b * m + 1, m)),
        shape=(b, xt.shape[0]))
    return np.asarray(sel @ xt).T


def close_pairs(full_counts: np.ndarray, n: int, gap_pt: float, max_pairs: int, rng):
    """(better, worse) index arrays of trials within `gap_pt` points, not tied on the full split."""
    order = np.argsort(full_counts, kind="stable")
    v = full_counts[order]  # ascending
    # for the i-th smallest, the worse partners are v[lo:hi]: v_i - gap <= v_j < v_i
    lo = np.searchsorted(v, v - gap_pt / 100 * n - _EPS, side="left")
    hi = np.searchsorted(v, v, side="left")
    per = hi - lo
    total = int(per.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    p = np.arange(total) if total <= max_pairs else np.sort(
        rng.choice(total, size=max_pairs, replace=False))
    ends = np.cumsum(per)
    i = np.searchsorted(ends, p, side="right")  # which "better" trial each pair belongs to
    j = lo[i] + (p - (ends[i] - per[i]))
    return order[i], order[j]


def _close_pairs_per_draw(h: np.ndarray, gap: float, m: int, rng):
    """Close pairs on every column of integer held-out counts `h` [T, B], `m` sampled per column.

    A pair (i, j) is close in column b when 0 < h[i, b] - h[j, b] <= gap. Returns (better,
    worse, column) arrays of length m * (columns with a pair), sampled uniformly with
    replacement among each column's pairs, and the number of close pairs of every column.
    O(T B): a histogram of the counts per column gives every trial's number of worse partners,
    a radix sort per column lists them.
    """
    t, b = h.shape
    g = int(np.floor(gap + 1e-6))  # counts are integers
    hv = h.astype(np.int64)
    width = int(hv.max()) + 1 if hv.size else 1
    base = (np.arange(b) * width)[None, :]
    key = hv + base  # [T, B], every column in its own range of keys
    below = np.concatenate([[0], np.cumsum(np.bincount(key.ravel(), minlength=b * width))])
    lo_key = np.maximum(key - g, base)  # partners j: key - g <= key_j < key (same column)
    partners = below[key] - below[lo_key]  # [T, B]
    tot = partners.sum(axis=0)
    has = np.flatnonzero(tot)
    if len(has) == 0 or m < 1 or g < 1:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, tot
    part = partners.T.ravel()  # column-major: column b's trials at b*T .. b*T + T - 1
    ends = np.cumsum(part)
    first = np.concatenate([[0], np.cumsum(tot)[:-1]])
    col = np.repeat(has, m)
    p = first[col] + np.minimum((rng.random(len(col)) * tot[col]).astype(np.int64),
                                tot[col] - 1)
    p.sort()  # columns' ranges are disjoint, so `col` still matches; sorted keys search faster
    f = np.searchsorted(ends, p, side="right")  # flat (column, better trial) of each pair
    off = p - (ends[f] - part[f])  # uniform in 0 .. partners - 1
    better = f % t
    order = np.argsort(h.astype(np.int16 if width < 2 ** 15 else np.int64), axis=0,
                       kind="stable")  # [T, B] trials by count, per column
    # in column c the trials sorted by count: those below key start at below[lo_key] - c*T
    pos = below[lo_key[better, col]] - col * t + off
    return better, order[pos, col], col, tot


def _se(x: np.ndarray) -> float:
    """Monte-Carlo standard error of the mean of per-draw values (NaN draws left out)."""
    x = x[~np.isnan(x)]
    return float(x.std() / np.sqrt(len(x))) if len(x) else float("nan")


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def study(
    top1: np.ndarray,
    label: np.ndarray,
    *,
    design: str = "heldout",
    ks: list[int] | None = None,
    n_draws: int = DRAWS,
    seed: int = 0,
    pair_gap: float = 1.0,
    max_pairs: int = 20_000,
    pairs_per_draw: int = 256,
    block: int = 256,
) -> ValSizeResult:
    """Run the validation-size study on correctness `top1` [T, N] with class `label` [N].

    `design`: "heldout" (subsets from a random half of the split, judged on the other half;
    the recommendation's yardstick) or "nested" (subsets of the split judged on the whole split,
    the paper's construction). `ks`: images per class (default `k_grid(label, design)`).
    `pair_gap`: close pairs are within this many points. `max_pairs`: nested design, cap on the
    fixed close pairs. `pairs_per_draw`: close pairs sampled (uniformly, with replacement) per
    draw: held-out design always, nested design when it has more fixed pairs than this.
    """
    _check_design(design)
    if n_draws < 1:
        raise ValueError("n_draws must be >= 1")
    top1 = np.asarray(top1, dtype=bool)
    label = np.asarray(label)
    t, n = top1.shape
    if len(label) != n:
        raise ValueError(f"label has {len(label)} entries for {n} examples")
    if n >= 2 ** 24:
        raise ValueError("more than 2^24 validation examples: float32 counts would not be exact")
    inv, counts, starts = _class_layout(label)
    n_classes = len(counts)
    heldout = design == "heldout"
    pool_c = counts // 2
    if heldout and pool_c.min() < 1:
        raise ValueError(
            f"the held-out design needs at least 2 validation examples of every class (the "
            f"smallest class has {counts.min()}); use design='nested'")
    kmax = int(pool_c.min()) if heldout else int(counts.min())
    ks = sorted({int(k) for k in (ks if ks is not None else k_grid(label, design))
                 if 1 <= int(k) <= kmax})

    # the rows: (label, k, examples per class); all nested within one draw's class orders
    rows = [(str(k), k, np.full(n_classes, k)) for k in ks]
    if heldout:
        if rows and np.array_equal(rows[-1][2], pool_c):
            rows[-1] = ("pool", rows[-1][1], pool_c)
        else:
            rows.append(("pool", int(pool_c.max()), pool_c))
    if not rows:
        raise ValueError("no k to study")

    rng = np.random.default_rng(seed)
    full_counts = top1.sum(axis=1).astype(np.float64)
    n_held = int(n - pool_c.sum())
    big = t * n > _DENSE_MAX_ELEMS
    x = top1 if big else top1.astype(np.float32)  # bool: converted in chunks of trials
    xt = None if big else np.ascontiguousarray(x.T)  # [N, T] for the sparse gather-sums
    full32 = full_counts.astype(np.float32)

    # how to count each row: gather-sum of the added examples, a BLAS product, or the full split
    plan, prev = [], np.zeros(n_classes, dtype=np.int64)
    for lab, k, sizes in rows:
        added = int((sizes - prev).sum())
        if int(sizes.sum()) == n:
            plan.append(("full", None))
        elif not big and added * _SPARSE_FACTOR < n:  # onto the previous row's counts
            plan.append(("gather", _slots(starts, prev, sizes)))
        else:
            plan.append(("dense", _slots(starts, np.zeros_like(sizes), sizes)))
        prev = sizes

    if not heldout:
        regret_fixed = 100 * (full_counts.max() - full_counts) / n  # [T] points
        better, worse = close_pairs(full_counts, n, pair_gap, max_pairs, rng)
    keys = ["regret", "p_best"] + [f"tol{tol:g}" for tol in TOLERANCES] + ["wrong", "tie"]
    acc = {lab: {key: [] for key in keys} for lab, _, _ in rows}
    pair_totals, chance = [], []
    sampled = heldout or len(better) > pairs_per_draw  # else every fixed pair in every draw

    for start in range(0, n_draws, block):
        b = min(block, n_draws - start)
        order = _random_orders(inv, b, rng)  # one random order per class and draw
        cnts, cnt = [], np.zeros((t, b), dtype=np.float32)
        for how, slots in plan:
            if how == "full":
                cnt = np.repeat(full32[:, None], b, axis=1)
            elif how == "gather":
                cnt = cnt + _gather_counts(xt, order[:, slots])
            else:
                cnt = _counts(x, _indicator(order[:, slots], n))
            cnts.append(cnt)
        if sampled and not heldout:  # a sample of the fixed pairs per draw
            pick = rng.integers(0, len(better), size=b * pairs_per_draw)
            pb, pw = better[pick], worse[pick]
            pcol = np.repeat(np.arange(b), pairs_per_draw)
        if heldout:
            h = full32[:, None] - cnts[-1]  # held-out counts: full split minus the pool
            regret = (h.max(axis=0, keepdims=True) - h).astype(np.float64) * (100 / n_held)
            pb, pw, pcol, tot = _close_pairs_per_draw(h, pair_gap / 100 * n_held,
                                                      pairs_per_draw, rng)
            pair_totals.append(tot)
        if sampled:
            has = np.bincount(pcol, minlength=b) > 0  # draws with a close pair
        if heldout:  # a trial picked uniformly at random, without any validation image
            chance.append((regret <= TARGET_TOL + _EPS).mean(axis=0))
        for (lab, _, _), cnt in zip(rows, cnts):
            a = acc[lab]
            top = cnt == cnt.max(axis=0, keepdims=True)  # [T, b] tied at the top of the subset
            ti, bi = np.nonzero(top)
            w = 1.0 / np.bincount(bi, minlength=b)[bi]  # uniform random tie-break, in expectation
            r = regret[ti, bi] if heldout else regret_fixed[ti]
            a["regret"].append(np.bincount(bi, w * r, minlength=b))
            a["p_best"].append(np.bincount(bi, w * (r <= _EPS), minlength=b))
            for tol in TOLERANCES:
                a[f"tol{tol:g}"].append(np.bincount(bi, w * (r <= tol + _EPS), minlength=b))
            if sampled:
                d = cnt[pb, pcol] - cnt[pw, pcol]  # better on the yardstick minus worse
                wrong = np.full(b, np.nan)
                tie = np.full(b, np.nan)
                wrong[has] = np.bincount(pcol, d < 0, minlength=b)[has] / pairs_per_draw
                tie[has] = np.bincount(pcol, d == 0, minlength=b)[has] / pairs_per_draw
                a["wrong"].append(wrong)
                a["tie"].append(tie)
            elif len(better):
                cb, cw = cnt[better], cnt[worse]
                a["wrong"].append((cw > cb).mean(axis=0))
                a["tie"].append((cw == cb).mean(axis=0))
            else:
                a["wrong"].append(np.full(b, np.nan))
                a["tie"].append(np.full(b, np.nan))

    table_rows, dist = [], {}
    for lab, k, sizes in rows:
        a = {key: np.concatenate(v) for key, v in acc[lab].items()}
        dist[lab] = a["regret"]
        table_rows.append(_row(design, lab, k, int(sizes.sum()), a["regret"], a["p_best"],
                               {tol: a[f"tol{tol:g}"] for tol in TOLERANCES},
                               a["wrong"], a["tie"], n_draws))
    notes = []
    if heldout:
        mean_pairs = float(np.concatenate(pair_totals).mean())
        n_pairs = round(mean_pairs)
        notes.append(
            f"held-out design: every draw splits each class at random into a selection pool "
            f"({int(pool_c.sum())} images) and a held-out half ({n_held} images); subsets come "
            f"from the pool, picks are judged on the held-out half; close pairs: "
            f"{mean_pairs:.1f} per draw on average within {pair_gap:g} pt on the held-out half")
    else:
        n_pairs = len(better)
        notes.append("nested design (the paper's construction): subsets of the split judged on "
                     "the whole split, which contains them; agreement rises to 1 by construction")
        if not np.all(counts == kmax):  # the whole (unbalanced) split as the last point: regret 0
            top = full_counts == full_counts.max()
            z = np.array([float(regret_fixed[top].mean())])
            dist["all"] = z
            nan_or_0 = np.array([0.0 if n_pairs else np.nan])
            table_rows.append(_row(design, "all", int(counts.max()), n, z, np.array([1.0]),
                                   {tol: np.array([1.0]) for tol in TOLERANCES},
                                   nan_or_0, nan_or_0, 1))
    import pandas as pd

    table = pd.DataFrame(table_rows)
    # nested: the yardstick is fixed, so a blind pick's chance is the same in every draw
    blind = (np.concatenate(chance) if heldout
             else np.full(n_draws, (regret_fixed <= TARGET_TOL + _EPS).mean()))
    rec = recommend(table, n_classes, blind=(float(blind.mean()), _se(blind)))
    return ValSizeResult(table=table, regret=dist, n_classes=n_classes, n_examples=n,
                         n_trials=t, n_pairs=n_pairs, recommended_k=rec.k,
                         recommendation=rec.text, design=design, recommended_range=rec.range,
                         borderline=rec.borderline, n_draws=n_draws, notes=notes,
                         p_within_blind=float(blind.mean()))


def _row(design, label, k, images, r, p_best, p_tol, wrong, tie, draws) -> dict:
    row = {
        "design": design, "k_per_class": label, "k": k, "images": images, "draws": draws,
        "regret_mean_pt": r.mean(), "regret_mean_pt_se": _se(r),
        "regret_median_pt": np.median(r), "regret_q90_pt": np.quantile(r, 0.9),
        "regret_q95_pt": np.quantile(r, 0.95), "regret_max_pt": r.max(),
        "p_best": p_best.mean(), "p_best_se": _se(p_best),
    }
    for tol, v in p_tol.items():
        row[f"p_within_{tol:g}pt"] = v.mean()
        row[f"p_within_{tol:g}pt_se"] = _se(v)
    misrank = wrong + 0.5 * tie  # a tie on the subset counts as a coin flip
    row["pair_misrank"] = _nanmean(misrank)
    row["pair_misrank_se"] = _se(misrank)
    row["pair_wrong"] = _nanmean(wrong)
    row["pair_tie"] = _nanmean(tie)
    return row


def _first_from(ok: np.ndarray) -> int | None:
    """Smallest i with ok[i:] all true, or None."""
    bad = np.flatnonzero(~ok)
    i = 0 if len(bad) == 0 else int(bad[-1]) + 1
    return i if i < len(ok) else None


def recommend(table, n_classes: int, tol: float = 0.5,
              target: float = TARGET, blind: tuple[float, float] | None = None) -> Recommendation:
    """Smallest k tried from which on every tried k reaches P(within `tol` pt) >= `target`.

    Only the k in the table were tried: the sentence names that k, the largest tried k below
    it (which falls short) and the k tried, never "k >= ..." as if every k between had been.

    Reads the design from the table's `design` column (held-out if absent) and the Monte-Carlo
    errors from the `_se` columns (0 if absent). Returns the k (None if none), the sentence,
    the range of k the same rule gives on estimate + 2 SE and estimate - 2 SE, and whether the
    target lies within 2 SE of the estimate at the recommended k or the k before.

    `blind`: (P, MC SE) of a trial picked at random, without validation images, being within
    `tol` of the best. When even that reaches the target, the trials do not differ by more
    than the tolerance, no k is recommended and the sentence says so: "k = 1 suffices" would
    be true of no validation set at all.
    """
    col = f"p_within_{tol:g}pt"
    design = str(table["design"].iloc[0]) if "design" in table and len(table) else "heldout"
    rows = table[table["k_per_class"] != "all"].reset_index(drop=True)  # nested: trivially 1
    est = rows[col].to_numpy(dtype=float)
    se = (rows[col + "_se"].to_numpy(dtype=float) if col + "_se" in rows
          else np.zeros(len(rows)))
    se = np.nan_to_num(se)
    i_rec = _first_from(est >= target - _EPS)
    i_lo = _first_from(est + 2 * se >= target - _EPS)
    i_hi = _first_from(est - 2 * se >= target - _EPS)
    k_at = (lambda i: None if i is None else int(rows.loc[i, "k"]))
    rng_k = (k_at(i_lo), k_at(i_hi))
    pct = f"{100 * target:.0f}%"
    heldout = design == "heldout"
    if heldout:
        yard = "judged on a held-out half of the validation split"
    else:
        yard = ("judged on the whole split, which contains the subsets (nested design, the "
                "paper's construction: agreement rises to 1 by construction)")
    tried = _tried(rows)
    if blind is not None and blind[0] >= target - _EPS:
        text = (f"for this sweep, a trial picked at random, without any validation image, is "
                f"within {tol:g} pt of the best with probability {blind[0]:.3f} ± {blind[1]:.3f} "
                f"MC SE ({yard}), already at least {pct}: the trials do not differ by more than "
                f"{tol:g} pt, so this sweep cannot tell validation sizes apart ({tried})")
        return Recommendation(None, text, rng_k, False)
    if i_rec is None:
        if not len(rows):
            return Recommendation(None, "no k to study", rng_k, False)
        last = rows.iloc[-1]
        p, s = float(last[col]), float(se[-1])
        near = abs(p - target) <= 2 * s
        if heldout:
            text = (
                f"for this sweep, no subset up to the pool ({int(last['images'])} images, half "
                f"the validation split) selects within {tol:g} pt of the best with {pct} "
                f"probability as judged on held-out images ({tried}; the pool: P = {p:.3f} ± "
                f"{s:.3f} MC SE{'; borderline: within 2 MC SE of ' + pct if near else ''}): "
                f"none of the k tried, the whole pool included, separates the trials as judged "
                f"on held-out images; keep the full validation split")
        else:
            text = (
                f"for this sweep, no stratified subset up to the smallest class size selects "
                f"within {tol:g} pt of the best with {pct} probability ({tried}; at k = "
                f"{int(last['k'])}: P = {p:.3f} ± {s:.3f} MC SE), {yard}; keep the full "
                f"validation split")
        return Recommendation(None, text, rng_k, bool(near))
    borderline = any(abs(est[j] - target) <= 2 * se[j] for j in (i_rec - 1, i_rec) if j >= 0)
    row = rows.iloc[i_rec]
    k = int(row["k"])
    last = i_rec == len(rows) - 1
    whole = ""
    is_pool = heldout and row["k_per_class"] == "pool"
    if last and is_pool:
        whole = ", i.e. only the whole pool, half the split"
    elif last and not heldout and "all" not in set(table["k_per_class"]) \
            and int(row["images"]) == int(table["images"].max()):
        whole = ", i.e. only the whole split"
    images = f"{int(row['images'])} images{whole}"
    size = (f"the whole pool (k = {k} of the smallest class; {images})" if is_pool
            else f"{k} per class ({images})")
    # only the tried k are known: name the largest tried k below that falls short, and say
    # that nothing between the two was tried (the rule is "from which on", so a smaller k
    # that reaches the target before a dip is mentioned as such)
    if i_rec == 0:
        below = "the smallest k tried; no smaller k was tried"
        rule = "that reaches it"
    else:
        k_prev = int(rows.loc[i_rec - 1, "k"])
        below = f"the next smaller k tried, {k_prev}, does not reach it"
        if k - k_prev > 1:
            below += "; nothing between was tried"
        early = [int(rows.loc[j, "k"]) for j in range(i_rec - 1) if est[j] >= target - _EPS]
        rule = "that reaches it"
        if early:
            rule = "from which on every k tried reaches it"
            below += (f"; k = {', '.join(map(str, early))} reach{'es' if len(early) == 1 else ''}"
                      f" it too, but not every larger k tried does")
    lo, hi = rng_k
    if lo == hi:
        span = f"k = {k} also at ±2 MC SE"
    elif hi is None:
        span = f"k = {lo} at +2 MC SE, no k tried clears {pct} at -2 MC SE"
    else:
        span = f"k from {lo} (+2 MC SE) to {hi} (-2 MC SE)"
    text = (
        f"for this sweep, to select within {tol:g} pt of the best with {pct} probability, "
        f"{yard}, the smallest k tried {rule} is {size} ({below}; {tried}) (P = "
        f"{float(row[col]):.3f} ± {se[i_rec]:.3f} MC SE at k = {k}; {span})")
    if borderline:
        text += (f"; borderline: {pct} lies within 2 MC SE of the estimate at this k or the "
                 f"k before")
    return Recommendation(k, text, rng_k, bool(borderline))


def _tried(rows) -> str:
    """'k tried: 1, 2, 5, 10, 20 per class and the whole pool' (or '..., 48 per class')."""
    ks = [str(int(r["k"])) for _, r in rows.iterrows() if r["k_per_class"] != "pool"]
    pool = bool(len(rows)) and rows["k_per_class"].iloc[-1] == "pool"
    if not ks:
        return "k tried: only the whole pool" if pool else "no k tried"
    return f"k tried: {', '.join(ks)} per class" + (" and the whole pool" if pool else "")


def _xkey(row) -> str:
    return str(row["k_per_class"])


def _design_name(res: ValSizeResult) -> str:
    return "held-out half" if res.design == "heldout" else "nested (paper's construction)"


def plot_valsize(heldout_result: ValSizeResult, nested_result: ValSizeResult | None = None,
                 title: str = ""):
    """Regret (left) and selection probabilities (right) against k; returns (fig, table).

    Left: the regret distribution of `heldout_result` (box: quartiles, whiskers 5-95%; mean
    ± 2 MC SE). Right: P(best), P(within 0.5 / 1 pt) and the close-pair misranking, with ±2 MC
    SE error bars: `heldout_result` solid, `nested_result` (if given) dashed and faded. The
    table is both results' tables, one after the other (column `design`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.lines import Line2D

    res = heldout_result
    results = [r for r in (res, nested_result) if r is not None]
    # the probability panel: one categorical x axis over both designs, ordered by images
    keys = {}
    for r in results:
        for _, row in r.table.iterrows():
            keys.setdefault(_xkey(row), (int(row["images"]), int(row["k"])))
    labels = sorted(keys, key=lambda s: keys[s])
    pos_of = {lab: i for i, lab in enumerate(labels)}

    def tick(lab):
        return f"{lab}\n({keys[lab][0]} img)" if lab in ("pool", "all") else lab

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.6),
                                   gridspec_kw={"width_ratios": [1, 1.15]})
    own = list(res.table["k_per_class"])
    pos = np.arange(len(own))
    ax1.boxplot([res.regret[lab] for lab in own], positions=pos, whis=(5, 95),
                showfliers=False, widths=0.6)
    ax1.errorbar(pos, res.table["regret_mean_pt"], yerr=2 * res.table["regret_mean_pt_se"],
                 fmt="o-", color="#c44e52", ms=4, capsize=2, label="mean ± 2 MC SE")
    ax1.set_xticks(pos, [tick(lab) for lab in own], fontsize=8)
    ax1.set_xlabel("validation images per class (k)")
    judged = "held-out half" if res.design == "heldout" else "full split"
    ax1.set_ylabel(f"selection regret [pt] (best − picked, {judged})")
    ax1.set_title(f"regret, judged on the {judged} (box: quartiles, whiskers 5–95%)",
                  fontsize=9)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)

    styles = [("p_best", "P(pick the best)", "black")]
    styles += [(f"p_within_{t:g}pt", f"P(within {t:g} pt)", c)
               for t, c in zip(TOLERANCES, ("#4c72b0", "#55a868"))]
    styles += [("pair_misrank", "close pairs ranked wrongly", "#dd8452")]
    handles = []
    for n_r, r in enumerate(results):
        first = n_r == 0
        x = [pos_of[lab] for lab in r.table["k_per_class"]]
        for col, lab, c in styles:
            y = r.table[col].to_numpy(dtype=float)
            if np.all(np.isnan(y)):
                continue
            err = 2 * np.nan_to_num(r.table[col + "_se"].to_numpy(dtype=float))
            ax2.errorbar(x, y, yerr=err, marker="s" if col == "pair_misrank" else "o",
                         ms=4 if first else 3, capsize=2, color=c, lw=1.5 if first else 1.2,
                         ls="-" if first else "--", alpha=1.0 if first else 0.4)
            if first:
                if col == "pair_misrank":
                    lab += (f" ({r.n_pairs} pairs)" if r.design == "nested"
                            else f" (~{r.n_pairs} pairs per draw)")
                handles.append(Line2D([], [], color=c, marker="o", ms=4, label=lab))
    for n_r, r in enumerate(results):
        handles.append(Line2D([], [], color="grey", ls="-" if n_r == 0 else "--",
                              alpha=1.0 if n_r == 0 else 0.5,
                              label=("solid: " if n_r == 0 else "dashed: ") + _design_name(r)))
    ax2.axhline(TARGET, color="grey", lw=0.8, ls=":")
    if res.recommended_k is not None:
        hit = res.table[(res.table["k"] == res.recommended_k)
                        & (res.table["k_per_class"] != "all")]
        if len(hit):
            ax2.axvline(pos_of[_xkey(hit.iloc[0])], color="#4c72b0", lw=0.8, ls=":")
    ax2.set_xticks(range(len(labels)), [tick(lab) for lab in labels], fontsize=8)
    ax2.set_ylim(-0.02, 1.04)
    ax2.set_xlabel("validation images per class (k)")
    ax2.set_ylabel("probability (error bars ±2 MC SE)")
    ax2.set_title(f"selection against k; dotted: {100 * TARGET:.0f}%", fontsize=9)
    ax2.legend(handles=handles, fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5),
               framealpha=0.9)
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    table = pd.concat([r.table for r in results], ignore_index=True)
    return fig, table
