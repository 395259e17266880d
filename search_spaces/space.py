"""What a search space is: fixed trainer settings plus named axes, each with its provenance.

A `SearchSpace` is plain data: the `TrainConfig` settings it holds constant (`fixed`, each with
a source string in `fixed_sources`) and a tuple of `Axis` (a setting, its values, and where the
values come from: "S4L §4.1: ..." for the paper, "(ours) ..." for our choices where the paper
is silent). The grid is the product of the axes in their declared order (the last axis varies
fastest, as in `itertools.product`). A grid point is `{axis key: value}`; `config(point)` adds
the fixed settings and gives a trial config for `TrainConfig.from_dict` (the CLI adds `dataset`
and `data_dir`; a space never sets them).

`sample_points(n, seed, cost)` picks a seeded subset of the grid that still shows every value of
every axis at least once, optionally preferring cheap points; it never enumerates a large grid.
"""

from __future__ import annotations

import itertools
import math
import random
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from s4l_models.config import COMMAND_SETTINGS, TrainConfig
from s4l_models.errors import UserError
from search_spaces import sampling

# validate_space: grids up to this size have every point checked; larger ones a sample.
_VALIDATE_ALL_LIMIT = 512
_VALIDATE_SAMPLE = 64


@dataclass(frozen=True)
class Axis:
    key: str  # a TrainConfig setting
    values: tuple  # plain Python values of the setting's type
    source: str  # provenance: "S4L §4.1: ..." or "(ours) ..."

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str  # one line
    fixed: Mapping[str, Any]  # TrainConfig settings held constant
    fixed_sources: Mapping[str, str]  # provenance of each fixed setting
    axes: tuple[Axis, ...] = field(default=())

    def __post_init__(self) -> None:
        # Plain dicts and tuples: picklable (Ray ships spaces to workers) and not aliased.
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "fixed_sources", dict(self.fixed_sources))
        object.__setattr__(self, "axes", tuple(self.axes))

    # --- the grid ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return math.prod(len(a.values) for a in self.axes)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.axes)

    def points(self) -> Iterator[dict]:
        """Every grid point, in itertools.product order over the axes."""
        keys = self.keys
        for values in itertools.product(*(a.values for a in self.axes)):
            yield dict(zip(keys, values))

    def point_at(self, index: int) -> dict:
        """The grid point at position `index` of `points()` (without enumerating the grid)."""
        if not 0 <= index < self.size:
            raise UserError(f"space {self.name!r} has {self.size} points; no point {index}")
        digits = []
        for axis in reversed(self.axes):
            index, r = divmod(index, len(axis.values))
            digits.append(r)
        return {a.key: a.values[r] for a, r in zip(self.axes, reversed(digits))}

    def index_of(self, digits: Iterable[int]) -> int:
        """Inverse of `point_at`, from each axis's value position."""
        index = 0
        for axis, d in zip(self.axes, digits):
            index = index * len(axis.values) + d
        return index

    def config(self, point: Mapping) -> dict:
        """A trial config: the fixed settings overridden by the point's values."""
        return {**self.fixed, **point}

    # --- sampling ---------------------------------------------------------------------------
    def sample_points(
        self, n: int, seed: int, cost: Callable[[dict], float] | None = None, *,
        cover: bool = True, budget: float | None = None, concurrency: int = 2,
    ) -> list[dict]:
        """`n` distinct grid points (in grid order) covering every value of every axis.

        Deterministic for a given `seed`; with `cost(point) -> seconds`, cheap points are
        preferred and, with `budget`, points over it are never chosen. The sampler is
        `search_spaces.sampling.sample` (its docstring has the details).
        """
        return sampling.sample(
            self, n, seed, cost, cover=cover, budget=budget, concurrency=concurrency
        )

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable description (for space.json)."""
        return {
            "name": self.name,
            "description": self.description,
            "size": self.size,
            "fixed": {k: _jsonable(v) for k, v in self.fixed.items()},
            "fixed_sources": dict(self.fixed_sources),
            "axes": [
                {"key": a.key, "values": [_jsonable(v) for v in a.values], "source": a.source}
                for a in self.axes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> SearchSpace:
        """Inverse of `to_dict` (JSON lists become tuples again)."""
        return cls(
            name=data["name"],
            description=data["description"],
            fixed={k: _untuple(v) for k, v in data["fixed"].items()},
            fixed_sources=data["fixed_sources"],
            axes=tuple(
                Axis(a["key"], tuple(_untuple(v) for v in a["values"]), a["source"])
                for a in data["axes"]
            ),
        )


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _untuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# --- validation -----------------------------------------------------------------------------
def _has_type(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        elem = args[0]
        return isinstance(value, tuple) and all(_has_type(v, elem) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # ints are acceptable floats (the numeric tower)
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
            value
        )
    if hint is str:
        return isinstance(value, str)
    return False


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def validate_space(space: SearchSpace) -> None:
    """Check a space against TrainConfig; raise UserError naming the space and the problem.

    Small grids have every configuration parsed by `TrainConfig.from_dict`; large ones have
    each axis value checked once (in the first grid point) plus a seeded sample of points.
    """
    name = getattr(space, "name", "?")

    def fail(problem: str) -> None:
        raise UserError(f"space {name!r}: {problem}")

    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        fail("the name must be a non-empty identifier (letters, digits, _)")
    if not isinstance(space.description, str) or not space.description.strip():
        fail("the description is empty")
    if "\n" in space.description:
        fail("the description must be one line")

    hints = typing.get_type_hints(TrainConfig)
    fields = TrainConfig.field_names()

    def check_key(key: str, where: str) -> None:
        if key in COMMAND_SETTINGS:
            fail(f"{where} {key!r} is added by the command line; a space must not set it")
        if key not in fields:
            fail(f"{where} {key!r} is not a TrainConfig setting; known: {', '.join(fields)}")

    def check_value(key: str, value: Any, where: str) -> None:
        if not _has_type(value, hints[key]):
            fail(f"{where} {key}={value!r} is not of the setting's type {_type_name(hints[key])}")

    for key, value in space.fixed.items():
        check_key(key, "fixed setting")
        check_value(key, value, "fixed setting")
        if not str(space.fixed_sources.get(key, "")).strip():
            fail(f"fixed setting {key!r} has no source in fixed_sources")
    extra = sorted(set(space.fixed_sources) - set(space.fixed))
    if extra:
        fail(f"fixed_sources names settings that are not fixed: {', '.join(extra)}")

    seen: set[str] = set()
    for axis in space.axes:
        check_key(axis.key, "axis")
        if axis.key in seen:
            fail(f"axis {axis.key!r} appears twice")
        if axis.key in space.fixed:
            fail(f"axis {axis.key!r} is also a fixed setting")
        seen.add(axis.key)
        if not axis.values:
            fail(f"axis {axis.key!r} has no values")
        if len(set(map(repr, axis.values))) != len(axis.values):
            fail(f"axis {axis.key!r} repeats a value: {list(axis.values)}")
        if not isinstance(axis.source, str) or not axis.source.strip():
            fail(f"axis {axis.key!r} has no source")
        for value in axis.values:
            check_value(axis.key, value, "axis value")

    def check_config(point: Mapping) -> None:
        try:
            TrainConfig.from_dict(space.config(point))
        except UserError as err:
            fail(f"the configuration {dict(point)} is rejected: {err}")

    size = space.size
    if size <= _VALIDATE_ALL_LIMIT:
        for point in space.points():
            check_config(point)
        return
    first = space.point_at(0)
    for axis in space.axes:  # every value once, in an otherwise real grid point
        for value in axis.values[1:]:
            check_config({**first, axis.key: value})
    rng = random.Random(0)
    for index in [0, size - 1, *rng.sample(range(size), _VALIDATE_SAMPLE)]:
        check_config(space.point_at(index))


# --- reporting ------------------------------------------------------------------------------
def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    return str(value)


def format_axes_table(space: SearchSpace) -> str:
    """A plain-text table of the axes: key, number of values, values, source."""
    header = ("axis", "n", "values", "source")
    rows = [
        (a.key, str(len(a.values)), ", ".join(_format_value(v) for v in a.values), a.source)
        for a in space.axes
    ]
    if not rows:
        return f"{space.name}: no axes (a single configuration)"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = []
    for r in [header, tuple("-" * w for w in widths) + ("-" * len(header[3]),), *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    lines.append(f"{space.size} configurations")
    return "\n".join(line.rstrip() for line in lines)


def estimate_trial_epochs(space: SearchSpace, points: Iterable[Mapping]) -> float:
    """Sum of `epochs` over the given points (a compute estimate for --dry-run)."""
    default = TrainConfig.__dataclass_fields__["epochs"].default
    return float(sum(float(space.config(p).get("epochs", default)) for p in points))


__all__ = [
    "Axis",
    "SearchSpace",
    "validate_space",
    "format_axes_table",
    "estimate_trial_epochs",
]
