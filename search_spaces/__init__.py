"""Named hyperparameter search spaces of the S4L paper (Zhai et al., ICCV 2019), as data.

`baseline.py` holds the supervised grids of Section 4.1 (2,160 and 8,640 configurations),
`methods.py` the method searches of Sections 4.2-4.4 and MOAM's final setting (Section 5),
`space.py` the machinery (`Axis`, `SearchSpace`, validation, tables), `sampling.py` the one sampler of grid points. Every axis and fixed
setting carries its source: the paper's section, or "(ours)" where the paper is silent.

    from search_spaces import get_space
    space = get_space("baseline_10pct")       # space.size == 2160
    trials = [space.config(p) for p in space.sample_points(24, seed=0)]
"""

from __future__ import annotations

from s4l_models.errors import UserError

from . import baseline, methods
from .space import (
    Axis,
    SearchSpace,
    estimate_trial_epochs,
    format_axes_table,
    validate_space,
)

_SPACES: dict[str, SearchSpace] = {}
for _space in (*baseline.SPACES, *methods.SPACES):
    if _space.name in _SPACES:
        raise RuntimeError(f"two search spaces are named {_space.name!r}")
    _SPACES[_space.name] = _space


def list_spaces() -> list[SearchSpace]:
    """Every space: the baselines, then each method (10% before 1%), then MOAM."""
    return list(_SPACES.values())


def get_space(name: str) -> SearchSpace:
    try:
        return _SPACES[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown space {name!r}; choose one of {', '.join(_SPACES)} "
            "(python tune/run_sweep.py --list shows them)"
        ) from None


__all__ = [
    "Axis",
    "SearchSpace",
    "get_space",
    "list_spaces",
    "validate_space",
    "format_axes_table",
    "estimate_trial_epochs",
]
