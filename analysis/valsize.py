"""Beyond the paper: how large must the validation set be to select the right trial?

From the stored per-example correctness of every completed trial on the full validation split
(`predictions.npz`: a bool matrix trials x examples), draw many random class-stratified subsets
of k images per class (k = 1, 2, 5, 10, 20, 50, ... up to the smallest class, then the whole
split), score every trial on each subset, pick the top trial and measure, against the full split:

- the selection regret in points (best full-split top-1 minus the picked trial's), its
  distribution over the drawn subsets;
- the probability of picking the best trial, or one within 0.5 / 1 point of it;
- how often two close candidates (pairs of trials within `pair_gap` points on the full split,
  not tied there) are ranked the wrong way round, the concern Oliver et al. raised.

Ties on a subset are broken uniformly at random, and the expectation over that choice is taken
exactly (each tied trial gets weight 1/#tied), so no order bias enters the small-k results.
Every draw is one random order of each class; the subset for k is its first k images, so the
subsets of one draw are nested across k. Scores are exact integer counts from one matrix
product per block of draws (correctness [T, N] @ subset indicator [N, draws]); nothing loops
over trials. The full split is the yardstick: this says how well k images per class reproduce
the full split's choice, not how well either predicts the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TOLERANCES = (0.5, 1.0)  # points: "within 0.5 / 1 pt of the best"
TARGET = 0.95  # probability the recommendation asks for
_EPS = 1e-9


def k_grid(label: np.ndarray) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below the smallest class size, then the smallest class size."""
    counts = np.bincount(np.unique(label, return_inverse=True)[1])
    kmax = int(counts.min())
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
    n_pairs: int
    recommended_k: int | None
    recommendation: str
    notes: list[str] = field(default_factory=list)


def _class_layout(label: np.ndarray):
    """(class index of every example, examples per class, start of each class when sorted)."""
    _, inv = np.unique(label, return_inverse=True)
    counts = np.bincount(inv)
    return inv, counts, np.concatenate([[0], np.cumsum(counts)[:-1]])


def _random_orders(inv: np.ndarray, b: int, rng) -> np.ndarray:
    """[b, N]: per row, all examples grouped by class, in a uniformly random order per class."""
    return np.argsort(inv[None, :] + rng.random((b, len(inv))), axis=1)


def _first_k(order: np.ndarray, starts: np.ndarray, k: int) -> np.ndarray:
    """[b, C*k] example positions: the first k of every class in each row's order."""
    return order[:, (starts[:, None] + np.arange(k)[None, :]).ravel()]


def stratified_subsets(label: np.ndarray, k: int, n_draws: int, seed: int = 0) -> np.ndarray:
    """[n_draws, C*k] positions of random class-stratified subsets (k per class, no repeats)."""
    inv, counts, starts = _class_layout(label)
    if k > counts.min():
        raise ValueError(f"k = {k} exceeds the smallest class ({counts.min()} examples)")
    return _first_k(_random_orders(inv, n_draws, np.random.default_rng(seed)), starts, k)


def _indicator(cols: np.ndarray, n: int) -> np.ndarray:
    """0/1 matrix [n, draws] with ones at each draw's selected examples."""
    m = np.zeros((n, cols.shape[0]), dtype=np.float32)
    m[cols.ravel(), np.repeat(np.arange(cols.shape[0]), cols.shape[1])] = 1.0
    return m


def _counts(x: np.ndarray, ind: np.ndarray, max_elems: int = 50_000_000) -> np.ndarray:
    """Correct counts [T, draws] = correctness @ indicator, in chunks of trials if large."""
    if x.dtype == np.float32:
        return x @ ind
    step = max(1, max_elems // max(1, x.shape[1]))
    return np.concatenate(
        [x[i:i + step].astype(np.float32) @ ind for i in range(0, x.shape[0], step)]
    )


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


def study(
    top1: np.ndarray,
    label: np.ndarray,
    *,
    ks: list[int] | None = None,
    n_draws: int = 1000,
    seed: int = 0,
    pair_gap: float = 1.0,
    max_pairs: int = 20_000,
    block: int = 128,
) -> ValSizeResult:
    """Run the validation-size study on correctness `top1` [T, N] with class `label` [N]."""
    top1 = np.asarray(top1, dtype=bool)
    t, n = top1.shape
    inv, counts, starts = _class_layout(label)
    kmax = int(counts.min())
    ks = sorted({int(k) for k in (ks or k_grid(label)) if 1 <= int(k) <= kmax})
    rng = np.random.default_rng(seed)
    full_counts = top1.sum(axis=1).astype(np.float64)
    regret = 100 * (full_counts.max() - full_counts) / n  # [T] points
    better, worse = close_pairs(full_counts, n, pair_gap, max_pairs, rng)
    x = top1.astype(np.float32) if t * n <= 25_000_000 else top1  # else converted in chunks
    acc = {k: {"regret": [], "p_best": [], "p_tol": {tol: [] for tol in TOLERANCES},
               "wrong": [], "tie": []} for k in ks}

    def score(k: int, cnt: np.ndarray) -> None:
        top = cnt == cnt.max(axis=0, keepdims=True)  # [T, B] tied at the top
        w = top / top.sum(axis=0, keepdims=True)  # uniform random tie-break, in expectation
        a = acc[k]
        a["regret"].append(regret @ w)
        a["p_best"].append((regret <= _EPS).astype(float) @ w)
        for tol in TOLERANCES:
            a["p_tol"][tol].append((regret <= tol + _EPS).astype(float) @ w)
        if len(better):
            cb, cw = cnt[better], cnt[worse]
            a["wrong"].append((cw > cb).mean(axis=0))
            a["tie"].append((cw == cb).mean(axis=0))

    for start in range(0, n_draws, block):
        b = min(block, n_draws - start)
        order = _random_orders(inv, b, rng)  # one random order per class and draw
        for k in ks:  # nested subsets: the first k of every class
            score(k, _counts(x, _indicator(_first_k(order, starts, k), n)))

    rows, dist = [], {}
    label_of = {k: str(k) for k in ks}
    full_is_stratified = bool(np.all(counts == kmax))
    for k in ks:
        a = acc[k]
        r = np.concatenate(a["regret"])
        dist[label_of[k]] = r
        wrong = np.concatenate(a["wrong"]) if a["wrong"] else np.array([np.nan])
        tie = np.concatenate(a["tie"]) if a["tie"] else np.array([np.nan])
        rows.append(_row(label_of[k], k, int(k * len(counts)), r, np.concatenate(a["p_best"]),
                         {tol: np.concatenate(v) for tol, v in a["p_tol"].items()},
                         wrong, tie, n_draws))
    if not full_is_stratified:  # the whole (unbalanced) split as the last point: regret 0
        top = full_counts == full_counts.max()
        z = np.array([float(regret[top].mean())])
        dist["all"] = z
        rows.append(_row("all", int(counts.max()), n, z, np.array([1.0]),
                         {tol: np.array([1.0]) for tol in TOLERANCES},
                         np.array([0.0 if len(better) else np.nan]),
                         np.array([0.0 if len(better) else np.nan]), 1))
    table = pd.DataFrame(rows)
    rec_k, text = recommend(table, len(counts))
    return ValSizeResult(table=table, regret=dist, n_classes=len(counts), n_examples=n,
                         n_trials=t, n_pairs=len(better), recommended_k=rec_k,
                         recommendation=text)


def _row(label, k, images, r, p_best, p_tol, wrong, tie, draws) -> dict:
    row = {
        "k_per_class": label, "k": k, "images": images, "draws": draws,
        "regret_mean_pt": r.mean(), "regret_median_pt": np.median(r),
        "regret_q90_pt": np.quantile(r, 0.9), "regret_q95_pt": np.quantile(r, 0.95),
        "regret_max_pt": r.max(), "p_best": p_best.mean(),
    }
    for tol, v in p_tol.items():
        row[f"p_within_{tol:g}pt"] = v.mean()
    row["pair_misrank"] = np.mean(wrong + 0.5 * tie)  # a tie counts as a coin flip
    row["pair_wrong"] = np.mean(wrong)
    row["pair_tie"] = np.mean(tie)
    return row


def recommend(table: pd.DataFrame, n_classes: int, tol: float = 0.5,
              target: float = TARGET) -> tuple[int | None, str]:
    """Smallest k from which on every k reaches P(within `tol` pt) >= `target`."""
    col = f"p_within_{tol:g}pt"
    strat = table[table["k_per_class"] != "all"].reset_index(drop=True)
    ok = (strat[col] >= target - _EPS).to_numpy()
    good = [i for i in range(len(ok)) if ok[i:].all()]
    if not good:
        last = strat.iloc[-1] if len(strat) else None
        where = (f" (at k = {int(last['k'])}: {100 * last[col]:.0f}%)" if last is not None else "")
        return None, (
            f"for this sweep, no stratified subset up to the smallest class size selects within "
            f"{tol:g} pt of the best with {100 * target:.0f}% probability{where}; "
            f"keep the full validation split"
        )
    k = int(strat.loc[good[0], "k"])
    whole = good[0] == len(strat) - 1 and "all" not in set(table["k_per_class"])
    return k, (
        f"for this sweep, k >= {k} images per class ({k * n_classes} images"
        f"{', i.e. only the whole split' if whole else ''}) select within "
        f"{tol:g} pt of the best with {100 * target:.0f}% probability"
    )


def plot_valsize(res: ValSizeResult, title: str = ""):
    """Regret distribution (left) and selection probabilities (right) against k; (fig, data)."""
    labels = list(res.table["k_per_class"])
    pos = np.arange(len(labels))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax1.boxplot([res.regret[lab] for lab in labels], positions=pos, whis=(5, 95),
                showfliers=False, widths=0.6)
    ax1.plot(pos, res.table["regret_mean_pt"], "o-", color="#c44e52", ms=4, label="mean")
    ax1.set_xticks(pos, labels)
    ax1.set_xlabel("validation images per class (k)")
    ax1.set_ylabel("selection regret [pt] (best − picked, full split)")
    ax1.set_title("regret over random stratified subsets (box: quartiles, whiskers 5–95%)",
                  fontsize=9)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    styles = [("p_best", "P(pick the best)", "-", "black")]
    styles += [(f"p_within_{t:g}pt", f"P(within {t:g} pt)", "-", c)
               for t, c in zip(TOLERANCES, ("#4c72b0", "#55a868"))]
    for col, lab, ls, c in styles:
        ax2.plot(pos, res.table[col], marker="o", ms=4, ls=ls, color=c, label=lab)
    if res.n_pairs:
        ax2.plot(pos, res.table["pair_misrank"], marker="s", ms=4, ls="--", color="#dd8452",
                 label=f"close pairs ranked wrongly ({res.n_pairs} pairs)")
    ax2.axhline(TARGET, color="grey", lw=0.8, ls=":")
    if res.recommended_k is not None:
        i = labels.index(str(res.recommended_k))
        ax2.axvline(i, color="#4c72b0", lw=0.8, ls=":")
    ax2.set_xticks(pos, labels)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("validation images per class (k)")
    ax2.set_ylabel("probability")
    ax2.legend(fontsize=8, loc="best", framealpha=0.85)
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, res.table
