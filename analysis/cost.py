"""What a sweep cost: device-seconds per trial summed per sweep and per axis value.

A trial's cost is the resources Ray reserved for it times its wall time (`cpu_seconds`,
`gpu_seconds` of the results table, version 5): what it took from the cluster, whether or not it
used its CPUs or GPU fully. Every trial counts, errored and stopped ones included: they were paid
for. Tables written before version 5 have no cost columns; their cost is then derived from
`train_seconds` and the sweep's `--cpus-per-trial`/`--gpus-per-trial` in space.json, and the
result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tune.provenance import describe
from tune.units import hours

from .load import Sweep


@dataclass
class Cost:
    sweep: str
    trials: int
    cpu_hours: float
    gpu_hours: float
    source: str  # "table" | "flags" | "none"
    wall_hours: float | None  # the finished sessions' wall time, when recorded

    def words(self) -> str:
        if self.source == "none":
            return f"{self.sweep}: the cost of its trials was not recorded"
        gpu = f", {hours(self.gpu_hours, 'GPU')}" if self.gpu_hours > 0 else ""
        how = ("" if self.source == "table" else
               " (from train_seconds x the sweep's --cpus/--gpus-per-trial: a table before "
               "version 5 has no cost columns)")
        # (wall time is in the provenance lines, not here: the sweep's own report is built
        # before its session ends, and one directory must give one set of key numbers)
        return f"{self.sweep}: {self.trials} trials used {hours(self.cpu_hours, 'CPU')}{gpu}{how}"


def device_seconds(s: Sweep) -> tuple[pd.DataFrame, str]:
    """Per trial: cpu_seconds and gpu_seconds, and where they came from."""
    df = s.df
    if {"cpu_seconds", "gpu_seconds"} <= set(df.columns) and df["cpu_seconds"].notna().any():
        out = df[["cpu_seconds", "gpu_seconds"]].astype(float).fillna(0.0)
        return out, "table"
    flags = s.space.get("flags") or {}
    if "train_seconds" not in df.columns or not flags:
        return pd.DataFrame({"cpu_seconds": np.nan, "gpu_seconds": np.nan}, index=df.index), "none"
    wall = pd.to_numeric(df["train_seconds"], errors="coerce").fillna(0.0)
    cpus = float(flags.get("cpus_per_trial") or 1.0)
    gpus = float(flags.get("gpus_per_trial") or 0.0)
    return pd.DataFrame({"cpu_seconds": wall * cpus, "gpu_seconds": wall * gpus}), "flags"


def _wall_hours(s: Sweep) -> float | None:
    sessions = ((s.space.get("provenance") or {}).get("sessions")) or []
    spans = []
    for x in sessions:
        try:
            a, b = pd.Timestamp(x["started"]), pd.Timestamp(x["finished"])
        except (KeyError, TypeError, ValueError):
            continue
        if not (pd.isna(a) or pd.isna(b)):
            spans.append((b - a).total_seconds())
    return sum(spans) / 3600 if spans else None


def sweep_cost(s: Sweep) -> Cost:
    secs, source = device_seconds(s)
    if source == "none":
        return Cost(s.name, len(s.df), math.nan, math.nan, source, _wall_hours(s))
    return Cost(s.name, len(s.df), float(secs["cpu_seconds"].sum()) / 3600,
                float(secs["gpu_seconds"].sum()) / 3600, source, _wall_hours(s))


def cost_by_axis(s: Sweep) -> pd.DataFrame:
    """Per axis and value: trials, CPU-hours, GPU-hours and the share of the sweep's cost."""
    secs, source = device_seconds(s)
    if source == "none":
        return pd.DataFrame()
    total = float(secs["cpu_seconds"].sum() + secs["gpu_seconds"].sum()) or math.nan
    rows = []
    for axis in s.axes:
        if axis not in s.df.columns:
            continue
        values = s.df[axis].astype(str)
        for value, idx in values.groupby(values, sort=True).groups.items():
            c, g = secs.loc[idx, "cpu_seconds"].sum(), secs.loc[idx, "gpu_seconds"].sum()
            rows.append({"sweep": s.name, "axis": axis, "value": value, "trials": len(idx),
                         "cpu_hours": c / 3600, "gpu_hours": g / 3600,
                         "share": (c + g) / total})
    return pd.DataFrame(rows)


def provenance_lines(s: Sweep) -> list[str]:
    """One line per session that ran the sweep (space.json `provenance`), for the page."""
    sessions = ((s.space.get("provenance") or {}).get("sessions")) or []
    return describe(sessions).splitlines() if sessions else []


__all__ = ["Cost", "sweep_cost", "cost_by_axis", "device_seconds", "provenance_lines"]
