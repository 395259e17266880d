"""Seed repeats of the best configurations after the search (`--reseed-top K --seeds S`).

A search ranks configurations by one run each, so the difference between the best two can be
seed noise (two top digits trials swapped order when rerun on another CPU). After the search,
the K best configurations (by the sweep's metric, the mean over the seeds a configuration
already has; only completed trials that are not short runs) are trained again with the seeds
they lack until each has S seeds: seeds 0, 1, 2, ... not used yet. The repeats are ordinary Ray
Tune trials of a second experiment in `<sweep>/ray-reseed/` (same trainable, checkpoints,
retries and `--resume`), and their rows join the sweep's results table; `config_id` ties the
seeds of a configuration together (tune/results.py), and the report shows each finalist's mean
± std over seeds and whether the pick stands out from seed noise.

`<sweep>/reseed.json` records the decision before the repeats start (finalists, seeds, the
points to run, the search's trial ids), so a resumed sweep reruns exactly the same repeats.
This module does not import Ray.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from s4l_models.errors import UserError
from s4l_models.io import atomic_write_text
from tune.results import FINISHED_STATUSES, meaningful

RESEED_FILE = "reseed.json"
RAY_SUBDIR = "ray-reseed"
def finalists(df: pd.DataFrame, metric: str, top: int) -> list[dict[str, Any]]:
    """The `top` best configurations by the mean of `metric` over their seeds, best first."""
    pool = df[meaningful(df) & df[metric].notna()] if metric in df.columns else df.iloc[0:0]
    if pool.empty:
        return []
    stats = (pool.groupby("config_id", sort=False)[metric].agg(["mean", "count"])
             .sort_values("mean", ascending=False, kind="stable").head(top))
    out = []
    for cid, row in stats.iterrows():
        trials = pool[pool["config_id"] == cid]
        out.append({
            "config_id": str(cid), "mean": float(row["mean"]), "n": int(row["count"]),
            "trial_ids": [str(t) for t in trials["trial_id"]],
            "seeds": sorted(int(s) for s in trials["seed"]),
        })
    return out


def _matches(value: Any, cell: Any) -> bool:
    """Does an axis value equal a table cell (lists are JSON strings in the table)?"""
    if hasattr(cell, "item"):  # a numpy scalar read from the table
        cell = cell.item()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value) == cell
    if isinstance(value, bool) or isinstance(cell, bool):
        return bool(value) == bool(cell) and type(value) is type(cell)
    if isinstance(value, (int, float)) and isinstance(cell, (int, float)):
        return float(value) == float(cell)
    return value == cell


def axis_point(row: Mapping[str, Any], axes: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The axis values (as the search space holds them) of one table row."""
    point = {}
    for key, values in axes.items():
        hit = [v for v in values if _matches(v, row[key])]
        if not hit:
            raise UserError(
                f"--reseed-top: trial {row['trial_id']} has {key}={row[key]!r}, which is not a "
                f"value of the sweep's axis; rerun the search or drop --reseed-top"
            )
        point[key] = hit[0]
    return point


def plan_reseed(df: pd.DataFrame, metric: str, top: int, seeds: int,
                axes: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The repeats to run: for each finalist its axis values with each seed it lacks."""
    chosen = finalists(df, metric, top)
    points = []
    for f in chosen:
        row = df[df["trial_id"] == f["trial_ids"][0]].iloc[0]
        base = axis_point(row, axes)
        have, new, s = set(f["seeds"]), [], 0
        while len(have) + len(new) < seeds:
            if s not in have:
                new.append(s)
            s += 1
        f["new_seeds"] = new
        points += [{**base, "seed": s} for s in new]
    return {
        "top": int(top), "seeds": int(seeds), "metric": metric, "finalists": chosen,
        "points": points, "search_trials": [str(t) for t in df["trial_id"]],
    }


def save_reseed(sweep_dir: str | Path, doc: dict[str, Any]) -> Path:
    path = Path(sweep_dir) / RESEED_FILE
    atomic_write_text(path, json.dumps(doc, indent=2, default=str))
    return path


def load_reseed(sweep_dir: str | Path) -> dict[str, Any] | None:
    path = Path(sweep_dir) / RESEED_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        doc, problem = None, f"is not valid JSON ({err})"
    else:
        problem = "is not a plan of seed repeats"
    if isinstance(doc, dict) and {"top", "seeds", "points", "search_trials"} <= set(doc):
        return doc
    raise UserError(
        f"{path} {problem}; it records which configurations get seed repeats: restore it from "
        "a backup"
    )


def reseed_finished(df: pd.DataFrame, doc: Mapping[str, Any]) -> bool:
    """Every planned repeat has a finished row in the table."""
    repeats = df[~df["trial_id"].astype(str).isin(set(doc["search_trials"]))]
    return len(repeats) >= len(doc["points"]) and bool(repeats["status"].isin(FINISHED_STATUSES).all())


__all__ = ["RESEED_FILE", "RAY_SUBDIR", "finalists", "plan_reseed", "axis_point",
           "save_reseed", "load_reseed", "reseed_finished"]
