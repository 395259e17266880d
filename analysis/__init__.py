"""Analysis of finished sweeps: the paper's Figure 3 and beyond (`s4l-report`).

Modules: `load` (read and validate a sweep directory), `stats` (tiny-subset correlations against
the full split and the rest of it with nulls that keep the overlap, selection regret as an
expectation over ties, exact binomial intervals, McNemar, few-points warnings), `figure3`,
`valsize` (validation-size study judged on a held-out half), `sensitivity` (ω² and permutation
p per axis), `leaderboard` (seed means, finalists, Welch's test), `report`
(`build_report`: everything into one HTML page), `cli` (`s4l-report`). Sweep directories
with planted answers, for tests and benchmarks: `tests/planted_sweeps.py`.
"""

from __future__ import annotations


def build_report(run_dirs, out_dir, **kwargs):
    """See `analysis.report.build_report` (imported lazily: it loads matplotlib)."""
    from .report import build_report as _build

    return _build(run_dirs, out_dir, **kwargs)


__all__ = ["build_report"]
