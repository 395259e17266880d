"""`s4l-select`: choose a sweep's model with as few validation labels as possible.

    s4l-select SWEEP_DIR --budget 40                      # round 1: a sheet of images to label
    s4l-select SWEEP_DIR --budget 40 --labels SHEET.csv   # next round, or the pick when spent
    s4l-select SWEEP_DIR --simulate                       # labels each strategy needs here
    s4l-select SWEEP_DIR --criterion confidence           # rank with no labels at all

The candidates are the sweep's completed trials that are not too short to mean anything; the
images are its custom validation split. Strategies, the statistical model and the criteria are
described in analysis/select.py, the simulation in analysis/select_sim.py.

The labeling loop: each round writes `labels_round<R>.csv` into --out (default
SWEEP_DIR/select): the rows labeled so far with their labels, then the new images with an empty
`label` column (class index 0..C-1) and, for image-folder datasets, each image's file. Fill in
the labels and pass the sheet back with --labels. Once --budget labels are in, it names the
selected trial with its settings, an interval for its accuracy and the probability that it is
the best (also in selection.json). Rows left empty are proposed again. No file is overwritten:
a sheet or selection.json whose name is taken gets -2, -3, ...; a simulation goes to a new
SWEEP_DIR/select/simulate[-2, ...] (or to an --out that holds no earlier one). Every file is
written atomically. A sweep whose predictions.npz is missing gets it rebuilt from its trials'
own val_predictions.npz.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import zipfile
from pathlib import Path

import numpy as np

from s4l_models.errors import ArgumentParser, UserError, exit_on_user_error, first_line
from s4l_models.io import atomic_write_csv, atomic_write_text, free_path
from s4l_models.predictions import load_sweep_predictions
from tune.results import TRIAL_PREDICTIONS, TRIALS_DIR, write_predictions

from .figure3 import save as save_figure
from .load import PREDICTIONS_FILE, load_sweep
from .select import (
    CRITERIA,
    STRATEGIES,
    Candidates,
    candidates_from,
    criterion_scores,
    pick,
    propose,
)
from .select_report import curves_figure, study_candidates, words
from .select_sim import DRAWS, _criterion_row


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="s4l-select",
        description="Pick a sweep's best trial with few validation labels: what to label next, "
        "label-free criteria, and a simulation of how many labels each strategy needs.",
    )
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a finished sweep directory")
    p.add_argument("--budget", type=int, help="validation labels to spend in all "
                   "(default: 4 per class)")
    p.add_argument("--strategy", default="disagreement", choices=STRATEGIES,
                   help="which images to label: random, stratified (over the candidates' voted "
                   "class) or disagreement (where the candidates disagree; default)")
    p.add_argument("--batch", type=int, help="images per labeling round (default: one per "
                   "class, at most what the budget leaves)")
    p.add_argument("--labels", metavar="FILE", help="the filled-in sheet of the last round "
                   "(CSV with columns id,label)")
    p.add_argument("--simulate", action="store_true",
                   help="measure every strategy and criterion on this sweep with its stored "
                   "labels (held-out yardstick)")
    p.add_argument("--draws", type=int, help="simulation draws (default 200: SE <= 0.015)")
    p.add_argument("--criterion", choices=CRITERIA, action="append",
                   help="rank the candidates without validation labels (repeatable): "
                   "confidence, agreement, rotation (needs a rotation head), atc (needs "
                   "--labels)")
    p.add_argument("--out", help="where sheets and results go (default SWEEP_DIR/select)")
    p.add_argument("--seed", type=int, default=0, help="seed of proposals and draws")
    p.add_argument("--include-short-runs", action="store_true",
                   help="keep trials too short to mean anything as candidates")
    return p


def rebuild_predictions(sweep_dir: Path, completed) -> None:
    """Gather `predictions.npz` again from each completed trial's `val_predictions.npz` (in
    `trials/<id>/` beside the table, else where the table says the trial ran), as the sweep
    does; a one-line error when no trial kept its file."""
    dirs = {}
    for _, row in completed.iterrows():
        t = str(row["trial_id"])
        here = sweep_dir / TRIALS_DIR / t
        dirs[t] = str(here if here.is_dir() else row.get("trial_dir", here))
    if write_predictions(sweep_dir, dirs) is None:
        raise UserError(f"{sweep_dir / PREDICTIONS_FILE} is missing and no completed trial kept "
                        f"its {TRIAL_PREDICTIONS} under {sweep_dir / TRIALS_DIR}; s4l-select "
                        "needs the trials' per-image predictions, so rerun the sweep")


def load_candidates(sweep_dir: Path, include_short: bool = False) -> tuple[Candidates, object]:
    """The sweep's candidates (completed, not short trials with stored predictions)."""
    sweep = load_sweep(sweep_dir, with_predictions=False, include_short=include_short)
    path = Path(sweep_dir) / PREDICTIONS_FILE
    if not path.is_file():
        rebuild_predictions(Path(sweep_dir), sweep.completed)
        print(f"note: {path} was missing; rebuilt it from the completed trials' own "
              f"{TRIAL_PREDICTIONS}", file=sys.stderr)
    try:
        raw = load_sweep_predictions(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise UserError(f"{path} is unreadable ({type(err).__name__}); rename it (to "
                        f"{path.name}.bad) and run s4l-select again, which rebuilds it from the "
                        "trials' own predictions") from None
    have = set(np.asarray(raw["trial_ids"]).astype(str))
    keep = [t for t in sweep.completed["trial_id"].astype(str) if t in have]
    if len(keep) < 2:
        raise UserError(f"{sweep_dir}: fewer than 2 completed trials with predictions; nothing "
                        "to select from")
    from s4l_models.data.datasets import DATASETS  # imports torch: only here

    spec = DATASETS.get(str(sweep.space.get("dataset") or ""))
    return candidates_from(raw, keep, spec.num_classes if spec is not None else None), sweep


def _settings(sweep, trial_id: str) -> dict:
    """The trial's swept settings and its seed (a seed repeat differs from its configuration's
    other trials only there)."""
    row = sweep.completed.set_index(sweep.completed["trial_id"].astype(str)).loc[trial_id]
    keys = [a for a in sweep.axes if a in row.index]
    if "seed" in row.index and "seed" not in keys:
        keys.append("seed")
    return {a: (row[a].item() if hasattr(row[a], "item") else row[a]) for a in keys}


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("budget", "batch", "draws"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name} must be >= 1")
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a directory; give a sweep directory")
    out = Path(args.out) if args.out else sweep_dir / "select"
    if args.simulate:
        simulation_dir(sweep_dir, args.out)  # refuse a used --out before the work
    c, sweep = load_candidates(sweep_dir, args.include_short_runs)
    if args.simulate:
        return simulate_cmd(c, sweep, simulation_dir(sweep_dir, args.out), args)
    labeled, y = read_labels(args.labels, c) if args.labels else (np.zeros(0, np.int64),
                                                                  np.zeros(0, np.int64))
    if args.criterion:
        return criteria_cmd(c, sweep, args.criterion, labeled, y)
    return loop_cmd(c, sweep, out, labeled, y, args)


# --- the labeling loop ----------------------------------------------------------------------------
def read_labels(path: str, c: Candidates) -> tuple[np.ndarray, np.ndarray]:
    """(positions, labels) of the filled-in rows of a sheet; empty labels are skipped."""
    import pandas as pd

    try:
        sheet = pd.read_csv(path, dtype={"label": "string"})
    except (OSError, ValueError) as err:
        raise UserError(f"--labels {path}: cannot read it ({first_line(err)}); give the CSV sheet "
                        "s4l-select wrote, with its label column filled in") from None
    if not {"id", "label"} <= set(sheet.columns):
        raise UserError(f"--labels {path}: needs columns id and label; use the sheet "
                        "s4l-select wrote")
    sheet = sheet[sheet["label"].notna() & (sheet["label"].str.strip() != "")]
    pos = {int(v): i for i, v in enumerate(c.index)}
    ids = pd.to_numeric(sheet["id"], errors="coerce")
    unknown = [raw for raw, v in zip(sheet["id"], ids) if pd.isna(v) or int(v) not in pos]
    if unknown:
        raise UserError(f"--labels {path}: id {unknown[0]!r} is not an image of this sweep's "
                        "validation split; keep the ids of the sheet s4l-select wrote")
    lab = pd.to_numeric(sheet["label"].str.strip(), errors="coerce")
    bad = lab.isna() | (lab < 0) | (lab >= c.n_classes) | (lab != lab.round())
    if bad.any():
        raise UserError(f"--labels {path}: label {sheet['label'][bad].iloc[0]!r} is not a class "
                        f"index 0..{c.n_classes - 1}; write each image's class as its index")
    p = np.array([pos[int(v)] for v in ids], dtype=np.int64)
    if len(np.unique(p)) < len(p):
        raise UserError(f"--labels {path}: an id appears twice; keep one row per image")
    return p, lab.to_numpy(dtype=np.int64)


def image_paths(sweep) -> list[str] | None:
    """The files of an image-folder dataset's training split (the validation split's ids index
    it), or None for datasets held in memory."""
    from s4l_models.data.datasets import DATASETS, load_dataset

    name = str(sweep.space.get("dataset") or "")
    spec = DATASETS.get(name)
    if spec is None or spec.in_memory:
        return None
    data_dir = (sweep.space.get("flags") or {}).get("data_dir")
    try:
        return list(load_dataset(name, data_dir).train.paths)
    except (UserError, OSError):
        return None


RETRY = "rerun s4l-select"  # after a full disk


def loop_cmd(c: Candidates, sweep, out: Path, labeled, y, args) -> int:
    import pandas as pd

    budget = args.budget or 4 * c.n_classes
    pool = np.arange(len(c.label))
    if len(labeled) >= budget:
        return final_cmd(c, sweep, out, labeled, y, pool, args)
    rnd = 1 + (len(labeled) + (args.batch or c.n_classes) - 1) // (args.batch or c.n_classes)
    rng = np.random.default_rng([args.seed, len(labeled)])
    n = min(args.batch or c.n_classes, budget - len(labeled))
    nxt = propose(args.strategy, c, pool, labeled, y, n, rng)
    paths = image_paths(sweep)
    rows = [{"id": int(c.index[p]), "label": str(int(v))} for p, v in zip(labeled, y)]
    rows += [{"id": int(c.index[p]), "label": ""} for p in nxt]
    sheet = pd.DataFrame(rows)
    if paths is not None:
        sheet["path"] = [paths[int(i)] for i in sheet["id"]]
    out.mkdir(parents=True, exist_ok=True)
    path = free_path(out / f"labels_round{rnd}.csv")
    atomic_write_csv(path, sheet, retry=RETRY)
    print(f"{len(labeled)} of {budget} labels in; strategy {args.strategy} asks for {len(nxt)} "
          f"more: fill in the label column (class index 0..{c.n_classes - 1}) of {path}, then "
          "run: " + shlex.join(
              ["s4l-select", str(args.sweep_dir), "--budget", str(budget),
               "--strategy", args.strategy]
              + (["--batch", str(args.batch)] if args.batch else [])
              + (["--seed", str(args.seed)] if args.seed else [])
              + (["--include-short-runs"] if args.include_short_runs else [])
              + ["--out", str(out), "--labels", str(path)]))
    return 0


def final_cmd(c: Candidates, sweep, out: Path, labeled, y, pool, args) -> int:
    rng = np.random.default_rng(args.seed)
    pk = pick(c, labeled, y, rng)
    w = pk.posterior
    hits = pk.all_hits
    order = np.argsort(-hits, kind="stable")[:5]
    # only a random sample of images estimates the pick's accuracy on the split
    sample = args.strategy == "random"
    runner = None
    if pk.runner_up is not None:
        runner = {"trial_id": str(c.trial_ids[pk.runner_up]),
                  "correct_on_labeled": int(hits[pk.runner_up]),
                  "tied_on_labeled": pk.runner_up_tied,
                  "labeled_only_pick_right": pk.pick_only,
                  "labeled_only_runner_up_right": pk.runner_only,
                  "mcnemar_p_exact": pk.mcnemar_p}
    doc = {
        "selected_trial": pk.trial_id, "settings": _settings(sweep, pk.trial_id),
        "strategy": args.strategy, "labels": pk.labeled, "correct_on_labeled": pk.hits,
        "tied_on_labeled": pk.tied, "accuracy_on_labeled_95": [pk.labeled_low, pk.labeled_high],
        "labeled_images_are_a_random_sample": sample,
        "runner_up": runner,
        "p_best_noise_model": pk.p_best,
        "noise_model": "the best candidate names the true class with probability eps "
                       f"= {pk.eps:.3f} (the candidates' mean confidence), else a uniform wrong "
                       "class; uniform prior over candidates (analysis/select.py). Overconfident: "
                       "it treats the candidates' errors as independent; s4l-select --simulate "
                       "measures how often such a pick is the best on this sweep",
        "top_candidates": [{"trial_id": str(c.trial_ids[i]), "correct_on_labeled": int(hits[i]),
                            "p_best_noise_model": float(w[i])} for i in order],
    }
    out.mkdir(parents=True, exist_ok=True)
    path = free_path(out / "selection.json")
    atomic_write_text(path, json.dumps(doc, indent=2, default=str), retry=RETRY)
    sets = ", ".join(f"{k}={v}" for k, v in doc["settings"].items())
    print(f"selected trial {pk.trial_id} ({sets}) after {pk.labeled} labels: "
          f"{pk.hits}/{pk.labeled} labeled images right"
          + (f", tied with {pk.tied - 1} other(s), chosen at random" if pk.tied > 1 else ""))
    acc = (f"{100 * pk.hits / max(1, pk.labeled):.1f}% (exact 95% interval "
           f"{100 * pk.labeled_low:.1f}-{100 * pk.labeled_high:.1f}%)")
    if sample:
        print(f"accuracy on the split, estimated from the {pk.labeled} randomly drawn labeled "
              f"images: {acc}")
    else:
        print(f"accuracy on the labeled images {acc}; they were chosen by the {args.strategy} "
              "strategy" + (", where the candidates disagree, and are harder than the split"
                            if args.strategy == "disagreement" else "")
              + ": not an estimate of its accuracy on the split (label a random sample, "
              "--strategy random, for that)")
    if runner is not None:
        d = pk.pick_only + pk.runner_only
        verdict = (f"exact McNemar p = {pk.mcnemar_p:.2g}: "
                   + ("the labels separate them at the 5% level" if pk.mcnemar_p < 0.05
                      else "the labels do not separate them"))
        tie = (f"; {pk.runner_up_tied - 1} other(s) also got {runner['correct_on_labeled']}, "
               "this one is the least separated from the pick" if pk.runner_up_tied > 1 else "")
        print(f"against the runner-up {runner['trial_id']} ({runner['correct_on_labeled']}/"
              f"{pk.labeled} right{tie}): {pk.pick_only} labeled images only the pick gets right, "
              f"{pk.runner_only} only the runner-up" + (f"; {verdict}" if d else
                                                        "; they answer every labeled image alike"))
    print("how often such a pick is the best on this sweep: "
          f"{shlex.join(['s4l-select', str(args.sweep_dir), '--simulate'])} "
          f"(strategy {args.strategy}, {pk.labeled} labels)")
    print(f"written: {path}")
    return 0


# --- criteria and simulation ----------------------------------------------------------------------
def criteria_cmd(c: Candidates, sweep, criteria, labeled, y) -> int:
    cols = np.arange(len(c.label))
    acc = 100 * c.correct.mean(axis=1)
    for crit in criteria:
        score = criterion_scores(crit, c, cols, labeled, y)
        order = np.argsort(-np.nan_to_num(score, nan=-np.inf))
        best = str(c.trial_ids[order[0]])
        sets = ", ".join(f"{k}={v}" for k, v in _settings(sweep, best).items())
        print(f"{crit}: ranks first trial {best} ({sets}), score {score[order[0]]:.4f}")
        r = _criterion_row(crit, score, acc)
        print(f"  on this sweep's stored labels: regret {r['regret_pt']:.2f} pt, Spearman "
              f"{r['spearman']:.2f} between {crit} and full-split accuracy")
    return 0


SIMULATION_FILES = ("select.json", "select_curves.csv", "select_criteria.csv",
                    "select_curves.png", "select_curves.svg")


def simulation_dir(sweep_dir: Path, out: str | None) -> Path:
    """Where a simulation goes: a given --out that holds no earlier simulation (else a one-line
    error), or a new SWEEP_DIR/select/simulate[-2, -3, ...]: an earlier one is never replaced."""
    if out is None:
        return free_path(sweep_dir / "select" / "simulate")
    out_dir = Path(out)
    clash = [f for f in SIMULATION_FILES if (out_dir / f).exists()]
    if clash:
        raise UserError(f"--out {out_dir} already holds a simulation ({clash[0]}); choose "
                        "another --out, or leave it out for a new folder under the sweep")
    return out_dir


def simulate_cmd(c: Candidates, sweep, out: Path, args) -> int:
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    table, crit, need, sv = study_candidates(c, args.draws or DRAWS, args.seed, log)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "select_curves.csv", table, retry=RETRY)
    atomic_write_csv(out / "select_criteria.csv", crit, retry=RETRY)
    pool = int((np.bincount(c.label) // 2).sum())
    doc = {"sweep": str(sweep.run_dir), "candidates": len(c.trial_ids),
           "images": len(c.label), "pool": pool, "draws": int(table["draws"].iloc[0]),
           "seed": args.seed, "needed": need, "savings": sv,
           "criteria": crit.to_dict(orient="records")}
    atomic_write_text(out / "select.json", json.dumps(doc, indent=2, default=float),
                      retry=RETRY)
    save_figure(curves_figure(table), out / "select_curves", retry=RETRY)
    print(f"{len(c.trial_ids)} candidates, {len(c.label)} validation images; strategies label "
          f"from a {pool}-image half and are judged on the other half ({doc['draws']} draws)")
    print(words(need, sv, crit, pool))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
