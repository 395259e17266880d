"""What a sweep prints at its end and when resumed: its state, its summary lines, the report.

`sweep_state` says from the results table whether every planned trial has finished; `summarize`
gives the lines the sweep prints (counts of every planned trial, the best completed trial, the
best configuration by its seed mean when there are seed repeats, the paths); `make_report`
builds the analysis report with s4l-report's defaults. Ray-free.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from s4l_models.errors import UserError
from tune.results import (
    FINISHED_STATUSES,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SHORT_RULE,
    SWEEP_PREDICTIONS,
    meaningful,
    read_table,
)


def sweep_state(sweep_dir: Path, planned: int) -> tuple[bool, int]:
    """(finished, errored) from the results table: finished when every planned trial has a row
    and none is still running. A sweep without a table has not finished."""
    path = sweep_dir / RESULTS_PARQUET
    if not path.is_file():
        return False, 0
    status = read_table(path, columns=["status"])["status"]
    finished = len(status) >= planned and bool(status.isin(FINISHED_STATUSES).all())
    return finished, int((status == "errored").sum())


def retry_hint(sweep_dir: Path, n_errored: int) -> str:
    return (
        f"{n_errored} trial(s) errored; to rerun only those (from their last checkpoint): "
        f"python tune/run_sweep.py --resume {sweep_dir} --retry-errored"
    )


def seed_means(pool: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Configurations run with more than one seed, by their mean `metric` (best first; columns
    mean, std, count; index config_id). A configuration a random or Optuna search drew twice
    with one seed is one run."""
    if "config_id" not in pool.columns or pool.empty:
        return pd.DataFrame(columns=["mean", "std", "count"])
    seeds = pool.drop_duplicates(["config_id", "seed"]) if "seed" in pool else pool
    agg = seeds.groupby("config_id", sort=False)[metric].agg(["mean", "std", "count"])
    return agg[agg["count"] > 1].sort_values("mean", ascending=False, kind="stable")


def best_config_by_seed_mean(pool: pd.DataFrame, metric: str) -> str | None:
    """The config_id the summary recommends by its seed mean, or None without seed repeats."""
    agg = seed_means(pool, metric)
    return None if agg.empty else str(agg.index[0])


def summarize(sweep_dir: Path, metric: str, axes: list[str], planned: int | None = None
              ) -> tuple[str, int]:
    """Final lines: counts of every planned trial, the best completed configuration by the
    metric, the paths."""
    df = read_table(sweep_dir / RESULTS_PARQUET)
    counts = df["status"].value_counts().to_dict()
    planned = max(int(planned or 0), len(df))
    if planned > len(df):
        counts["not started"] = planned - len(df)
    n_failed = int(counts.get("errored", 0))
    lines = [
        "trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f" (of {planned} planned)"
    ]
    if n_failed:
        lines.append(f"{n_failed} trial(s) failed: see the 'error' column of {sweep_dir / RESULTS_CSV}")
    n_short = int((df["status"] == "completed").sum() - meaningful(df).sum())
    if n_short:
        lines.append(
            f"{n_short} completed trial(s) were too short to mean anything (short_run: "
            f"{SHORT_RULE}); the best is chosen without them"
        )
    pool = df[meaningful(df)]
    kind = "completed trial"
    if pool.empty:  # no final score: the best of the trials a scheduler stopped, said as such
        pool = df[(df["status"] == "stopped_early") & ~df["short_run"].astype(bool)]
        kind = "trial (stopped early: not a final score)"
    pool = pool[pool[metric].notna()] if metric in pool else pool.iloc[0:0]
    def config_text(row) -> str:
        return ", ".join(f"{k}={row[k]:g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                         for k in axes)

    if not pool.empty:
        best = pool.loc[pool[metric].idxmax()]
        cfg = config_text(best)
        extra = f", val_full_top1 {best['val_full_top1']:.4f}" if metric != "val_full_top1" else ""
        test = f", test_top1 {best['test_top1']:.4f}" if pd.notna(best.get("test_top1")) else ""
        # several trials with the very score: the first (table order) is named, the rest counted
        n_tied = int((pool[metric] == best[metric]).sum())
        tied = (f"; {n_tied} trials share this score, the first in the table is named"
                if n_tied > 1 else "")
        lines.append(
            f"best {kind} by {metric}: {best[metric]:.4f}{extra}{test} "
            f"(trial {best['trial_id']}" + (f": {cfg}" if cfg else "") + f"{tied})"
        )
        agg = seed_means(pool, metric)
        if not agg.empty:  # seed repeats: configurations by their seed mean
            cid, r = agg.index[0], agg.iloc[0]
            first = pool[pool["config_id"] == cid].iloc[0]
            lines.append(
                f"best configuration by its mean {metric} over seeds: {r['mean']:.4f} ± "
                f"{r['std']:.4f} (std over {int(r['count'])} seeds; config {cid}: "
                f"{config_text(first)})"
            )
    else:
        done = df[df["status"] == "completed"]
        n_done, n_short_done = len(done), int(done["short_run"].astype(bool).sum())
        if n_done and n_short_done == n_done:
            lines.append(f"all {n_done} completed trial(s) are short runs: no best is named")
        else:
            lines.append(f"no completed trial has a {metric} yet")
    running = df[(df["status"] == "running") & df[metric].notna()] if metric in df else df.iloc[0:0]
    if not running.empty and (pool.empty or running[metric].max() > pool[metric].max()):
        top = running.loc[running[metric].idxmax()]
        lines.append(
            f"(an unfinished trial, {top['trial_id']}, reached {top[metric]:.4f} at its last "
            "evaluation; not a final score)"
        )
    lines.append(f"results: {sweep_dir / RESULTS_PARQUET} and {sweep_dir / RESULTS_CSV}")
    if (sweep_dir / SWEEP_PREDICTIONS).is_file():
        lines.append(f"per-example predictions: {sweep_dir / SWEEP_PREDICTIONS}")
    return "\n".join(lines), int((df["status"] == "completed").sum())


def make_report(sweep_dir: Path, where: str | None = None) -> str:
    """Run the analysis report (s4l-report) on the finished sweep; one line either way.
    `where`: what s4l-report is given to rebuild it (a sweep on an object store: its URI, not
    the local mirror `sweep_dir`, whose report would not reach the store)."""
    again = f"s4l-report {shlex.quote(where or str(sweep_dir))}"
    try:
        # analysis.report loads matplotlib: only when a report is made
        from analysis.report import build_report
    except Exception:
        return f"report: {again}"
    out = sweep_dir / "report"
    try:
        # the defaults of s4l-report: the same directory gives the same page either way
        index = build_report([str(sweep_dir)], out, log=None)
    except UserError as err:
        return f"report: not made ({err})"
    except Exception as err:  # the sweep's results stand without the report
        return f"report: failed ({type(err).__name__}: {err}); rerun {again}"
    return f"report: {index}"


__all__ = ["sweep_state", "retry_hint", "summarize", "make_report"]
