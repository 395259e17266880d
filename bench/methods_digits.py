"""Benchmark: every S4L method on digits with 10% labels, same budget, mean ± std over seeds.

    python bench/methods_digits.py                  # 10 rows x 3 seeds, 2 runs at a time
    python bench/methods_digits.py --methods supervised s4l_rotation --seeds 0 1 --jobs 1
    python bench/methods_digits.py --methods pseudolabel moam --merge   # rerun 2, keep the rest

About 15 minutes on 2 free CPU cores with the default --jobs 2 (889 s measured on 2026-11-29 for the whole table; MOAM and
S4L-Exemplar take most of it).

Model and budget (chosen so that the whole table runs in well under 20 minutes on 2 CPU cores):
ResNet-18 v2 at width 0.25 (the paper's ResNet-50 v2 is far too slow here; the supervised
benchmark shows the architecture matters little on digits), batch 64 (labeled and unlabeled),
200 epochs over the 150 labeled images (10% of digits' 1,500 training images, 15 per class)
= 469 optimiser steps, the paper's best 10% recipe
(lr 0.1 per 256, wd 1e-3, 5 warmup epochs, x0.1 at 70/80/90%), one thread per run.

Every method gets the same 469 steps for its main stage:
- supervised, s4l_rotation (w_u 1, the paper's best), s4l_exemplar (w_u 1), vat (eps: the
  paper's best 40, x digits' vat_eps_scale = 0.8 in [-1, 1] units), vat_entmin (the same eps,
  w_entmin 0.3): the recipe above.
- pseudolabel: the teacher is the same seed's supervised run (reused, not retrained); the
  retraining runs 30 epochs over all 1,000 training images (= 469 steps) with the paper's step-2
  settings (lr 0.1, wd 1e-4) and warmup/decays scaled from 5 and 30/60/90 of 100 epochs.
- selfsup_linear / selfsup_finetune: rotation pretraining for 30 epochs over all training images
  (469 steps), then a linear classifier (lr 0.1, wd 1e-4, 1 warmup epoch, as S4L §4.3) or
  fine-tuning with the recipe above, 200 epochs each.
- moam: step 1 the paper's MOAM recipe scaled to 200 epochs (lr 0.2 per 256, wd 2e-4, warmup
  10, x0.1 at 100/150/190; w_sup 0.3, w_rot 0.7, w_vat 0.3, w_entmin 0.3, eps 32 x digits'
  vat_eps_scale), then its steps
  2 and 3 (18 epochs over all images, 20 epochs fine-tuning): MOAM costs more than one stage.
S4L-Rotation also reports its 4-rotation test-time average (`*_rot4_*`, not its headline).
Extra row `s4l_rotation_upright`: S4L-Rotation with the classification loss on the upright
labeled copies only (`sup_on_rotated false`). Digits are not rotation-invariant (a 6 turned
by 180 degrees is a 9), so classifying the rotated copies, which the paper found helpful on
ImageNet (S4L Section 4.4), costs accuracy here; this row separates that from the rotation
pretext itself.

Writes bench/results/methods_digits.json: per method and seed the metrics, mean ± std of
val_full_top1/top5, test_top1/top5, per-class validation accuracy, and the difference to the
supervised baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, write_result  # noqa: E402
from methods_table import run_one, summarize  # noqa: E402

from s4l_models.methods import PAPER_METHODS  # noqa: E402
from s4l_models.recipes import scale_eps  # noqa: E402
from search_spaces.protocol import DatasetFacts, labeled_count  # noqa: E402

# Extra rows: a method with one setting changed, to explain a result (see the docstring).
VARIANTS = {"s4l_rotation_upright": ("s4l_rotation", dict(sup_on_rotated=False))}


def settings(name: str, args, seed: int, runs: Path) -> dict:
    method, variant = VARIANTS.get(name, (name, {}))
    e = args.epochs
    common = dict(
        method=method, dataset="digits", labels=args.labels, arch=args.arch, width=args.width,
        batch_size=args.batch_size, seed=seed, threads=1, epochs=e, lr=0.1, wd=1e-3,
        warmup_epochs=5 * e / 200,
    )
    # epochs over the 1,000 training images with the steps of e epochs over the labeled ones
    facts = DatasetFacts.nominal("digits")
    full = e * labeled_count(args.labels, facts) / facts.train_part
    per_method = {
        "supervised": {},
        "s4l_rotation": dict(w_u=1.0, tta_rotation=True),  # (+ the upright variant)
        "s4l_exemplar": dict(w_u=1.0),
        # eps_vat None: the paper's 40 scaled to digits (s4l_models.methods.vat.default_eps)
        "vat": dict(w_u=1.0, eps_vat=None, w_vat=1.0, w_entmin=0.0),
        "vat_entmin": dict(w_u=1.0, eps_vat=None, w_vat=1.0, w_entmin=0.3),
        "pseudolabel": dict(
            teacher=str(runs / f"supervised_{seed}"), epochs=full, lr=0.1, wd=1e-4,
            warmup_epochs=0.05 * full, decay_epochs=(0.3 * full, 0.6 * full, 0.9 * full),
        ),
        "selfsup_linear": dict(
            pretext="rotation", pretrain_epochs=full, pretrain_batch_size=args.batch_size,
            lr=0.1, wd=1e-4, warmup_epochs=1.0, eval_every=e / 20,
        ),
        "selfsup_finetune": dict(
            pretext="rotation", pretrain_epochs=full, pretrain_batch_size=args.batch_size,
        ),
        "moam": dict(
            lr=0.2, wd=2e-4, warmup_epochs=10 * e / 200,
            decay_epochs=(100 * e / 200, 150 * e / 200, 190 * e / 200),
            w_sup=0.3, w_u=0.7, w_vat=0.3, w_entmin=0.3, eps_vat=scale_eps(32.0, "digits"),
        ),
    }
    return {**common, **per_method[method], **variant}


def merged(rows: list[dict], methods: list[str], setup: dict, wall: float):
    """(rows, methods, figures, reruns): these runs in place of the committed file's runs of
    the same methods, the file's other methods kept. Refused unless the committed runs used
    the same settings, so every row of the table still comes from one protocol."""
    old = json.loads((RESULTS / "methods_digits.json").read_text())
    differ = {k: (old.get(k), v) for k, v in setup.items() if old.get(k) != v}
    if differ:
        raise SystemExit(f"--merge: the committed runs used other settings {differ}; rerun all")
    kept = [r for m, t in old["results"].items() if m not in methods for r in t["runs"]]
    order = [m for m in old["results"] if m not in methods] + methods
    known = [*PAPER_METHODS, *VARIANTS]
    reruns = old.get("reruns", []) + [{
        "methods": methods, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command_line(),
        "wall_seconds": wall,
    }]
    figures = {**setup, "jobs": old.get("jobs"), "wall_seconds": old.get("wall_seconds"),
               "first_command": old.get("first_command", old.get("command")),
               "first_date": old.get("first_date", old.get("date"))}
    return kept + rows, sorted(order, key=known.index), figures, reruns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=[*PAPER_METHODS, *VARIANTS])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--labels", default="10%")
    p.add_argument("--arch", default="resnet18_v2")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=float, default=200)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    p.add_argument("--merge", action="store_true",
                   help="keep the committed runs of the methods not rerun (same settings)")
    args = p.parse_args()
    known = [*PAPER_METHODS, *VARIANTS]
    unknown = sorted(set(args.methods) - set(known))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {known}")
    methods = [m for m in known if m in args.methods]
    if "pseudolabel" in methods and "supervised" not in methods:
        methods.insert(0, "supervised")  # the pseudo-label teacher
    t0 = time.time()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)

        def jobs(names):
            return [(m, s, settings(m, args, s, runs), str(runs / f"{m}_{s}"))
                    for m in names for s in args.seeds]

        first = [m for m in methods if m != "pseudolabel"]
        phases = [jobs(first)] + ([jobs(["pseudolabel"])] if "pseudolabel" in methods else [])
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for phase in phases:  # pseudolabel labels with the supervised runs of phase 1
                rows.extend(pool.map(run_one, phase))
    setup = {"labels": args.labels, "arch": args.arch, "width": args.width,
             "batch_size": args.batch_size, "epochs": args.epochs, "seeds": args.seeds}
    wall = time.time() - t0
    figures = {**setup, "jobs": args.jobs, "wall_seconds": wall}
    reruns = []
    if args.merge:
        rows, methods, figures, reruns = merged(rows, methods, setup, wall)
    table, text = summarize(rows, methods)
    print(text)
    path = write_result(
        "methods_digits",
        {
            **figures,
            "settings": {m: settings(m, args, 0, Path("RUNS")) for m in methods},
            "table": text, "results": table, **({"reruns": reruns} if reruns else {}),
        },
    )
    print(f"wrote {path} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
