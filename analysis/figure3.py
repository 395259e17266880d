"""Figure 3 of the paper: accuracy on each tiny validation subset against a yardstick.

One panel per tiny subset (every `val_{k}pc_top1` column with scores) and, per sweep, one row per
yardstick (`analysis.stats`):

- **nested**, the paper's construction: y = top-1 on the full validation split, which contains
  the subset; the correlation is partly the overlap's (a subset inside its yardstick correlates
  with it even when all trials are equally good), so the panel gives r with its bootstrap
  interval, the r that overlap alone gives (`mean r under H0`: the mean r of the simulated null the
  p-value is tested against, `corr["pearson_null"]`, the same number as the report's table and
  words; not the sqrt(subset/split) approximation `null_r`), and the p-value against that null;
- **disjoint**: y = top-1 on the rest of the split (the examples not in the subset), which the
  subset never overlaps, so r measures what the subset says about other images (p against 0).
  Drawn when the sweep has per-example predictions and its splits.npz.

x = top-1 on the tiny subset, one point per completed trial. The trial picked on the subset when
ties go to the first in trial order is red, the other trials tied at the top get a red ring
(the report's headline numbers are the expectation over the tied trials), and the best trial on
the yardstick is a black star. Where a configuration was run with several seeds (`s4l-sweep
--reseed-top`), its seed mean is an orange square with ± one std over seeds on both axes.
`figure3` returns the figure and the data of every panel, so tests check the marks on data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from s4l_models.io import atomic_write  # noqa: E402

from .load import Sweep  # noqa: E402
from .stats import NO_DRAWS, TinyResult, Yardstick, fmt_p, subset_images, tiny_study  # noqa: E402

TITLES = {"nested": "full split (contains the subset; paper's Figure 3)",
          "disjoint": "rest of the split (disjoint from the subset)"}
YLABELS = {"nested": "Accuracy [%] on full val-set",
           "disjoint": "Accuracy [%] on the rest of the val-set"}


@dataclass
class SeedBar:
    """A configuration with several seeds: mean and std over seeds on both axes (percent)."""

    config_id: str
    n: int
    x: float
    y: float
    x_std: float
    y_std: float


@dataclass
class Panel:
    """What one panel shows: points, the red (picked) trial, the starred (best) trial, r, p."""

    sweep: str
    k: int
    yardstick: str  # "nested" | "disjoint"
    trial_ids: list[str]
    x: np.ndarray  # tiny-subset top-1, percent
    y: np.ndarray  # yardstick top-1, percent
    red: str  # trial picked on the tiny subset, ties to the first in trial order
    tied: list[str]  # all trials sharing the top tiny score (red included)
    star: str  # best trial on the yardstick
    r: float
    p: float
    label: str  # the text written on the panel
    seed_bars: list[SeedBar] = field(default_factory=list)


def figure3(sweeps: list[Sweep], results: dict[str, list[TinyResult]] | None = None):
    """Draw Figure 3 for every sweep and yardstick (rows) and tiny subset (columns).

    `results` (from `analysis.stats.tiny_study`, keyed by sweep name) supplies the statistics;
    without it they are computed here with the same defaults. Returns (fig, panels)."""
    rows = []
    for s in sweeps:
        res = (results or {}).get(s.name)
        if res is None:
            res = tiny_study(s, seed=0)  # the report's defaults
        rows.append((s, res, "nested"))
        if any(r.disjoint is not None for r in res):
            rows.append((s, res, "disjoint"))
    ncols = max([len(r) for _, r, _ in rows] + [1])
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(4.6 * ncols, 4.2 * len(rows)), squeeze=False
    )
    panels: list[Panel] = []
    for r_i, (sweep, res, yard) in enumerate(rows):
        for c_i in range(ncols):
            ax = axes[r_i][c_i]
            tr = res[c_i] if c_i < len(res) else None
            y = getattr(tr, yard, None) if tr is not None else None
            if y is None:
                ax.axis("off")
                if not res and c_i == 0:
                    ax.text(0.5, 0.5, f"{sweep.name}: no tiny-subset scores",
                            ha="center", va="center", transform=ax.transAxes)
                continue
            panel = _panel(sweep, tr.k, y)
            _draw(ax, panel, sweep, len(sweeps) > 1)
            panels.append(panel)
    fig.tight_layout()
    return fig, panels


def _label(y: Yardstick) -> str:
    c = y.corr
    r, p = c["pearson"], c["pearson_p"]
    if not np.isfinite(r):
        why = "fewer than 3 trials" if y.n_trials < 3 else "constant scores"
        return f"r undefined ({why})"
    ci = f" [{c['pearson_lo']:.2f}, {c['pearson_hi']:.2f}]" if np.isfinite(c["pearson_lo"]) else ""
    text = f"r = {r:.2f}{ci}"
    if y.name == "nested":
        null = c.get("pearson_null", float("nan"))
        if np.isfinite(null):
            text += f"\nmean r under H0 (overlap only) = {null:.2f}"
        text += (f"\n{fmt_p(p, c.get('pearson_p_min'))} vs H0" if np.isfinite(p)
                 else "\np n/a (--boot 0)" if y.null == NO_DRAWS else "\np n/a (no predictions)")
    else:
        text += f"\n{fmt_p(p, c.get('pearson_p_min'))} vs r = 0" if np.isfinite(p) else ""
    return text


def _seed_bars(sweep: Sweep, ids: list[str], x: np.ndarray, y: np.ndarray) -> list[SeedBar]:
    df = sweep.completed
    if "config_id" not in df.columns:
        return []
    cid = dict(zip(df["trial_id"].astype(str), df["config_id"].astype(str)))
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(ids):
        groups.setdefault(cid.get(t, t), []).append(i)
    return [SeedBar(c, len(ix), float(x[ix].mean()), float(y[ix].mean()),
                    float(x[ix].std(ddof=1)), float(y[ix].std(ddof=1)))
            for c, ix in groups.items() if len(ix) > 1]


def _panel(sweep: Sweep, k: int, y: Yardstick) -> Panel:
    sel = y.selection
    x, yy = 100 * np.asarray(y.tiny, float), 100 * np.asarray(y.scores, float)
    return Panel(sweep=sweep.name, k=k, yardstick=y.name, trial_ids=list(y.trial_ids), x=x,
                 y=yy, red=sel.order_pick, tied=list(sel.tied), star=sel.best,
                 r=y.corr["pearson"], p=y.corr["pearson_p"], label=_label(y),
                 seed_bars=_seed_bars(sweep, list(y.trial_ids), x, yy))


def _draw(ax, panel: Panel, sweep: Sweep, multi: bool) -> None:
    pos = {t: i for i, t in enumerate(panel.trial_ids)}
    ax.scatter(panel.x, panel.y, s=18, c="#4c72b0", alpha=0.55, linewidths=0,
               label=f"trials ({len(panel.x)})")
    others = [pos[t] for t in panel.tied if t != panel.red]
    if others:
        ax.scatter(panel.x[others], panel.y[others], s=60, facecolors="none",
                   edgecolors="red", linewidths=1.0, label=f"tied on {panel.k}/class")
    for j, b in enumerate(panel.seed_bars):
        ax.errorbar(b.x, b.y, xerr=b.x_std, yerr=b.y_std, fmt="s", ms=5, color="#dd8452",
                    ecolor="#dd8452", elinewidth=1, capsize=2, zorder=3,
                    label=(f"seed mean ± std ({len(panel.seed_bars)} configs)" if j == 0 else None))
    i, b = pos[panel.red], pos[panel.star]
    ax.scatter(panel.x[b], panel.y[b], s=220, marker="*", c="black", zorder=4,
               label="best on " + ("full split" if panel.yardstick == "nested" else "the rest"))
    ax.scatter(panel.x[i], panel.y[i], s=60, c="red", edgecolors="darkred", zorder=5,
               label=f"best on {panel.k}/class")
    n_img = subset_images(sweep, panel.k)
    size = f" ({n_img} images)" if n_img else ""
    ax.set_xlabel(f"Accuracy [%] on {panel.k}/class val-set{size}")
    ax.set_ylabel(YLABELS[panel.yardstick])
    ax.text(0.04, 0.95, panel.label, transform=ax.transAxes, va="top", fontsize=9,
            bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    ax.set_title((f"{sweep.name}: " if multi else "") + TITLES[panel.yardstick], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.8)


def save(fig, stem, retry: str = "rerun the command") -> list[str]:
    """Write `stem`.png and `stem`.svg, each atomically (an interrupted or disk-full write
    leaves the previous file, never half of one: `retry` is the advice then); return the file
    names. The same figure gives the same bytes: no creation date, and SVG element ids from a
    fixed salt instead of random ones, so a report rebuilt from the same files is identical and
    a committed one changes only where its data do."""
    names = []
    for ext in ("png", "svg"):
        path = f"{stem}.{ext}"
        meta = {"Date": None} if ext == "svg" else {"Software": None}

        def write(tmp, ext=ext, meta=meta):
            with plt.rc_context({"svg.hashsalt": "s4l-tune"}):
                fig.savefig(tmp, format=ext, dpi=110 if ext == "png" else None,
                            bbox_inches="tight", metadata=meta)

        atomic_write(path, write, retry=retry)
        names.append(path)
    plt.close(fig)
    return names
