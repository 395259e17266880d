"""What a sweep will run, decided without Ray: space + command-line flags -> trial configs.

`make_plan(flags)` resolves the search space (`search_spaces.get_space`), applies `--labels`
and `--set` (typed and validated by `TrainConfig`; a `--set` of an axis pins that axis to one
value), checks every configuration that will run and that its method is available, and picks
the trials:

- grid search: the whole grid (`tune.grid_search` over every axis), or with `--max-trials N`
  (N below the grid size) a seeded subset of N grid points. On the embedded `digits` dataset the
  default is such a subset of `DIGITS_DEFAULT_TRIALS` = 24 points in which every value of every
  axis appears, chosen with a preference for cheap points (`trial_cost`), so the README's main
  command runs in minutes on 2 CPU cores; `--max-trials all` runs the whole grid.
- random: N distinct grid points drawn uniformly at random (seeded; default 24 on digits,
  else the grid size, never more than the grid); optuna: N trials suggested by Optuna TPE
  from the same axes (also at most the grid's size).

`describe(plan)` is the `--dry-run` text. Nothing here starts Ray or trains.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from s4l_models.config import (
    COMMAND_SETTINGS,
    DRIVER_SETTINGS,
    SPLIT_SETTINGS,
    TrainConfig,
    parse_value,
)
from s4l_models.data.splits import make_splits
from s4l_models.errors import UserError
from search_spaces import (
    estimate_trial_epochs,
    format_axes_table,
    get_space,
    list_spaces,
    sampling,
)
from search_spaces.protocol import DatasetFacts, adapt, labeled_count
from tune.memory_plan import memory_lines
from tune.units import hours

DIGITS = "digits"
DIGITS_DEFAULT_TRIALS = 24
# Evaluations per trial by scheduler (the `evaluations` setting; --set evaluations=N overrides).
# Every evaluation scores the validation split and writes the checkpoint Ray keeps, so it is
# what a trial's progress curve, a scheduler's decisions and crash recovery are made of, and
# what they cost. FIFO needs them only for the curve and recovery; ASHA and HyperBand (reduction
# factor 3, grace period 1) decide at 1, 3 and 9 evaluations; PBT exploits every max_t // 4.
COSTED_EVALUATIONS = 10  # the evaluations trial_cost counts (TrainConfig's default)
SWEEP_EVALUATIONS = {
    "fifo": (2, "(ours) 2 evaluations per trial with FIFO: nothing decides on the scores before "
                "the end, so one at half-way (a checkpoint to recover from, a point of the "
                "progress curve) and the final one; evaluation under 10% of a Fashion-MNIST "
                "trial (bench/README.md eval_cadence)"),
    "asha": (9, "(ours) 9 evaluations per trial: ASHA's rungs at 1, 3 and 9 (reduction factor 3)"),
    "hyperband": (9, "(ours) 9 evaluations per trial: HyperBand's rungs at 1, 3 and 9 "
                     "(reduction factor 3)"),
    "pbt": (8, "(ours) 8 evaluations per trial: PBT exploits and explores every 2"),
}
SEARCHES = ("grid", "random", "optuna")
# PBT may change these in a running trial (they do not change the model's shape or the data).
PBT_MUTABLE = ("lr", "wd", "momentum", "w_u", "eps_vat", "w_vat", "w_entmin")

# Seconds of one SGD step of ResNet-<depth> at these widths on 8x8 digits, one torch thread:
# (a, b) with step seconds = a + b * images per step, measured by bench/step_seconds.py
# (bench/results/step_seconds.json) on the 2-core development machine. `a` is the weights'
# memory traffic (forward, backward and update each touch every weight): a x4 ResNet-18 step
# takes over 2 s at any batch. v1 and v2 cost about the same; other depths and widths are
# interpolated (log-linear in width) or scaled. On other datasets the seconds are wrong but
# the ratios between trials hold (they order trials, pick the digits subset and give the ETA).
STEP_SECONDS = {
    18: {0.5: (0.01382, 0.000583), 1.0: (0.03823, 0.00199), 2.0: (0.3108, 0.00973),
         3.0: (1.083, 0.0278), 4.0: (2.208, 0.0609)},
    34: {0.5: (0.02683, 0.00111), 1.0: (0.07484, 0.00394), 2.0: (0.5934, 0.018),
         3.0: (1.2, 0.0618), 4.0: (3.673, 0.134)},
    50: {0.5: (0.04576, 0.00213), 1.0: (0.1938, 0.00661), 2.0: (1.052, 0.0274),
         3.0: (2.766, 0.078), 4.0: (7.415, 0.122)},
}
DEPTH_SCALE = {101: 2.0, 152: 2.9}  # relative to ResNet-50 (FLOPs ratio)
# Images per labeled image and step that a method pushes through the network (rough).
METHOD_COST = {
    "supervised": 1.0,
    "s4l_rotation": 8.0,
    "s4l_exemplar": 16.0,
    "vat": 4.0,
    "vat_entmin": 4.0,
    "pseudolabel": 2.0,
    "selfsup_linear": 4.0,
    "selfsup_finetune": 4.0,
    "moam": 12.0,
}
# A trial runs beside others (2 trials on 2 cores): measured on digits, ResNet-18 v2 x0.5 at
# batch 65 took 84 ms a step inside the trainer with a second trial running, 1.7x the bare step
# of STEP_SECONDS (the trainer's crops, data gathers and evaluations included).
CONCURRENT_SLOWDOWN = 1.7
# Per-trial overhead in seconds (Ray actor reuse, imports, data, checkpoints).
TRIAL_OVERHEAD_S = 3.0
# The default digits subset leaves out configurations estimated above this many seconds (one
# trial's share of the main command's 10-minute budget on 2 cores): e.g. every width-3 and
# width-4 ResNet, whose >= 200 steps would take 4-25 minutes each.
DIGITS_TRIAL_BUDGET_S = 200.0
# The step times above were measured on 8x8 inputs. A trial on larger images costs more than
# they say: measured / estimated seconds of every trial of a finished sweep, median
# (bench/cost_calibration.py -> bench/results/cost_calibration.json). 8x8 stays at 1 (the digits
# model overestimates by ~1.6x there, on purpose: it costs 10 evaluations whatever the
# cadence, and the main command's subset is chosen by it). Sizes without a measurement are
# extrapolated from the nearest measured one by pixel count, a rough upper bound.
IMAGE_COST_FACTOR = {8: 1.0, 28: 4.05}
DIGITS_MEASURED_OVER_ESTIMATED = 0.64  # the same file, docs/figure3_digits (median per trial)


def image_cost_factor(image_size: int) -> float:
    """The calibration of `trial_cost` for square inputs of this side (IMAGE_COST_FACTOR)."""
    if image_size in IMAGE_COST_FACTOR:
        return IMAGE_COST_FACTOR[image_size]
    near = min(IMAGE_COST_FACTOR, key=lambda s: abs(s - image_size))
    return IMAGE_COST_FACTOR[near] * max(1.0, (image_size / near) ** 2)


# Nominal test-split sizes (cost estimates of plans made without reading the files).
NOMINAL_TEST_SIZE = {"digits": 297, "fashion_mnist": 10_000, "cifar10": 10_000,
                     "cifar100": 10_000, "imagenet": 50_000}


def step_seconds(depth: int, width: float, images: float) -> float:
    """Estimated seconds of one step pushing `images` 8x8 images through ResNet-<depth> x<width>
    on one thread (see STEP_SECONDS)."""
    scale = 1.0
    if depth not in STEP_SECONDS:
        scale = DEPTH_SCALE.get(depth, depth / 50.0)
        depth = 50
    table = sorted(STEP_SECONDS[depth].items())
    ws = [math.log(w) for w, _ in table]
    x = math.log(max(width, 1e-3))
    if x <= ws[0]:
        i = 0
    elif x >= ws[-1]:
        i = len(ws) - 2
    else:
        i = max(j for j in range(len(ws) - 1) if ws[j] <= x)

    def interp(k: int) -> float:
        lo, hi = math.log(table[i][1][k]), math.log(table[i + 1][1][k])
        return math.exp(lo + (hi - lo) * (x - ws[i]) / (ws[i + 1] - ws[i]))

    return scale * (interp(0) + interp(1) * images)


@dataclass
class Sizes:
    """Split sizes that set a trial's cost: labeled images, validation and test images, and
    the training part (what stages over every training image pass over)."""

    labeled: int
    val: int
    test: int
    train: int = 0


def _trial_shape(config: Mapping[str, Any], sizes: Sizes):
    """(setting getter with TrainConfig's defaults, depth, width, batch, epochs, optimizer
    steps) of a trial: what both cost models start from."""
    from s4l_models.resnet import parse_arch

    defaults = TrainConfig()
    get = lambda k: config.get(k, getattr(defaults, k))  # noqa: E731
    depth, _, name_width = parse_arch(str(get("arch")))
    width = float(name_width if name_width is not None else get("width"))
    batch = int(get("batch_size"))
    epochs = float(get("epochs"))
    steps = max(1, math.ceil(round(epochs * max(1, sizes.labeled) / batch, 9)))
    return get, depth, width, batch, epochs, steps


def trial_cost(config: Mapping[str, Any], sizes: Sizes, calibrated: bool = True) -> float:
    """Rough seconds of one trial on one CPU core beside another trial (ratios drive subset
    choice and the ETA; the dry run sums them). `calibrated`: scaled to the dataset's image
    size by IMAGE_COST_FACTOR (False: the 8x8 model as measured, for calibrating it)."""
    from s4l_models.data.datasets import DATASETS

    get, depth, width, batch, epochs, steps = _trial_shape(config, sizes)
    eval_every = float(get("eval_every"))
    # Evaluations are costed at the trainer's default cadence whatever the sweep's: an upper
    # bound (2-4% of a digits trial, bench/README.md eval_cadence), kept so that the points the
    # main command picks by cost, and the digits results built from them, stay what they were.
    evals = (min(steps, COSTED_EVALUATIONS) if eval_every <= 0
             else max(1, min(steps, int(epochs / eval_every))))
    method = METHOD_COST.get(str(get("method")), 4.0)
    train = steps * step_seconds(depth, width, batch * method)
    per_image = step_seconds(depth, width, 1) - step_seconds(depth, width, 0)
    evaluate = (evals * sizes.val + sizes.test) * per_image / 3.0  # forward only
    spec = DATASETS.get(str(get("dataset")))
    factor = image_cost_factor(spec.image_size) if calibrated and spec is not None else 1.0
    return TRIAL_OVERHEAD_S + CONCURRENT_SLOWDOWN * factor * (train + evaluate)


# The GPU cost model, calibrated on one NVIDIA H200 (bf16 autocast, channels_last, batch 256):
# ResNet-50 v2 at 224x224 trains at 5,000 images/s (bench/results/trainer_throughput_gpu.json);
# other models by forward FLOPs relative to it (depth, width squared, pixels), but never faster
# than a small trial runs through the sweep, which is launch-bound: 5,304 images/s for
# ResNet-18 at 32x32 with its evaluations and checkpoints (bench/results/gpu_packing.json,
# 1 trial). Fractional GPUs pack trials: aggregate speed-up measured with 1, 2, 4, 8 trials on
# the GPU (gpu_packing.json: 1, 2.26, 4.17, 5.69). Rough: one GPU model, two measured points.
GPU_REF_IMAGES_PER_S = 5000.0  # ResNet-50 v2, 224x224, width 1
GPU_FLOOR_IMAGES_PER_S = 5304.0  # the launch-bound ceiling of a small trial in a sweep
GPU_PACKING_SPEEDUP = {1: 1.0, 2: 2.26, 4: 4.17, 8: 5.69}
GPU_DEPTH_FLOPS = {18: 1.8, 34: 3.6, 50: 4.1, 101: 7.8, 152: 11.5}  # GFLOPs at 224, width 1
GPU_CALIBRATION = "one NVIDIA H200, bench/results/trainer_throughput_gpu.json and gpu_packing.json"
# The one check against a sweep that ran on a GPU (python bench/cost_calibration.py --gpu
# bench/results/gpu_logs/fashion_sweep_h200_partial -> bench/results/cost_calibration_gpu.json):
# 35 Fashion-MNIST trials, 16 sharing the H200 at 1 CPU each, held 2.2x the GPU time estimated
GPU_CHECK = ("other GPUs differ, and the one GPU sweep it was checked on, 16 Fashion-MNIST "
             "trials sharing an H200, held 2.2x its estimate")


def gpu_trial_seconds(config: Mapping[str, Any], sizes: Sizes) -> float:
    """Rough seconds of one trial alone on a GPU (the GPU cost model above)."""
    from s4l_models.data.datasets import DATASETS

    get, depth, width, batch, _, steps = _trial_shape(config, sizes)
    spec = DATASETS.get(str(get("dataset")))
    side = spec.image_size if spec is not None else 224
    flops = (GPU_DEPTH_FLOPS.get(depth, depth / 50 * GPU_DEPTH_FLOPS[50]) / GPU_DEPTH_FLOPS[50]
             * width ** 2 * (side / 224) ** 2)
    per_image = max(1.0 / GPU_FLOOR_IMAGES_PER_S, flops / GPU_REF_IMAGES_PER_S)
    train_images = steps * batch * METHOD_COST.get(str(get("method")), 4.0)
    eval_images = COSTED_EVALUATIONS * sizes.val + sizes.test
    return TRIAL_OVERHEAD_S + per_image * (train_images + eval_images / 3.0)


def sharing(gpus_per_trial: float, concurrency: int | None = None) -> int:
    """Trials that share one GPU: round(1 / gpus_per_trial), but never more than run at once."""
    n = max(1, round(1.0 / gpus_per_trial)) if gpus_per_trial < 1 else 1
    return min(n, max(1, int(concurrency))) if concurrency else n


def gpu_hours(seconds_alone: float, gpus_per_trial: float, concurrency: int | None = None
              ) -> float:
    """Hours of GPU time (a GPU held by packed trials counts whole) of trials that take
    `seconds_alone` in all when each has a whole GPU, packed `sharing(...)` to a GPU at the
    measured aggregate speed-up (GPU_PACKING_SPEEDUP). With `concurrency` trials at a time, no
    more than that share a GPU, however small the fraction (at 0.125 GPU per trial but 2 trials
    at a time, two share it, at their speed-up of 2.26, not eight at 5.69)."""
    n = sharing(gpus_per_trial, concurrency)
    known = sorted(GPU_PACKING_SPEEDUP)
    lo = max(k for k in known if k <= n) if n <= known[-1] else known[-1]
    hi = min(k for k in known if k >= n) if n <= known[-1] else known[-1]
    speed = GPU_PACKING_SPEEDUP[lo] if hi == lo else GPU_PACKING_SPEEDUP[lo] + (
        GPU_PACKING_SPEEDUP[hi] - GPU_PACKING_SPEEDUP[lo]) * (n - lo) / (hi - lo)
    # n trials share one GPU and finish together after n / speed of their solo time
    return seconds_alone / speed / 3600 * (1.0 if gpus_per_trial < 1 else gpus_per_trial)


def report_count(config: Mapping[str, Any], sizes: Sizes) -> int:
    """How many times a trial reports (evaluations), for the schedulers' max_t."""
    from s4l_models.schedule import Schedule, report_steps

    cfg = TrainConfig.from_dict(dict(config))
    sched = Schedule.from_epochs(
        cfg.lr, cfg.batch_size, max(1, sizes.labeled), cfg.epochs, cfg.warmup_epochs,
        cfg.resolved_decay_epochs(),
    )
    return len(report_steps(cfg, sched))


@dataclass
class Plan:
    space: Any  # the SearchSpace that runs: --labels/--set applied, pinned axes made fixed
    base_name: str
    dataset: str
    data_dir: str | None
    search: str
    max_trials: str | None  # as given: None, "all" or a number
    num_trials: int
    points: list[dict] | None  # explicit grid points (a subset); None = the whole grid / sampled
    note: str  # one line: which trials run and why
    pinned: dict[str, Any] = field(default_factory=dict)  # axes pinned by --set
    overrides: dict[str, Any] = field(default_factory=dict)  # --set of fixed settings
    sizes: Sizes | None = None  # split sizes (measured on digits and in a sweep, else nominal)
    seed: int = 0
    adaptation: Any = None  # search_spaces.protocol.Adaptation: what the protocol changed
    facts: DatasetFacts | None = None
    left_out: dict[str, list] = field(default_factory=dict)  # axis values over the budget
    # too-short configurations among those that run: (count, of, reason by schedule)
    short: tuple[int, int, dict[str, str]] = (0, 0, {})
    # (count, warning by schedule) of the configurations that are not short but train with a
    # schedule warning (a batch larger than an epoch's images, a warmup rounded to no step)
    warned: tuple[int, dict[str, str]] = (0, {})

    @property
    def axes(self) -> list[str]:
        return [a.key for a in self.space.axes]

    def trial_config(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The full trial settings of a point (without the driver's splits_path/threads)."""
        return {**self.space.config(point), "dataset": self.dataset, "data_dir": self.data_dir}

    def cost(self, point: Mapping[str, Any]) -> float:
        return trial_cost(self.trial_config(point), self.sizes) if self.sizes else 1.0


def parse_max_trials(value: str | None) -> int | str | None:
    if value is None:
        return None
    if str(value).strip().lower() == "all":
        return "all"
    try:
        n = int(str(value).strip())
    except ValueError:
        raise UserError(f"--max-trials {value!r} must be a positive integer or 'all'") from None
    if n < 1:
        raise UserError(f"--max-trials must be at least 1, got {n}")
    return n


def _typed_overrides(raw: Mapping[str, str]) -> dict[str, Any]:
    """Parse --set values by TrainConfig's field types (unknown keys and bad values: UserError)."""
    import typing

    known = TrainConfig.field_names()
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(
            f"--set: unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(known)}"
        )
    for key in sorted(DRIVER_SETTINGS | COMMAND_SETTINGS):
        if key in raw:
            flag = "--" + key.replace("_", "-")
            raise UserError(
                f"--set {key} is not allowed: "
                + ("the sweep writes its own splits" if key == "splits_path" else f"use {flag}")
            )
    hints = typing.get_type_hints(TrainConfig)
    return {k: parse_value(k, v, hints[k]) for k, v in raw.items()}


def resolve_space(name: str, labels: str | None, raw_set: Mapping[str, str],
                  scheduler: str = "fifo"):
    """The space that runs: the named space with --labels and --set applied, and the sweep's
    evaluation cadence for `scheduler` unless --set gives one (SWEEP_EVALUATIONS)."""
    base = get_space(name)
    overrides = _typed_overrides(raw_set)
    if labels is not None:
        if "labels" in overrides:
            raise UserError("give the label fraction once: --labels or --set labels=..., not both")
        overrides["labels"] = labels
    axis_keys = {a.key for a in base.axes}
    for key in sorted(SPLIT_SETTINGS):
        if key in axis_keys and key not in overrides:
            raise UserError(
                f"space {name!r} searches {key!r}, but every trial of a sweep shares the same "
                f"splits; pin it with --set {key}=VALUE"
            )
    pinned = {k: v for k, v in overrides.items() if k in axis_keys}
    fixed_over = {k: v for k, v in overrides.items() if k not in axis_keys}
    fixed = {**base.fixed, **fixed_over, **pinned}
    sources = dict(base.fixed_sources)
    for key in fixed_over:
        sources[key] = "command line (--labels)" if key == "labels" and labels else "--set"
    for key in pinned:
        sources[key] = f"--set (pins the axis {key!r} of {name})"
    if "evaluations" not in fixed and "evaluations" not in axis_keys:
        fixed["evaluations"], sources["evaluations"] = SWEEP_EVALUATIONS[scheduler]
    space = dataclasses.replace(
        base,
        fixed=fixed,
        fixed_sources=sources,
        axes=tuple(a for a in base.axes if a.key not in pinned),
    )
    return base, space, pinned, fixed_over


def _check_configs(plan: Plan, points: list[dict]) -> None:
    """Every configuration that may run parses, and its method can train."""
    from s4l_models.methods import get_method

    methods = set()
    for point in points:
        try:
            cfg = TrainConfig.from_dict(plan.trial_config(point))
        except UserError as err:
            raise UserError(f"space {plan.base_name!r}: configuration {point} is rejected: {err}")
        methods.add(cfg.method)
    for method in sorted(methods):
        try:
            get_method(method)
        except UserError as err:
            raise UserError(f"cannot sweep {plan.base_name!r}: {err}") from None


def axis_probe_points(space) -> list[dict]:
    """A few points in which every value of every axis appears (cheap to validate)."""
    if space.size == 0:
        return []
    first = space.point_at(0)
    pts = [first]
    for axis in space.axes:
        for value in axis.values[1:]:
            pts.append({**first, axis.key: value})
    rng = random.Random(0)
    for index in rng.sample(range(space.size), min(space.size, 32)):
        pts.append(space.point_at(index))
    return pts


def plan_sizes(facts: DatasetFacts, fixed: Mapping[str, Any], test: int | None = None) -> Sizes:
    """Split sizes of a plan from the dataset's facts and the (adapted) split settings."""
    from s4l_models.data.datasets import DATASETS

    labels = str(fixed.get("labels", TrainConfig().labels))
    val = int(fixed.get("val_size") or DATASETS[facts.name].default_val_size)
    if test is None:
        test = NOMINAL_TEST_SIZE.get(facts.name, 0)
    return Sizes(labeled=labeled_count(labels, facts), val=val, test=test, train=facts.train_part)


def default_facts(dataset: str, data_dir: str | None, fixed: Mapping[str, Any]) -> DatasetFacts:
    """Facts for a plan made before the sweep reads its data: measured on the embedded digits
    (cheap), the dataset's nominal sizes otherwise (the sweep itself measures the real ones)."""
    if dataset != DIGITS:
        return DatasetFacts.nominal(dataset, fixed.get("val_size"))
    return measured_facts(DIGITS, None, fixed)


def measured_facts(dataset: str, data_dir: str | None, fixed: Mapping[str, Any], data=None):
    """Facts read off the loaded dataset and its validation split (as `make_splits` draws it)."""
    from s4l_models.data.datasets import DATASETS, load_dataset

    data = data if data is not None else load_dataset(dataset, data_dir)
    labels = data.train.labels.numpy()
    val = int(fixed.get("val_size") or DATASETS[dataset].default_val_size)
    seed = int(fixed.get("split_seed", TrainConfig().split_seed))
    # the validation split every labels spec shares (make_splits raises for impossible sizes)
    splits = make_splits(labels, len(data.classes), val, "100%", (1,), seed)
    return DatasetFacts.measure(dataset, labels, splits.train)


# Settings that decide a trial's learning-rate schedule(s); configurations that agree on them
# are equally long.
SCHEDULE_SETTINGS = (
    "method", "labels", "batch_size", "epochs", "warmup_epochs", "decay_epochs",
    "pretrain_epochs", "pretrain_batch_size", "teacher_epochs", "pretext", "teacher",
)


def short_configurations(plan: Plan, points) -> tuple[int, int, dict[str, str]]:
    """(short, total, reason by schedule): how many of `points` are too short to mean anything
    (`tune.results.SHORT_RULE`, s4l_models.schedule). Also sets `plan.warned`: (count, warnings by schedule)
    of the others whose schedule trains with a warning (`Schedule.warnings`)."""
    from s4l_models.stages import run_schedule_warnings, short_run_reason

    sizes = plan.sizes
    seen: dict[tuple, tuple[str | None, list[str]]] = {}
    reasons: dict[str, str] = {}
    warnings: dict[str, str] = {}
    short = total = warned = 0
    for point in points:
        cfg = plan.trial_config(point)
        key = tuple(repr(cfg.get(k)) for k in SCHEDULE_SETTINGS)
        if key not in seen:
            full = TrainConfig.from_dict(cfg)
            seen[key] = (short_run_reason(full, sizes.labeled, sizes.train),
                         run_schedule_warnings(full, sizes.labeled, sizes.train))
            what = ", ".join(
                f"{k}={point[k]:g}" if isinstance(point[k], float) else f"{k}={point[k]}"
                for k in ("batch_size", "epochs") if k in point
            ) or plan.base_name
            if seen[key][0]:
                reasons[what] = seen[key][0]
            elif seen[key][1]:
                warnings[what] = "; ".join(seen[key][1])
        total += 1
        short += bool(seen[key][0])
        warned += bool(not seen[key][0] and seen[key][1])
    plan.warned = (warned, warnings)
    return short, total, reasons


def check_scheduler_fits_method(space, scheduler: str) -> None:
    """ASHA, HyperBand and PBT decide on a trial's reports as they come. A method with stages
    (pseudo-label, self-supervised linear/fine-tune, MOAM) reports its first stage (the
    teacher, the pretraining) before the stage the searched lr and wd act on, and each stage's
    steps count from zero: the scheduler would stop trials, or PBT copy and perturb them, on
    the first stage's scores, and a trial stopped at its first stage's end would read as
    completed. Refused until the stages report as one run."""
    from s4l_models.methods import get_method

    if scheduler not in ("asha", "hyperband", "pbt"):
        return
    methods = {space.fixed.get("method")}
    for axis in space.axes:
        if axis.key == "method":
            methods |= set(axis.values)
    staged = sorted(m for m in methods if m and get_method(str(m)).stages is not None)
    if staged:
        raise UserError(
            f"--scheduler {scheduler} cannot run {', '.join(staged)}: its stages report one "
            "after another, so the scheduler would decide on the first stage's scores, before "
            "the stage the searched settings act on; use --scheduler fifo (the default)")


def scheduler_caveat(plan, scheduler: str) -> str | None:
    """ASHA's and HyperBand's rungs count evaluations (`training_iteration`), and each trial
    spreads its evaluations over its own schedule: where trials differ in length, a rung
    compares a short schedule's late steps with a long one's early steps (inside its warmup,
    perhaps). Said before the sweep runs; None where the trials share one schedule."""
    if scheduler not in ("asha", "hyperband"):
        return None
    varying = [a.key for a in plan.space.axes
               if a.key in ("epochs", "batch_size", "warmup_epochs") and len(a.values) > 1]
    if not varying:
        return None
    return (f"note: {scheduler} compares trials at their n-th evaluation, and {', '.join(varying)} "
            f"{'is an axis' if len(varying) == 1 else 'are axes'}, so the trials' evaluations "
            "fall after different numbers of steps (a short schedule's end against a long one's "
            "warmup); to compare them at equal budgets pin it (--set epochs=N) or use --scheduler "
            "fifo")


def make_plan(
    space_name: str,
    dataset: str = DIGITS,
    data_dir: str | None = None,
    labels: str | None = None,
    raw_set: Mapping[str, str] | None = None,
    search: str = "grid",
    max_trials: str | int | None = None,
    seed: int = 0,
    concurrency: int = 2,
    protocol: str = "scaled",
    data=None,
    scheduler: str = "fifo",
) -> Plan:
    """What a sweep runs. With `data` (the loaded dataset, as a sweep has it) the protocol and
    the split sizes are measured on it; without (a --dry-run) on the embedded digits, or from
    another dataset's nominal sizes."""
    from s4l_models.data.datasets import DATASETS

    if search not in SEARCHES:
        raise UserError(f"--search {search!r} is not one of {', '.join(SEARCHES)}")
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    n_req = parse_max_trials(None if max_trials is None else str(max_trials))
    base, space, pinned, overrides = resolve_space(space_name, labels, raw_set or {}, scheduler)
    check_scheduler_fits_method(space, scheduler)
    if data is not None:
        facts = measured_facts(dataset, data_dir, space.fixed, data)
    else:
        facts = default_facts(dataset, data_dir, space.fixed)
    # the paper's values mapped onto this dataset; values given with --set stay as they are
    space, adaptation = adapt(space, facts, protocol, keep=set(raw_set or {}))
    size = space.size
    plan = Plan(
        space=space, base_name=base.name, dataset=dataset, data_dir=data_dir, search=search,
        max_trials=None if n_req is None else str(n_req), num_trials=size, points=None, note="",
        pinned=pinned, overrides=overrides, seed=seed, adaptation=adaptation, facts=facts,
    )
    # The fixed settings and every axis value are checked before anything else happens.
    _check_configs(plan, axis_probe_points(space))
    plan.sizes = plan_sizes(facts, space.fixed)
    # costs are calibrated on digits (bench/step_seconds.py): only there do they pick trials
    cost = plan.cost if dataset == DIGITS else None
    whole = f"--max-trials all runs all {size}"
    if search == "grid":
        if n_req == "all" or (n_req is None and dataset != DIGITS) or (
            isinstance(n_req, int) and n_req >= size
        ):
            plan.note = f"grid search: all {size} configurations"
        else:
            n = n_req if isinstance(n_req, int) else min(DIGITS_DEFAULT_TRIALS, size)
            if n >= size:
                plan.note = f"grid search: all {size} configurations"
            else:
                # On digits (costs known) a smaller explicit subset is a smoke run: the
                # cheapest draws, without the (expensive) guarantee of every axis value. The
                # default subset leaves out configurations over the per-trial budget.
                longest = max((len(a.values) for a in space.axes), default=1)
                cover = n >= longest and (cost is None or n >= DIGITS_DEFAULT_TRIALS)
                budget = DIGITS_TRIAL_BUDGET_S if (cost is not None and n_req is None) else None
                over_budget = ""
                if budget is not None:
                    pool = sampling.costed_pool(space, cost, seed, budget)
                    if len(pool.index) >= n:
                        plan.left_out = pool.left_out
                    else:  # a method space of big networks: the cheapest points, said so
                        over_budget = (
                            f"; only {len(pool.index)} configurations fit the {budget:g}-s "
                            "per-trial budget, so some trials take longer"
                        )
                        budget = None
                plan.points = space.sample_points(
                    n, seed, cost=cost, cover=cover, budget=budget, concurrency=concurrency
                )
                plan.num_trials = len(plan.points)
                if cover and plan.left_out:
                    gone = "; ".join(
                        f"{k} {', '.join(_fmt(v) for v in vs)}" for k, vs in plan.left_out.items()
                    )
                    covers = (
                        f"every other axis value appears; left out, each trial over the "
                        f"{budget:g}-s budget: {gone}"
                    )
                elif cover:
                    covers = "every value of every axis appears"
                elif n < longest:
                    covers = f"too few to show all {longest} values of the longest axis"
                else:
                    covers = (
                        f"below {DIGITS_DEFAULT_TRIALS} trials on {DIGITS} axis values may be "
                        "missing"
                    )
                why = (
                    f"the default on {DIGITS}, preferring cheap points"
                    if n_req is None
                    else f"--max-trials {n}" + (", preferring cheap points" if cost else "")
                )
                plan.note = (
                    f"grid search: a seeded subset of {n} of the {size} configurations "
                    f"(seed {seed}; {covers}; {why}{over_budget}); {whole}"
                )
                _check_configs(plan, plan.points)
    else:
        if n_req == "all":
            n = size
        elif isinstance(n_req, int):
            n = n_req
        else:
            n = min(DIGITS_DEFAULT_TRIALS, size) if dataset == DIGITS else size
        # The grid has `size` configurations and every trial runs seed 0: a configuration
        # drawn twice is the same run again, so neither search asks for more than the grid.
        capped = f" (capped at the grid's {size} configurations)" if n > size else ""
        n = min(n, size)
        plan.num_trials = n
        default = f" (the default on {DIGITS}; {whole.replace('runs all', 'samples')})" if (
            n_req is None and dataset == DIGITS and n < size
        ) else ""
        if search == "random":
            # distinct points, uniformly at random (Ray's tune.choice would draw with
            # replacement: about 63% of the grid in `size` draws)
            order = random.Random(seed).sample(range(size), n)
            plan.points = [space.point_at(i) for i in order]
            plan.note = (f"random search: {n} distinct configurations drawn uniformly at random "
                         f"(seed {seed}){capped}{default}")
            _check_configs(plan, plan.points)
        else:
            plan.note = (f"optuna search: {n} trials by Optuna TPE from the same axes{capped}"
                         f"{default}; a configuration it suggests again is answered from its "
                         "first run and Optuna asked for another")
    # configurations too short to mean anything: those that run, or any the search may sample
    plan.short = short_configurations(
        plan, plan.points if plan.points is not None else _grid_points(space)
    )
    return plan


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# A grid larger than this is checked for short configurations on a seeded sample of its points.
SHORT_SCAN_LIMIT = 50_000


def _grid_points(space):
    if space.size <= SHORT_SCAN_LIMIT:
        return space.points()
    rng = random.Random(0)
    return (space.point_at(i) for i in rng.sample(range(space.size), SHORT_SCAN_LIMIT))


def trial_steps(plan: Plan) -> list[int]:
    """Optimizer steps of each planned trial, as the trainer counts them (total_steps)."""
    return [_trial_shape(p, plan.sizes)[5] for p in plan.points]


def steps_line(plan: Plan) -> str:
    """Optimizer steps per trial, the range and median: what makes a trial mean something."""
    steps = trial_steps(plan)
    return (f"optimizer steps per trial: {min(steps):,}-{max(steps):,} (median "
            f"{statistics.median(steps):,.0f}; "
            f"{plan.sizes.labeled:,} labeled images per epoch)")


def short_line(plan: Plan) -> str | None:
    """One line naming the configurations too short to mean anything, or None."""
    short, total, reasons = plan.short
    if not short:
        return None
    which = "; ".join(f"{k}: {r}" for k, r in list(reasons.items())[:4])
    hint = ""
    if plan.adaptation is not None and plan.adaptation.protocol == "literal":
        hint = " (--protocol scaled adapts the labels and batch sizes to this dataset)"
    return (
        f"warning: {short} of {total} configurations are too short to mean anything ({which}); "
        f"they run and are marked short_run, and the report leaves them out{hint}"
    )


def warning_line(plan: Plan) -> str | None:
    """One line naming the configurations whose schedule trains with a warning, or None."""
    warned, warnings = plan.warned
    if not warned:
        return None
    which = "; ".join(f"{k}: {w}" for k, w in list(warnings.items())[:4])
    return (f"note: {warned} of {plan.short[1]} configurations train with a schedule warning "
            f"({which}); they run, and metrics.json records it (schedule_warnings)")


def image_size_of(dataset: str) -> int:
    from s4l_models.data.datasets import DATASETS

    spec = DATASETS.get(dataset)
    return spec.image_size if spec is not None else 0


def estimate_epochs(plan: Plan) -> float:
    """Trial-epochs the plan would run (the compute estimate of --dry-run)."""
    space = plan.space
    if plan.points is not None:
        return estimate_trial_epochs(space, plan.points)
    if plan.search == "grid" and plan.num_trials == space.size and space.size <= 200_000:
        return estimate_trial_epochs(space, space.points())
    # Sampled: the mean over the epochs axis (uniform sampling), times the number of trials.
    epochs_axis = [a for a in space.axes if a.key == "epochs"]
    first = space.point_at(0)
    probes = [{**first, "epochs": v} for v in epochs_axis[0].values] if epochs_axis else [first]
    return estimate_trial_epochs(space, probes) / len(probes) * plan.num_trials


def describe(plan: Plan, scheduler: str, metric: str, cpus: float, gpus: float,
             concurrency: int | None, keep_checkpoints: bool = False, largest=None,
             local: bool = True) -> str:
    """The --dry-run text. `largest`: the largest trials by memory, when already estimated
    (tune/memory_plan.py's largest_trials); `local`: the sweep would start Ray here."""
    space = plan.space
    lines = [
        plan.adaptation.line(),
        f"space {plan.base_name}: {space.description}",
        f"configurations: {space.size}",
    ]
    if plan.pinned:
        pins = ", ".join(f"{k}={v}" for k, v in plan.pinned.items())
        lines.append(f"(axes pinned by --set: {pins})")
    lines.append(format_axes_table(space))
    fixed = ", ".join(f"{k}={v}" for k, v in space.fixed.items() if k not in plan.pinned)
    lines.append(f"fixed: {fixed}")
    facts = plan.facts
    lines.append(
        f"dataset: {plan.dataset}" + (f" ({plan.data_dir})" if plan.data_dir else "")
        + (f"; {plan.sizes.labeled} labeled, {plan.sizes.val} validation images"
           + ("" if facts is None or facts.measured else " (nominal sizes: files not read)")
           if plan.sizes else "")
    )
    lines.append(f"trials: {plan.num_trials} ({plan.note})")
    if plan.points is not None and plan.sizes is not None:
        lines.append(steps_line(plan))
    if short_line(plan):
        lines.append(short_line(plan))
    if warning_line(plan):
        lines.append(warning_line(plan))
    lines.append(
        f"scheduler: {scheduler}, metric: {metric} (max), per trial: {cpus:g} CPU"
        + (f", {gpus:g} GPU" if gpus else "")
        + (f", concurrency {concurrency}" if concurrency else "")
    )
    epochs = estimate_epochs(plan)
    est = f"compute: {epochs:,.0f} trial-epochs"
    if plan.sizes is not None:
        if plan.points is not None:
            seconds = sum(plan.cost(p) for p in plan.points)
        else:
            seconds = plan.cost(space.point_at(0)) * plan.num_trials  # very rough
        at_once = max(1, concurrency or 1)
        spec_size = image_size_of(plan.dataset)
        est += (f" (about {hours(seconds / 3600, 'CPU')} on {plan.dataset}, "
                f"{hours(seconds / 3600 / at_once)}"
                f" of wall time at {at_once} at a time; the cost model of one-thread step times"
                f" {'measured on 8x8 images' if spec_size == 8 else 'calibrated to ' + str(spec_size) + 'x' + str(spec_size) + ' images'}"
                f" (bench/cost_calibration.py); rough: the machine's load moves it"
                + ("; on 8x8 it runs high on purpose: the committed digits sweep took "
                   f"{DIGITS_MEASURED_OVER_ESTIMATED:.2f}x its estimate" if spec_size == 8
                   else "") + ")")
        if gpus:
            pts = plan.points if plan.points is not None else [space.point_at(0)] * \
                plan.num_trials
            alone = (sum(gpu_trial_seconds(p, plan.sizes) for p in plan.points)
                     if plan.points is not None
                     else gpu_trial_seconds(pts[0], plan.sizes) * plan.num_trials)
            n = sharing(gpus, concurrency)
            share = f", {n} trial(s) sharing a GPU" if gpus < 1 else ""
            if n > max(GPU_PACKING_SPEEDUP):
                share += (f", beyond the {max(GPU_PACKING_SPEEDUP)} per GPU measured (their "
                          "speed-up is assumed)")
            est += (f"; on GPUs about {hours(gpu_hours(alone, gpus, concurrency), 'GPU')} at "
                    f"{gpus:g} GPU per trial{share} (the GPU cost model calibrated on "
                    f"{GPU_CALIBRATION}; rough: {GPU_CHECK})")
    if scheduler in ("asha", "hyperband"):
        est += f"; at most this, {scheduler} stops poor trials early"
    lines.append(est)
    caveat = scheduler_caveat(plan, scheduler)
    if caveat:
        lines.append(caveat)
    # memory and disk are planned resources too (estimates, tune/memory_plan.py)
    lines += memory_lines(plan, concurrency or 1, gpus > 0, keep_checkpoints, largest, local)
    return "\n".join(lines)


def list_text() -> str:
    spaces = list_spaces()
    w = max(len(s.name) for s in spaces)
    return "\n".join(f"{s.name.ljust(w)}  {s.size:>6}  {s.description}" for s in spaces)


def planned_concurrency(flags: dict[str, Any]) -> int:
    """Trials at a time as planned before Ray starts (this machine's CPUs unless --concurrency);
    on a cluster the driver uses the cluster's CPUs."""
    if flags["concurrency"]:
        return int(flags["concurrency"])
    return max(1, int(len(os.sched_getaffinity(0)) // float(flags["cpus_per_trial"])))

__all__ = ["Plan", "Sizes", "make_plan", "describe", "list_text", "trial_cost"]
