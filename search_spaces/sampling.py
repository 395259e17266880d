"""The one sampler of grid points: a seeded subset of a space's grid.

`sample(space, n, seed)` gives `n` distinct points, in grid order, in which every value of
every axis appears (`cover`). With `cost(point) -> seconds`, cheap points are preferred (weights
1/cost**COST_POWER) and, with `budget`, points over `budget` seconds are never chosen (the axis
values that no affordable point has are named by `costed_pool(...).left_out`). No grid is ever
enumerated past POOL_LIMIT points: larger grids are drawn from a seeded pool of that many.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from s4l_models.errors import UserError

# Grids with at most this many points are sampled from all of them; larger ones from a
# seeded random pool of this many distinct points.
POOL_LIMIT = 20_000
# With a cost: weights 1/cost**COST_POWER; of COVER_TRIES randomised greedy covers the
# cheapest (longest trial, then total) is kept.
COVER_TRIES = 256
COST_POWER = 3


def sample(
    space, n: int, seed: int, cost: Callable[[dict], float] | None = None, *,
    cover: bool = True, budget: float | None = None, concurrency: int = 2,
) -> list[dict]:
    """`n` distinct grid points of `space` (in grid order), deterministic in `seed`.

    With `cover`, every value of every axis appears (an error when `n` is below the longest
    axis). `concurrency` is how many trials run at once: the covering part minimises the
    longest trial or the total per worker, whichever is larger.
    """
    lengths = [len(a.values) for a in space.axes]
    longest = max(lengths, default=0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"sample_points: n must be a positive integer, got {n!r}")
    if cover and n < longest:
        axis = space.axes[lengths.index(longest)]
        raise UserError(
            f"cannot cover the {longest} values of axis {axis.key!r} of space "
            f"{space.name!r} with {n} points; ask for at least {longest}"
        )
    if n > space.size:
        raise UserError(f"space {space.name!r} has only {space.size} points; cannot sample {n}")
    if cost is not None:
        return _costed(space, n, seed, cost, cover, budget, concurrency)
    rng = random.Random(seed)
    chosen = _uniform_cover(space, lengths, rng) if cover else set()
    chosen.update(_uniform_draw(space, n - len(chosen), rng, chosen))
    return [space.point_at(i) for i in sorted(chosen)]


def _uniform_cover(space, lengths: list[int], rng: random.Random) -> set[int]:
    """One point per value of the longest axis; slot s gets the s-th value of a random
    arrangement of every axis, the rest of its digits at random."""
    longest = max(lengths, default=0)
    slots: list[list[int | None]] = [[None] * len(lengths) for _ in range(longest)]
    for j, m in enumerate(lengths):
        for v, s in enumerate(rng.sample(range(longest), m)):
            slots[s][j] = v
    chosen: set[int] = set()
    for slot in slots:
        digits = [rng.randrange(m) if d is None else d for d, m in zip(slot, lengths)]
        chosen.add(space.index_of(digits))  # distinct: the longest axis differs per slot
    return chosen


def _uniform_draw(space, k: int, rng: random.Random, exclude: set[int]) -> list[int]:
    """k distinct grid indices not in `exclude`, uniformly (from a pool for large grids)."""
    if k <= 0:
        return []
    size = space.size
    remaining = size - len(exclude)
    if remaining <= max(POOL_LIMIT, 4 * k):
        pool = [i for i in range(size) if i not in exclude]
    else:
        m = min(remaining, max(POOL_LIMIT, 4 * k))
        pool = [i for i in rng.sample(range(size), m + len(exclude)) if i not in exclude][:m]
    return rng.sample(pool, k)


@dataclass
class Pool:
    """The grid points a costed subset may use: their indices, axis digits and costs."""

    index: np.ndarray  # [P] grid indices
    digits: np.ndarray  # [P, axes] value positions on each axis
    cost: np.ndarray  # [P] estimated seconds
    left_out: dict[str, list]  # axis -> its values with no point within the budget


def costed_pool(space, cost, seed: int, budget: float | None = None) -> Pool:
    """Every grid point (a seeded sample of POOL_LIMIT for larger grids) with its cost, those
    above `budget` seconds removed; `left_out` names the axis values that no point keeps."""
    size = space.size
    rng = random.Random(seed)
    index = list(range(size)) if size <= POOL_LIMIT else sorted(rng.sample(range(size), POOL_LIMIT))
    lengths = [len(a.values) for a in space.axes]
    digits = np.zeros((len(index), len(lengths)), dtype=np.int64)
    rest = np.asarray(index, dtype=np.int64)
    for j in range(len(lengths) - 1, -1, -1):
        rest, digits[:, j] = np.divmod(rest, lengths[j])
    costs = np.array([_checked_cost(cost, space.point_at(i)) for i in index])
    keep = costs <= budget if budget is not None else np.ones(len(index), dtype=bool)
    left_out = {}
    for j, axis in enumerate(space.axes):
        missing = [v for d, v in enumerate(axis.values) if not (digits[keep, j] == d).any()]
        if missing:
            left_out[axis.key] = missing
    return Pool(np.asarray(index)[keep], digits[keep], costs[keep], left_out)


def _checked_cost(cost, point: dict) -> float:
    c = cost(point)
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
        raise UserError(f"cost must return a positive finite number, got {c!r} for {point}")
    return float(c)


def _costed(space, n, seed, cost, cover, budget, concurrency) -> list[dict]:
    pool = costed_pool(space, cost, seed, budget)
    if len(pool.index) < n:
        raise UserError(
            f"only {len(pool.index)} configurations of {space.name!r} fit the per-trial budget of "
            f"{budget:g} s; ask for fewer trials or pass --max-trials all"
        )
    longest = max((len(a.values) for a in space.axes), default=1)
    weight = 1.0 / np.maximum(pool.cost, 1e-9) ** COST_POWER
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    if cover and space.axes:
        pairs = sorted({(j, int(d)) for j in range(pool.digits.shape[1])
                        for d in np.unique(pool.digits[:, j])})
        best = None
        for _ in range(COVER_TRIES):
            taken = np.zeros(len(pool.index), dtype=bool)
            covered = np.zeros((pool.digits.shape[1], max(longest, 1)), dtype=bool)
            for k in rng.permutation(len(pairs)):
                j, d = pairs[k]
                if covered[j, d]:
                    continue
                cand = np.flatnonzero((pool.digits[:, j] == d) & ~taken)
                cum = np.cumsum(weight[cand])
                pick = cand[min(int(np.searchsorted(cum, rng.random() * cum[-1])), len(cand) - 1)]
                taken[pick] = True
                covered[np.arange(pool.digits.shape[1]), pool.digits[pick]] = True
            if taken.sum() > n:
                continue  # a cover larger than the subset: try another
            costs = pool.cost[taken]
            key = (max(costs.max(), costs.sum() / max(1, concurrency)), costs.sum())
            if best is None or key < best[0]:
                best = (key, np.flatnonzero(taken))
        chosen = set(best[1].tolist()) if best is not None else set()
    k = n - len(chosen)
    if k > 0:
        # Efraimidis-Spirakis: the k largest u^(1/w) are a weighted sample without replacement.
        free = np.array([i for i in range(len(pool.index)) if i not in chosen], dtype=np.int64)
        keys = np.log(1.0 - rng.random(len(free))) / weight[free]
        chosen.update(free[np.argsort(-keys)[:k]].tolist())
    return [space.point_at(int(pool.index[i])) for i in sorted(chosen, key=lambda i: pool.index[i])]
