"""Figure 3 of the paper: accuracy on each tiny validation subset against the full split.

One panel per tiny subset (every `val_{k}pc_top1` column with scores) and one row per sweep;
x = top-1 on the tiny subset, y = top-1 on the full validation split, one point per completed
trial, Pearson r and its p-value written on the panel as in the paper. The trial picked on the
tiny subset is red (ties: first in trial order, see `analysis.stats`); the other trials tied on
the top tiny score get a red ring; the best trial on the full split is a black star.
`figure3` returns the figure and the data of every panel, so tests check the marks on data.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .load import Sweep  # noqa: E402
from .stats import TinyResult, correlations, fmt_p, select, tiny_pairs  # noqa: E402


@dataclass
class Panel:
    """What one panel shows: points, the red (picked) trial, the starred (best) trial, r, p."""

    sweep: str
    k: int
    trial_ids: list[str]
    x: np.ndarray  # tiny-subset top-1, percent
    y: np.ndarray  # full-split top-1, percent
    red: str  # trial picked on the tiny subset
    tied: list[str]  # all trials sharing the top tiny score (red included)
    star: str  # best trial on the full split
    r: float
    p: float
    label: str  # the text written on the panel


def figure3(sweeps: list[Sweep], results: dict[str, list[TinyResult]] | None = None):
    """Draw Figure 3 for every sweep (rows) and tiny subset (columns); return (fig, panels).

    `results` (from `analysis.stats.tiny_study`, keyed by sweep name) supplies r and p; without
    it they are computed here.
    """
    rows = [(s, s.tiny_ks) for s in sweeps]
    ncols = max([len(ks) for _, ks in rows] + [1])
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(4.6 * ncols, 4.2 * len(rows)), squeeze=False
    )
    panels: list[Panel] = []
    for r_i, (sweep, ks) in enumerate(rows):
        by_k = {t.k: t for t in (results or {}).get(sweep.name, [])}
        for c_i in range(ncols):
            ax = axes[r_i][c_i]
            if c_i >= len(ks):
                ax.axis("off")
                if not ks and c_i == 0:
                    ax.text(0.5, 0.5, f"{sweep.name}: no tiny-subset scores",
                            ha="center", va="center", transform=ax.transAxes)
                continue
            k = ks[c_i]
            tiny, full, ids = tiny_pairs(sweep, k)
            panel = _panel(sweep.name, k, tiny, full, ids, by_k.get(k))
            _draw(ax, panel, sweep, len(rows) > 1)
            panels.append(panel)
    fig.tight_layout()
    return fig, panels


def _panel(name, k, tiny, full, ids, res: TinyResult | None) -> Panel:
    if res is not None:
        r, p, sel = res.corr["pearson"], res.corr["pearson_p"], res.selection
    else:
        c = correlations(tiny, full, n_boot=0)
        r, p, sel = c["pearson"], c["pearson_p"], select(tiny, full, ids)
    if np.isfinite(r):
        label = f"r = {r:.2f}; {fmt_p(p)}"
    else:
        why = "fewer than 3 trials" if len(ids) < 3 else "constant scores"
        label = f"r undefined ({why})"
    return Panel(sweep=name, k=k, trial_ids=ids, x=100 * tiny, y=100 * full, red=sel.picked,
                 tied=sel.tied, star=sel.best, r=r, p=p, label=label)


def _draw(ax, panel: Panel, sweep: Sweep, multi: bool) -> None:
    pos = {t: i for i, t in enumerate(panel.trial_ids)}
    ax.scatter(panel.x, panel.y, s=18, c="#4c72b0", alpha=0.55, linewidths=0,
               label=f"trials ({len(panel.x)})")
    others = [pos[t] for t in panel.tied if t != panel.red]
    if others:
        ax.scatter(panel.x[others], panel.y[others], s=60, facecolors="none",
                   edgecolors="red", linewidths=1.0, label=f"tied on {panel.k}/class")
    i, b = pos[panel.red], pos[panel.star]
    ax.scatter(panel.x[b], panel.y[b], s=220, marker="*", c="black", zorder=4,
               label="best on full split")
    ax.scatter(panel.x[i], panel.y[i], s=60, c="red", edgecolors="darkred", zorder=5,
               label=f"best on {panel.k}/class")
    n_img = n_images(sweep, panel.k)
    size = f" ({n_img} images)" if n_img else ""
    ax.set_xlabel(f"Accuracy [%] on {panel.k}/class val-set{size}")
    ax.set_ylabel("Accuracy [%] on full val-set")
    ax.text(0.04, 0.95, panel.label, transform=ax.transAxes, va="top", fontsize=11,
            bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    if multi:
        ax.set_title(sweep.name, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.8)


def n_images(sweep: Sweep, k: int) -> int | None:
    if sweep.predictions is None:
        return None
    counts = np.bincount(sweep.predictions.label)
    return int(np.minimum(counts[counts > 0], k).sum())


def save(fig, stem) -> list[str]:
    """Write `stem`.png and `stem`.svg; return the file names."""
    names = []
    for ext in ("png", "svg"):
        path = f"{stem}.{ext}"
        fig.savefig(path, dpi=110 if ext == "png" else None, bbox_inches="tight")
        names.append(path)
    plt.close(fig)
    return names
