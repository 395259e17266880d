"""Read and validate one sweep directory: results table, search space and per-example predictions.

A sweep directory (written by `s4l-sweep`) holds `results.parquet` (or `results.csv`), one row
per trial in trial order, `space.json` (the search space and its axes), `predictions.npz`
(per-example correctness of every completed trial on the full validation split) and
`splits.npz` (the seeded splits; its `tiny_{k}` arrays list the example ids, values of the
predictions' `index`, of each tiny validation subset: they become `Predictions.tiny`, read with
numpy alone). `load_sweep`
turns it into a `Sweep`; every problem a user can fix is a `UserError` whose one-line message
names the problem and the fix. The analysis never retrains: it reads only these files.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from s4l_models.errors import UserError, first_line
from s4l_models.predictions import SWEEP_PREDICTIONS, load_sweep_predictions
from tune.reseed import load_reseed
from tune.results import (
    RAY_SUBDIR,
    READABLE_VERSIONS,
    RESULTS_CSV,
    RESULTS_PARQUET,
    RESULTS_VERSION,
    SHORT_RULE,  # the results-table format it reads
    SPACE_JSON,
    internal_form,
    read_table,
    resume_rebuilds,
    upgrade_table,
)
from tune.results import setting_columns as results_setting_columns

RESULTS_FILES = (RESULTS_PARQUET, RESULTS_CSV)
SPACE_FILE = SPACE_JSON
PREDICTIONS_FILE = SWEEP_PREDICTIONS  # s4l_models/predictions.py owns the format
SPLITS_FILE = "splits.npz"  # written by s4l_models.data.splits.save_splits
TINY_KEY_RE = re.compile(r"^tiny_(\d+)$")
FULL = "val_full_top1"  # the reference score: top-1 on the full validation split
REQUIRED_COLUMNS = ("trial_id", "status", FULL)
METRIC_RE = re.compile(r"^(val_(\d+)pc|val_full|test)_top(1|5)$")
TINY_RE = re.compile(r"^val_(\d+)pc_top1$")
REGENERATE = "rerun the sweep (or re-export its results) with the current s4l-sweep"


@dataclass
class Predictions:
    """Per-example correctness on the full validation split, rows aligned to `trial_ids`."""

    trial_ids: np.ndarray  # [T] str
    label: np.ndarray  # [N] int, class of each validation example
    top1: np.ndarray  # [T, N] bool
    top5: np.ndarray  # [T, N] bool
    index: np.ndarray  # [N] example ids
    # k images per class -> [N] bool mask of that tiny subset over the columns of top1 (from
    # splits.npz; empty when the sweep has none)
    tiny: dict[int, np.ndarray] = field(default_factory=dict)
    # the file's arrays as loaded (s4l_models.predictions.load_sweep_predictions), kept for the
    # few-label study, which needs the predicted classes and confidences: one read per report
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Sweep:
    """One sweep: all trials, the completed ones, its axes and (when saved) its predictions."""

    run_dir: Path
    name: str  # short label: the directory name
    space_name: str  # the search space's name (or the directory name without space.json)
    df: pd.DataFrame  # every trial, results-table order (= trial order)
    completed: pd.DataFrame  # trials with status completed and a full-split score, same order
    axes: list[str]  # swept settings, from space.json (or inferred from the table)
    metric: str = FULL  # what the sweep optimised
    mode: str = "max"
    space: dict = field(default_factory=dict)
    predictions: Predictions | None = None  # aligned to a subset of `completed` (see notes)
    notes: list[str] = field(default_factory=list)  # things the report should say
    # trial ids of seed repeats of the search's best configurations (reseed.json,
    # `s4l-sweep --reseed-top`): not part of the search's design, see `search`
    repeats: frozenset[str] = field(default_factory=frozenset)

    @property
    def search(self) -> pd.DataFrame:
        """The completed trials of the search itself, seed repeats left out. Statistics of the
        design (which axes matter) use these: the repeats rerun the configurations that scored
        best, so keeping them would count those configurations several times."""
        if not self.repeats:
            return self.completed
        keep = ~self.completed["trial_id"].astype(str).isin(self.repeats)
        return self.completed[keep].reset_index(drop=True)

    @property
    def tiny_ks(self) -> list[int]:
        """Images per class of every tiny subset with a score for some completed trial."""
        return tiny_ks(self.completed)

    def setting_columns(self) -> list[str]:
        return setting_columns(self.df)


def tiny_ks(df: pd.DataFrame) -> list[int]:
    ks = []
    for col in df.columns:
        m = TINY_RE.match(str(col))
        if m and df[col].notna().any():
            ks.append(int(m.group(1)))
    return sorted(ks)


def tiny_column(k: int) -> str:
    return f"val_{k}pc_top1"


def setting_columns(df: pd.DataFrame) -> list[str]:
    """The trainer settings among the table's columns (tune/results.py decides which)."""
    return results_setting_columns(df.columns)


def _read_table(run_dir: Path) -> tuple[pd.DataFrame, Path, str | None]:
    """The sweep's table, where it came from and, when results.parquet was unreadable and its
    results.csv copy (written with it) was read instead, a note saying so."""
    failed = None  # (path, problem) of an unreadable results.parquet
    for name in RESULTS_FILES:
        path = run_dir / name
        if path.is_file():
            try:
                if name.endswith(".parquet"):
                    # safe while a sweep rewrites it; a setting left out was not used
                    return read_table(path, complete=False), path, None
                df = internal_form(pd.read_csv(path, keep_default_na=True), complete=False)
            except pd.errors.EmptyDataError:
                return pd.DataFrame(), path, None
            except Exception as err:  # corrupt file: the CSV copy, else name it and the fix
                if failed is None and name.endswith(".parquet"):
                    # the problem alone (UnreadableTable's own advice assumes Ray's state)
                    failed = (path, getattr(err, "problem", None) or first_line(err))
                    continue
                raise UserError(f"cannot read {path} ({first_line(err)}); "
                                f"{_rebuild_hint(run_dir)}") from None
            if failed is None:
                return df, path, None
            hint = _rebuild_hint(run_dir)
            return df, path, (f"{failed[0].name} is unreadable ({failed[1]}); the report reads "
                              f"its copy {path.name}. {hint[0].upper() + hint[1:]}.")
    if failed is not None:
        raise UserError(f"cannot read {failed[0]} ({failed[1]}) and there is no "
                        f"{RESULTS_CSV} beside it; {_rebuild_hint(run_dir)}")
    hint = ""
    if run_dir.is_dir():
        inner = sorted(p.parent for p in run_dir.glob("*/results.parquet"))
        inner += sorted(p.parent for p in run_dir.glob("*/results.csv") if p.parent not in inner)
        if inner:
            hint = f" (did you mean {', '.join(str(p) for p in inner[:3])}?)"
    raise UserError(
        f"{run_dir} holds no results.parquet or results.csv{hint}; pass the directory of a "
        f"finished sweep (s4l-sweep --storage S --name NAME writes S/NAME)"
    )


def _rebuild_hint(run_dir: Path) -> str:
    """How to get a readable table again: a sweep that still has Ray's state rebuilds it on
    --resume; any other (a copied or committed sweep) only by rerunning or re-exporting it."""
    if (run_dir / RAY_SUBDIR / "tuner.pkl").is_file():
        return resume_rebuilds(run_dir)
    return REGENERATE


def _check_version(df: pd.DataFrame, path: Path) -> None:
    if "results_version" not in df.columns:
        raise UserError(
            f"{path} is from an older or unknown format (no results_version column; this "
            f"s4l-report reads version {RESULTS_VERSION}); {REGENERATE}"
        )
    readable = ", ".join(str(v) for v in READABLE_VERSIONS)
    versions = pd.to_numeric(df["results_version"], errors="coerce")
    bad = sorted({str(v) for v, n in zip(df["results_version"], versions)
                  if n not in READABLE_VERSIONS})
    if bad:
        raise UserError(
            f"{path} has results_version {', '.join(bad)} but this s4l-report reads version(s) "
            f"{readable}; {REGENERATE}, or use the s4l-report that matches it"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(
            f"{path} lacks required column(s) {', '.join(missing)}; {REGENERATE}"
        )


def _read_space(run_dir: Path) -> dict | None:
    path = run_dir / SPACE_FILE
    if not path.is_file():
        return None
    try:
        space = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}); {REGENERATE}") from None
    if not isinstance(space, dict):
        raise UserError(f"{path} is not a JSON object; {REGENERATE}")
    return space


def _infer_axes(completed: pd.DataFrame) -> list[str]:
    axes = []
    for c in setting_columns(completed):
        if c == "seed":
            continue
        if completed[c].astype(str).nunique(dropna=False) > 1:
            axes.append(c)
    return axes


def _read_predictions(run_dir: Path, completed: pd.DataFrame, notes: list[str]):
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        notes.append(
            f"{path.name} is missing, so the validation-size study is skipped "
            f"(the sweep writes it when its trials save per-example correctness)"
        )
        return None
    try:
        raw = load_sweep_predictions(path)
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}: {err}); {REGENERATE}") from None
    ids = np.asarray(raw["trial_ids"]).astype(str)
    top1, top5, label = raw["top1"], raw["top5"], raw["label"]
    if top1.ndim != 2 or top1.shape[0] != len(ids) or top1.shape[1] != len(label):
        raise UserError(
            f"{path} is inconsistent (top1 {top1.shape}, {len(ids)} trials, {len(label)} labels); "
            f"{REGENERATE}"
        )
    row = {t: i for i, t in enumerate(ids)}
    want = completed["trial_id"].astype(str).tolist()
    have = [t for t in want if t in row]
    if len(have) < len(want):
        notes.append(
            f"{len(want) - len(have)} of {len(want)} completed trials have no per-example "
            f"predictions; the validation-size study uses the other {len(have)}"
        )
    if len(have) < 2 or top1.shape[1] == 0:
        notes.append("fewer than 2 trials with predictions: the validation-size study is skipped")
        return None
    sel = np.array([row[t] for t in have])
    preds = Predictions(
        trial_ids=np.array(have), label=np.asarray(label, dtype=np.int64),
        top1=top1[sel], top5=top5[sel], index=raw["index"], raw=raw,
    )
    table = completed.set_index(completed["trial_id"].astype(str)).loc[have, FULL].to_numpy(float)
    gap = np.nanmax(np.abs(preds.top1.mean(axis=1) - table)) if len(have) else 0.0
    if gap > 1e-4:
        notes.append(
            f"the per-example predictions disagree with {FULL} of the results table by up to "
            f"{100 * gap:.2f} pt; the validation-size study scores trials from the predictions"
        )
    preds.tiny = _read_tiny_masks(run_dir, preds, completed, notes)
    return preds


def _read_tiny_masks(
    run_dir: Path, preds: Predictions, completed: pd.DataFrame, notes: list[str]
) -> dict[int, np.ndarray]:
    """Masks of the tiny subsets over the prediction columns, from splits.npz (numpy only).

    Problems are notes, not errors: without masks the study still runs on the results table,
    only the rest-of-split yardstick, the overlap-aware p-values and McNemar are left out."""
    path = run_dir / SPLITS_FILE
    lost = ("the rest-of-split yardstick, the overlap-aware p-values, McNemar and exact subset "
            "counts are left out")
    if not path.is_file():
        notes.append(f"{SPLITS_FILE} is missing, so the tiny subsets cannot be located among the "
                     f"validation examples: {lost}")
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {int(m.group(1)): np.asarray(z[key]).ravel()
                   for key in z.files if (m := TINY_KEY_RE.match(key))}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        notes.append(f"cannot read {path.name} ({type(err).__name__}: {err}): {lost}")
        return {}
    index = np.asarray(preds.index).ravel()
    unreadable = np.asarray((preds.raw or {}).get("unreadable", []), dtype=np.int64)
    masks: dict[int, np.ndarray] = {}
    for k in sorted(raw):
        ids = raw[k]
        gone = np.isin(ids, unreadable)
        if gone.any():  # their files could not be read: scored by no trial (--skip-bad-images)
            notes.append(f"{int(gone.sum())} image(s) of the {k}/class subset could not be read "
                         "and are left out of it, as the trials' scores leave them out")
            ids = ids[~gone]
        missing = ~np.isin(ids, index)
        if missing.any() or len(np.unique(ids)) != len(ids):
            notes.append(
                f"{SPLITS_FILE}: tiny_{k} lists {int(missing.sum())} example ids that are not in "
                f"{PREDICTIONS_FILE} (or repeats ids), so the {k}/class subset cannot be located: "
                f"{lost} for it"
            )
            continue
        masks[k] = np.isin(index, ids)
    table = completed.set_index(completed["trial_id"].astype(str))
    for k in tiny_ks(completed):
        col = tiny_column(k)
        if k not in masks:
            if k not in raw:
                notes.append(f"{SPLITS_FILE} has no tiny_{k}: for the {k}/class subset {lost}")
            continue
        have = [t for t in preds.trial_ids if t in table.index]
        scores = table.loc[have, col].to_numpy(float)
        from_mask = preds.top1[:, masks[k]].mean(axis=1)
        ok = np.isfinite(scores)
        gap = float(np.max(np.abs(from_mask[ok] - scores[ok]))) if ok.any() else 0.0
        if gap > 1e-6:
            notes.append(
                f"the {k}/class subset of {SPLITS_FILE} does not reproduce {col} of the results "
                f"table (up to {100 * gap:.2f} pt apart): the tiny scores come from the table, "
                f"the rest-of-split scores, McNemar and exact counts from the mask"
            )
    return masks


def load_sweep(
    run_dir: str | Path, *, with_predictions: bool = True, include_short: bool = False
) -> Sweep:
    """Read and validate a sweep directory; raise UserError naming any problem and its fix.

    Completed trials marked `short_run` (`SHORT_RULE`: their scores say nothing about their
    configuration) are left out of `completed`,
    and so of Figure 3 and every statistic, unless `include_short`; a note says how many."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir} does not exist; pass the directory of a finished sweep")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; pass the directory of a finished sweep")
    df, path, table_note = _read_table(run_dir)
    if len(df) == 0:
        raise UserError(
            f"{path} has no trials; wait until the sweep has finished some trials, or rerun it"
        )
    _check_version(df, path)
    df = upgrade_table(df).reset_index(drop=True)  # a version-2 table gets its config_id
    df["trial_id"] = df["trial_id"].astype(str)
    if df["trial_id"].duplicated().any():
        dup = df.loc[df["trial_id"].duplicated(), "trial_id"].iloc[0]
        raise UserError(f"{path} lists trial {dup!r} twice; {REGENERATE}")
    df["status"] = df["status"].astype(str)
    for c in df.columns:
        if METRIC_RE.match(str(c)):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
            if (df[c] > 1 + 1e-9).any() or (df[c] < -1e-9).any():
                raise UserError(
                    f"{path}: column {c} holds values outside [0, 1] (metrics must be fractions, "
                    f"not percent); {REGENERATE}"
                )
    done = (df["status"] == "completed") & df[FULL].notna()
    if not done.any():
        counts = ", ".join(f"{s} {n}" for s, n in df["status"].value_counts().items())
        if set(df["status"]) <= {"running", "stopped_early"}:  # nothing failed: not yet
            fix = "no trial has finished yet; wait for the first one"
        else:
            fix = "see the error column, fix the cause and rerun the sweep"
        raise UserError(
            f"{path} has no completed trial with a {FULL} score ({len(df)} trials: {counts}); "
            f"{fix}"
        )
    notes: list[str] = [table_note] if table_note else []
    if (~done).any():
        counts = ", ".join(f"{s} {n}" for s, n in df.loc[~done, "status"].value_counts().items())
        notes.append(f"{int((~done).sum())} of {len(df)} trials are left out ({counts})")
    n_stopped = int((df["status"] == "stopped_early").sum())
    if n_stopped:
        # a scheduler chose which trials finish, on the sweep's metric: what follows describes
        # its survivors, not the configurations it was given
        notes.append(
            f"a scheduler stopped {n_stopped} trial(s) early, choosing on the sweep's metric "
            f"which ones finish: every statistic here describes the {int(done.sum())} it let "
            "finish, not all the configurations the sweep was given"
        )
    short = done & df["short_run"].astype(bool) if "short_run" in df.columns else done & False
    if short.any() and not include_short:
        if short.sum() == done.sum():
            raise UserError(
                f"{path}: all {int(done.sum())} completed trials are too short to mean anything "
                f"({SHORT_RULE}; see the short_run column); rerun with longer schedules (s4l-sweep --protocol scaled), "
                "or pass --include-short-runs to report them anyway"
            )
        notes.append(
            f"{int(short.sum())} completed trials are too short to mean anything ({SHORT_RULE}) "
            "and are left out of Figure 3 and the statistics (--include-short-runs keeps them)"
        )
        done = done & ~short
    elif short.any():
        notes.append(
            f"{int(short.sum())} completed trials are too short to mean anything and are "
            "included because --include-short-runs was given"
        )
    completed = df[done].reset_index(drop=True)
    space = _read_space(run_dir)
    if space is not None and space.get("results_version", RESULTS_VERSION) not in READABLE_VERSIONS:
        raise UserError(
            f"{run_dir / SPACE_FILE} has results_version {space.get('results_version')} but this "
            f"s4l-report reads version(s) {', '.join(map(str, READABLE_VERSIONS))}; {REGENERATE}"
        )
    if space is None:
        notes.append(f"{SPACE_FILE} is missing: the sweep's axes are inferred from the table")
        space = {}
    spec = space.get("space") if isinstance(space.get("space"), dict) else {}
    axes = space.get("axes")
    if not axes and isinstance(spec.get("axes"), list):
        axes = [a.get("key") for a in spec["axes"] if isinstance(a, dict)]
    if not isinstance(axes, list) or not axes:
        axes = _infer_axes(completed)
    axes = [str(a) for a in axes if str(a) in df.columns]
    flags = space.get("flags") if isinstance(space.get("flags"), dict) else {}
    if flags.get("scheduler") == "pbt":
        # a PBT trial copies other trials' weights and changes its settings as it trains: its
        # row names its last settings beside a score a schedule of them produced
        notes.append(
            "a PBT sweep: each row shows a trial's last settings, but its score came from a "
            "schedule of settings and other trials' weights (ray/pbt_global.txt holds each "
            "change), so the statistics that treat rows as configurations (sensitivity, "
            "fANOVA, leaderboard) do not describe what produced these scores"
        )
    preds = _read_predictions(run_dir, completed, notes) if with_predictions else None
    reseed = load_reseed(run_dir)
    repeats = (frozenset(set(df["trial_id"]) - {str(t) for t in reseed.get("search_trials", [])})
               if reseed and reseed.get("search_trials") else frozenset())
    return Sweep(
        run_dir=run_dir,
        name=run_dir.resolve().name or str(run_dir),
        space_name=str(spec.get("name") or run_dir.resolve().name),
        df=df,
        completed=completed,
        axes=axes,
        metric=str(space.get("metric") or FULL),
        mode=str(space.get("mode") or "max"),
        space=space,
        predictions=preds,
        notes=notes,
        repeats=repeats,
    )


def load_sweeps(run_dirs: list[str | Path], include_short: bool = False) -> list[Sweep]:
    """Load several sweeps; names are made unique so that files and labels do not collide."""
    if not run_dirs:
        raise UserError("no sweep directory given; pass at least one RUN_DIR")
    sweeps = [load_sweep(d, include_short=include_short) for d in run_dirs]
    seen: dict[str, int] = {}
    for s in sweeps:
        n = seen.get(s.name, 0)
        seen[s.name] = n + 1
        if n:
            s.name = f"{s.name}-{n + 1}"
    return sweeps
