"""Analysis of finished sweeps: the paper's Figure 3 and beyond (`s4l-report`).

Modules: `load` (read and validate a sweep directory), `stats` (tiny-subset correlations,
selection regret, top-k overlap), `figure3`, `valsize` (validation-size study), `sensitivity`,
`leaderboard`, `report` (`build_report`: everything into one HTML page), `cli` (`s4l-report`),
`synthetic` (sweep directories with a known answer, for tests and demos).
"""

from __future__ import annotations


def build_report(run_dirs, out_dir, **kwargs):
    """See `analysis.report.build_report` (imported lazily: it loads matplotlib)."""
    from .report import build_report as _build

    return _build(run_dirs, out_dir, **kwargs)


__all__ = ["build_report"]
