"""Training methods by name: each is a loss of (model, labeled batch, unlabeled batch, context).

A method module defines `METHOD = Method(...)`. The registry lists every method of the paper;
methods whose module is not written yet are listed as unavailable, and asking to train one
gives a clear error instead of an ImportError.
"""

from __future__ import annotations

import importlib

from ..errors import UserError
from .base import Batch, Method, StepContext

# Every method of the paper (S4L Sections 3-5), in the order of its tables.
PAPER_METHODS = (
    "supervised",
    "s4l_rotation",
    "s4l_exemplar",
    "vat",
    "vat_entmin",
    "pseudolabel",
    "selfsup_linear",
    "selfsup_finetune",
    "moam",
)


def _load(name: str) -> Method | None:
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.{name}":
            return None
        raise
    return module.METHOD


def list_methods(include_unavailable: bool = False) -> list[str]:
    """Names of the methods that can be trained (all of the paper's with include_unavailable)."""
    if include_unavailable:
        return list(PAPER_METHODS)
    return [m for m in PAPER_METHODS if _load(m) is not None]


def get_method(name: str) -> Method:
    if name not in PAPER_METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(PAPER_METHODS)}")
    method = _load(name)
    if method is None:
        raise UserError(
            f"method {name!r} is not available yet in this version; available: "
            f"{', '.join(list_methods())}"
        )
    return method


__all__ = ["Batch", "Method", "StepContext", "get_method", "list_methods", "PAPER_METHODS"]
