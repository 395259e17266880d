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
- random / optuna: N samples (default 24 on digits, else the grid size) from the same axes.

`describe(plan)` is the `--dry-run` text. Nothing here starts Ray or trains.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from s4l_models.config import TrainConfig
from s4l_models.errors import UserError

DIGITS = "digits"
DIGITS_DEFAULT_TRIALS = 24
SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("fifo", "asha", "hyperband", "pbt")
# Settings the sweep itself sets for every trial (the splits it writes, the threads from
# --cpus-per-trial); dataset/data_dir/labels have their own flags.
DRIVER_SETTINGS = ("splits_path",)
FLAG_SETTINGS = ("dataset", "data_dir")
# Settings that decide the shared splits: the same for every trial, so never an axis.
SPLIT_SETTINGS = ("dataset", "labels", "val_size", "tiny_k", "split_seed")
# PBT may change these in a running trial (they do not change the model's shape or the data).
PBT_MUTABLE = ("lr", "wd", "momentum", "w_u", "eps_vat", "w_vat", "w_entmin")

# Seconds of one SGD step (batch 256, forward + backward + update) of ResNet-<depth> at these
# widths on 8x8 digits, one CPU thread of the 2-core development machine under load (v1 and v2
# alike; measured). Wide models are slower than width^2 (memory-bound): x4 is ~45x x1 for
# ResNet-18. Other depths/widths are interpolated (log-linear) or scaled. On other datasets
# the seconds are wrong but the ratios between trials hold (they order trials and give the ETA).
STEP_SECONDS = {
    18: {0.5: 0.10, 1.0: 0.365, 2.0: 1.54, 4.0: 16.4},
    34: {0.5: 0.34, 1.0: 1.15, 2.0: 4.76, 4.0: 35.7},
    50: {0.5: 0.67, 1.0: 2.15, 2.0: 9.7, 4.0: 53.4},
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
# Per-trial overhead in seconds (Ray actor, imports, data, checkpoints).
TRIAL_OVERHEAD_S = 5.0


def step_seconds(depth: int, width: float) -> float:
    """Estimated seconds of one batch-256 step on digits (see STEP_SECONDS)."""
    scale = 1.0
    if depth not in STEP_SECONDS:
        scale = DEPTH_SCALE.get(depth, depth / 50.0)
        depth = 50
    table = sorted(STEP_SECONDS[depth].items())
    ws = [math.log(w) for w, _ in table]
    ts = [math.log(t) for _, t in table]
    x = math.log(max(width, 1e-3))
    if x <= ws[0]:
        i = 0
    elif x >= ws[-1]:
        i = len(ws) - 2
    else:
        i = max(j for j in range(len(ws) - 1) if ws[j] <= x)
    slope = (ts[i + 1] - ts[i]) / (ws[i + 1] - ws[i])
    return scale * math.exp(ts[i] + slope * (x - ws[i]))


@dataclass
class Sizes:
    """Split sizes that set a trial's cost: labeled images, validation and test images."""

    labeled: int
    val: int
    test: int


def trial_cost(config: Mapping[str, Any], sizes: Sizes) -> float:
    """Rough seconds of one trial on one CPU core (ratios drive subset choice and the ETA)."""
    from s4l_models.resnet import parse_arch

    defaults = TrainConfig()
    get = lambda k: config.get(k, getattr(defaults, k))  # noqa: E731
    depth, _, name_width = parse_arch(str(get("arch")))
    width = float(name_width if name_width is not None else get("width"))
    per_image = step_seconds(depth, width) / 256.0  # one training image (digits-sized)
    batch = int(get("batch_size"))
    epochs = float(get("epochs"))
    steps = max(1, math.ceil(epochs * max(1, sizes.labeled) / batch))
    eval_every = float(get("eval_every"))
    evals = min(steps, 10) if eval_every <= 0 else max(1, min(steps, int(epochs / eval_every)))
    method = METHOD_COST.get(str(get("method")), 4.0)
    train = steps * batch * method * per_image
    evaluate = (evals * sizes.val + sizes.test) * per_image / 3.0  # forward only
    return TRIAL_OVERHEAD_S + train + evaluate


def report_count(config: Mapping[str, Any], sizes: Sizes) -> int:
    """How many times a trial reports (evaluations), for the schedulers' max_t."""
    from s4l_models.schedule import Schedule
    from s4l_models.trainer import report_steps

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
    sizes: Sizes | None = None  # split sizes (digits only: known without reading files)
    seed: int = 0

    @property
    def axes(self) -> list[str]:
        return [a.key for a in self.space.axes]

    def trial_config(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The full trial settings of a point (without the driver's splits_path/threads)."""
        return {**self.space.config(point), "dataset": self.dataset, "data_dir": self.data_dir}

    def cost(self, point: Mapping[str, Any]) -> float:
        return trial_cost(self.trial_config(point), self.sizes) if self.sizes else 1.0


def parse_set(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r} is not KEY=VALUE; write e.g. --set epochs=2")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


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

    from s4l_models.config import parse_value

    known = TrainConfig.field_names()
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(
            f"--set: unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(known)}"
        )
    for key in (*DRIVER_SETTINGS, *FLAG_SETTINGS):
        if key in raw:
            flag = "--" + key.replace("_", "-")
            raise UserError(
                f"--set {key} is not allowed: "
                + ("the sweep writes its own splits" if key == "splits_path" else f"use {flag}")
            )
    hints = typing.get_type_hints(TrainConfig)
    return {k: parse_value(k, v, hints[k]) for k, v in raw.items()}


def resolve_space(name: str, labels: str | None, raw_set: Mapping[str, str]):
    """The space that runs: the named space with --labels and --set applied."""
    from search_spaces import get_space

    base = get_space(name)
    overrides = _typed_overrides(raw_set)
    if labels is not None:
        if "labels" in overrides:
            raise UserError("give the label fraction once: --labels or --set labels=..., not both")
        overrides["labels"] = labels
    axis_keys = {a.key for a in base.axes}
    for key in SPLIT_SETTINGS:
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


def _axis_probe_points(space) -> list[dict]:
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


# Subsets chosen with a cost prefer cheap points: weights 1/cost**COST_POWER, and of
# COVER_TRIES covering sets (one seeded `sample_points` call each) the cheapest is kept.
COVER_TRIES = 2048
COST_POWER = 3
POOL_LIMIT = 20_000


def _grid_index(space, point: Mapping[str, Any]) -> int:
    index = 0
    for axis in space.axes:
        index = index * len(axis.values) + axis.values.index(point[axis.key])
    return index


def _weighted_draw(space, k: int, rng: random.Random, cost, exclude: set[int]) -> list[int]:
    """k distinct grid indices not in `exclude`, by weight 1/cost (Efraimidis-Spirakis), or
    uniformly without a cost; large grids are drawn from a random pool of POOL_LIMIT points."""
    size = space.size
    if size - len(exclude) <= POOL_LIMIT:
        pool = [i for i in range(size) if i not in exclude]
    else:
        pool = [i for i in rng.sample(range(size), POOL_LIMIT + len(exclude)) if i not in exclude]
        pool = pool[:POOL_LIMIT]
    if cost is None:
        return rng.sample(pool, min(k, len(pool)))
    keyed = sorted(
        ((math.log(1.0 - rng.random()) * cost(space.point_at(i)), i) for i in pool), reverse=True
    )
    return [i for _, i in keyed[:k]]


def pick_points(
    space, n: int, seed: int, cost=None, concurrency: int = 2, cover: bool = True
) -> list[dict]:
    """A seeded subset of `n` distinct grid points (in grid order), deterministic in `seed`.

    With `cover` and n at least the longest axis, every value of every axis appears: without a
    cost this is `SearchSpace.sample_points(n, seed)`. With `cost(point)` (seconds), cheap
    points are preferred: the covering part is the cheapest (longest trial, then total) of
    COVER_TRIES seeded `sample_points` covers drawn with weight 1/cost^3, the rest is drawn
    with the same weights. Otherwise n points are drawn (by 1/cost^3 with a cost).
    """
    longest = max((len(a.values) for a in space.axes), default=1)
    cover = cover and n >= longest
    if cost is None:
        if cover:
            return space.sample_points(n, seed)
        rng = random.Random(seed)
        return [space.point_at(i) for i in sorted(_weighted_draw(space, n, rng, None, set()))]
    memo: dict[tuple, float] = {}

    def c(point: Mapping[str, Any]) -> float:
        key = tuple(repr(v) for v in point.values())
        if key not in memo:
            memo[key] = float(cost(point))
        return memo[key]

    def sharp(point: Mapping[str, Any]) -> float:
        return c(point) ** COST_POWER

    chosen: set[int] = set()
    if cover and space.axes:
        best = None
        for k in range(COVER_TRIES):
            cover = space.sample_points(longest, seed * COVER_TRIES + k, cost=sharp)
            costs = [c(p) for p in cover]
            key = (max(max(costs), sum(costs) / max(1, concurrency)), sum(costs))
            if best is None or key < best[0]:
                best = (key, cover)
        chosen = {_grid_index(space, p) for p in best[1]}
    rng = random.Random(seed)
    chosen.update(_weighted_draw(space, n - len(chosen), rng, sharp, chosen))
    return [space.point_at(i) for i in sorted(chosen)]


def digits_sizes(fixed: Mapping[str, Any]) -> Sizes:
    """Split sizes on the embedded digits set (no files to read: it is bundled)."""
    from s4l_models.data.datasets import DATASETS, load_dataset
    from s4l_models.data.splits import make_splits

    cfg = TrainConfig.from_dict({k: v for k, v in fixed.items() if k in SPLIT_SETTINGS})
    spec = DATASETS[DIGITS]
    data = load_dataset(DIGITS, None)
    splits = make_splits(
        data.train.labels.numpy(), spec.num_classes, cfg.val_size or spec.default_val_size,
        cfg.labels, tuple(cfg.tiny_k), cfg.split_seed,
    )
    n_test = len(data.test) if data.test is not None else 0
    return Sizes(labeled=len(splits.labeled), val=len(splits.val), test=n_test)


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
) -> Plan:
    from s4l_models.data.datasets import DATASETS

    if search not in SEARCHES:
        raise UserError(f"--search {search!r} is not one of {', '.join(SEARCHES)}")
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    n_req = parse_max_trials(None if max_trials is None else str(max_trials))
    base, space, pinned, overrides = resolve_space(space_name, labels, raw_set or {})
    size = space.size
    plan = Plan(
        space=space, base_name=base.name, dataset=dataset, data_dir=data_dir, search=search,
        max_trials=None if n_req is None else str(n_req), num_trials=size, points=None, note="",
        pinned=pinned, overrides=overrides, seed=seed,
    )
    # The fixed settings and every axis value are checked before anything else happens.
    _check_configs(plan, _axis_probe_points(space))
    if dataset == DIGITS:
        plan.sizes = digits_sizes(plan.trial_config(space.point_at(0)))
    cost = plan.cost if plan.sizes else None
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
                # cheapest draws, without the (expensive) guarantee of every axis value.
                longest = max((len(a.values) for a in space.axes), default=1)
                cover = n >= longest and (cost is None or n >= DIGITS_DEFAULT_TRIALS)
                plan.points = pick_points(
                    space, n, seed, cost=cost, concurrency=concurrency, cover=cover
                )
                plan.num_trials = len(plan.points)
                if cover:
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
                    f"(seed {seed}; {covers}; {why}); {whole}"
                )
                _check_configs(plan, plan.points)
    else:
        if n_req == "all":
            n = size
        elif isinstance(n_req, int):
            n = n_req
        else:
            n = min(DIGITS_DEFAULT_TRIALS, size) if dataset == DIGITS else size
        plan.num_trials = n
        how = "random sampling" if search == "random" else "Optuna TPE"
        default = f" (the default on {DIGITS}; {whole.replace('runs all', 'samples')})" if (
            n_req is None and dataset == DIGITS and n < size
        ) else ""
        plan.note = f"{search} search: {n} trials by {how} from the same axes{default}"
    return plan


def estimate_epochs(plan: Plan) -> float:
    """Trial-epochs the plan would run (the compute estimate of --dry-run)."""
    from search_spaces import estimate_trial_epochs

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
             concurrency: int | None) -> str:
    """The --dry-run text."""
    from search_spaces import format_axes_table

    space = plan.space
    lines = [
        f"space {plan.base_name}: {space.description}",
        f"configurations: {space.size}",
    ]
    if plan.pinned:
        pins = ", ".join(f"{k}={v}" for k, v in plan.pinned.items())
        lines.append(f"(axes pinned by --set: {pins})")
    lines.append(format_axes_table(space))
    fixed = ", ".join(f"{k}={v}" for k, v in space.fixed.items() if k not in plan.pinned)
    lines.append(f"fixed: {fixed}")
    lines.append(
        f"dataset: {plan.dataset}" + (f" ({plan.data_dir})" if plan.data_dir else "")
    )
    lines.append(f"trials: {plan.num_trials} ({plan.note})")
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
        est += f" (about {seconds / 60:.1f} CPU-minutes on {plan.dataset}, rough)"
    if scheduler in ("asha", "hyperband"):
        est += f"; at most this, {scheduler} stops poor trials early"
    lines.append(est)
    return "\n".join(lines)


def list_text() -> str:
    from search_spaces import list_spaces

    spaces = list_spaces()
    w = max(len(s.name) for s in spaces)
    return "\n".join(f"{s.name.ljust(w)}  {s.size:>6}  {s.description}" for s in spaces)


__all__ = ["Plan", "Sizes", "make_plan", "describe", "list_text", "trial_cost", "pick_points"]
