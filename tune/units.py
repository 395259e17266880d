"""Device time in words, one format for the dry-run estimate (tune/sweep_plan.py) and the
report's measured cost (analysis/cost.py), so the two read alike and can be compared."""

from __future__ import annotations


def hours(h: float, device: str = "") -> str:
    """3 significant figures, in minutes below an hour: `1.23 CPU-hours`, `4.5 CPU-minutes`;
    without a device, plain `minutes`/`hours` (wall time)."""
    unit = f"{device}-" if device else ""
    if h < 1:
        return f"{h * 60:.3g} {unit}minutes"
    return f"{h:.3g} {unit}hours"


__all__ = ["hours"]
