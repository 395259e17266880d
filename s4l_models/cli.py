"""`s4l-train`: train one configuration and write its results.

    s4l-train --method supervised --dataset digits --labels 10% --arch resnet18_v2 --width 1 \
        --epochs 200 --lr 0.1 --wd 1e-3 --batch-size 256 --seed 0 --out runs/digits10

Writes OUT/config.json, OUT/metrics.json, OUT/checkpoint/state.pt, OUT/splits.*,
OUT/val_predictions.npz and prints a progress line at every evaluation. On digits with a
ResNet-18 this takes about a minute on 2 CPU cores. Every setting of `TrainConfig` is a flag
(`--warmup-epochs 10`, `--decay-epochs 140,160,180`, `--color-aug`), and `--set key=value`
takes the same settings in sweep form. Bad input exits with status 2 and one line; a diverged
run exits with status 1 after writing its metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
import typing
from pathlib import Path

from .checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE
from .config import TrainConfig, parse_set
from .errors import ArgumentParser, UserError, exit_on_user_error
from .recipes import RECIPES
from .run import train
from .trainer import finished_result

# what a run writes besides its checkpoint (s4l_models.run, .trainer)
RUN_FILES = ("metrics.json", "progress.jsonl", "val_predictions.npz", "config.json")

# Settings some method's recipe gives: a run left without them gets its recipe's value
# (recipes.fill), not TrainConfig's default, so the help must not promise that default.
RECIPE_SETTINGS = frozenset(
    key for regimes in RECIPES.values() for rec in regimes.values() for key in rec.settings
)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="s4l-train",
        description="Train one S4L configuration (any method, dataset and ResNet).",
    )
    p.add_argument("--out", help="run directory (default: runs/train-<time>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by name, e.g. --set warmup_epochs=10 (repeatable)",
    )
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = _help_default(getattr(defaults, f.name), f.name in RECIPE_SETTINGS)
        if hints[f.name] is bool:
            # `--color-aug` turns it on, `--color-aug false` off
            p.add_argument(flag, dest=f.name, nargs="?", const="true", default=argparse.SUPPRESS,
                           help=text)
        else:
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=text)
    return p


def _help_default(default, from_recipe: bool = False) -> str:
    text = (
        f"(default: the method's recipe, s4l_models/recipes.py; else {default})"
        if from_recipe
        else f"(default {default})"
    )
    # argparse %-formats help strings: a default such as "10%" must reach it as "10%%".
    return text.replace("%", "%%")


def same_config(out_dir: Path, cfg: TrainConfig) -> bool:
    """Whether `out_dir/config.json` holds exactly the settings `cfg` would write there."""
    try:
        return json.loads((out_dir / "config.json").read_text()) == json.loads(cfg.to_json())
    except (OSError, ValueError):
        return False


def continue_command(argv: list[str], out_dir: Path) -> str:
    """The s4l-train command that continues this run: its flags, with --out and --resume."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out=") and a != "--resume":
            args.append(a)
    return shlex.join(["s4l-train", *args, "--out", str(out_dir), "--resume"])


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(build_parser().parse_args(argv))
    out = args.pop("out") or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}"
    resume = args.pop("resume")
    settings = parse_set(args.pop("set"))
    both = sorted(set(settings) & set(args))  # flags left out are absent (SUPPRESS)
    if both:
        k = both[0]
        raise UserError(f"{k} given twice (--set {k}={settings[k]} and --{k.replace('_', '-')} "
                        f"{args[k]}); give it once")
    values = {**settings, **args}
    cfg = TrainConfig.from_dict(values)
    out_dir = Path(out)
    checkpoint = out_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
    # a run's results, with or without its checkpoint (sweep trial folders keep none, and a
    # user may have deleted it): starting afresh there would overwrite them
    results = [f for f in RUN_FILES if (out_dir / f).is_file()]
    # A run stopped before its first evaluation left its config.json (and splits) and nothing
    # else; the same settings rewrite them identically, so it may start again there, with or
    # without --resume (the command printed when it is interrupted).
    unstarted = (results == ["config.json"] and not checkpoint.is_file()
                 and same_config(out_dir, cfg))
    if resume and finished_result(out_dir) is not None:
        # resuming a finished run would rewrite its metrics.json (its timings) for nothing
        print(f"{out_dir} already finished (metrics.json: completed); nothing to resume",
              flush=True)
        return 0
    if resume and not checkpoint.is_file():
        if not unstarted:
            what = f"holds {results[0]} but no checkpoint" if results else "holds no checkpoint"
            raise UserError(
                f"--resume but {out_dir} {what}; choose another --out to train afresh")
        print(f"{out_dir} was stopped before its first checkpoint: training from step 0",
              flush=True)
        resume = False
    if not resume and checkpoint.is_file():
        raise UserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if not resume and results and not unstarted:
        raise UserError(
            f"{out_dir} already holds a run's {results[0]}, which a new run would overwrite; "
            "choose another --out"
        )
    print(f"run directory: {out_dir}", flush=True)
    try:
        metrics = train(cfg, out_dir, resume_from=checkpoint if resume else None)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {continue_command(argv, out_dir)}", file=sys.stderr,
              flush=True)
        return 130
    print(
        f"{metrics['status']}: val_full_top1 {metrics.get('val_full_top1', float('nan')):.4f} "
        f"after {metrics['epochs']:g} epochs in {metrics['train_seconds']:.1f}s; "
        f"results in {out_dir}/metrics.json",
        flush=True,
    )
    if metrics["status"] != "completed":
        print(f"error: {metrics['message']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
