"""Sensitivity: full-split accuracy against each axis of the sweep, and which axes matter.

Axes are the sweep's own (space.json), plus `depth` and `version` split off an architecture name
such as `resnet50_v2` (and `width` from a `_x4` suffix when the table has no width column);
`seed` is no axis here (the leaderboard reports the seed-to-seed spread). Per axis value: box
and points of `val_full_top1`. Axes are ranked by eta-squared (share of the variance of
full-split accuracy explained by the axis alone: between-group / total sum of squares), with the
spread of per-value best and median in points beside it. The paper (Section 4.1) found weight
decay and schedule (epochs) crucial and the architecture (depth, version, width) much less
important; `verdict` says whether this sweep agrees.
"""

from __future__ import annotations

import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .load import FULL, Sweep  # noqa: E402

ARCH_RE = re.compile(r"^resnet(\d+)_(v\d)(?:_x([0-9.]+))?$")
PAPER_MATTERS = ("wd", "epochs")  # "tuning the weight decay and training duration is crucial"
PAPER_LITTLE = ("arch", "depth", "version", "width")  # "architecture ... does not matter much"
LABELS = {"wd": "weight decay", "lr": "learning rate", "epochs": "epochs (schedule)",
          "arch": "architecture", "depth": "depth", "version": "version", "width": "width",
          "color_aug": "color augmentation", "batch_size": "batch size"}


def _cell(v) -> object:
    """Hashable, readable axis value (lists and dicts as JSON)."""
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    return v


def axis_frame(sweep: Sweep) -> tuple[pd.DataFrame, list[str]]:
    """Completed trials with derived axis columns, and the axes that vary among them."""
    df = sweep.completed.copy()
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
        df[a] = df[a].map(_cell)
    varying = [a for a in axes if df[a].map(str).nunique() > 1]
    return df, varying


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


def eta_squared(y: np.ndarray, groups: np.ndarray) -> float:
    """Between-group sum of squares over total sum of squares (one-way)."""
    y = np.asarray(y, dtype=float)
    _, inv = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    total = ((y - y.mean()) ** 2).sum()
    if total == 0:
        return float("nan")
    n = np.bincount(inv)
    means = np.bincount(inv, weights=y) / n
    return float((n * (means - y.mean()) ** 2).sum() / total)


def sensitivity(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranking per axis, summary per axis value), accuracy in percent."""
    df, axes = axis_frame(sweep)
    y = 100 * df[FULL].to_numpy(float)
    rank_rows, value_rows = [], []
    for a in axes:
        g = df[a].map(str).to_numpy()
        per = pd.DataFrame({"g": g, "y": y}).groupby("g", sort=False)["y"]
        best, med = per.max(), per.median()
        rank_rows.append({
            "sweep": sweep.name, "axis": a, "n_values": len(best),
            "eta_squared": eta_squared(y, g),
            "best_spread_pt": best.max() - best.min(),
            "median_spread_pt": med.max() - med.min(),
        })
        for v in _ordered_values(df[a]):
            sel = y[g == str(v)]
            value_rows.append({"sweep": sweep.name, "axis": a, "value": _fmt(v), "n": len(sel),
                               "best": sel.max(), "median": np.median(sel), "mean": sel.mean(),
                               "worst": sel.min()})
    ranking = pd.DataFrame(rank_rows, columns=["sweep", "axis", "n_values", "eta_squared",
                                               "best_spread_pt", "median_spread_pt"])
    ranking = ranking.sort_values("eta_squared", ascending=False, na_position="last",
                                  kind="stable").reset_index(drop=True)
    ranking.insert(2, "rank", np.arange(1, len(ranking) + 1))
    return ranking, pd.DataFrame(value_rows)


def verdict(ranking: pd.DataFrame) -> str:
    """The ranking in words and whether it matches the paper's finding."""
    if ranking.empty:
        return "No axis varies among the completed trials, so there is no sensitivity to rank."
    parts = [f"{r.axis} {r.eta_squared:.3f}" for r in ranking.itertuples()]
    text = "Axes ranked by variance of full-split top-1 explained (η²): " + ", ".join(parts) + "."
    eta = dict(zip(ranking["axis"], ranking["eta_squared"]))
    matters = [a for a in PAPER_MATTERS if a in eta]
    little = [a for a in PAPER_LITTLE if a in eta]
    if matters and little:
        lo = min(eta[a] for a in matters)
        hi = max(eta[a] for a in little)
        agree = lo > hi
        text += (
            f" The paper found weight decay and schedule crucial and architecture much less: here "
            f"{' and '.join(matters)} explain at least {lo:.3f} and {'/'.join(little)} at most "
            f"{hi:.3f}, so this sweep {'agrees' if agree else 'does not agree'} with the paper."
        )
    else:
        missing = [a for a in PAPER_MATTERS + ("arch",) if a not in eta]
        text += (f" The paper's finding (weight decay and schedule matter, architecture much "
                 f"less) cannot be checked here: {', '.join(missing)} do not vary.")
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
        ax.set_title(f"#{row['rank']} {LABELS.get(a, a)}  (η² = {row['eta_squared']:.3f})",
                     fontsize=9)
        if i % ncols == 0:
            ax.set_ylabel("full-split top-1 [%]")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig, ranking
