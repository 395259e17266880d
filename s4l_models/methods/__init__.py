"""Training methods by name: each is a loss of (model, labeled batch, unlabeled batch, context).

A method module defines `METHOD = Method(...)`; the registry lists every method of the paper,
one module each.
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


def list_methods() -> list[str]:
    """Names of the methods that can be trained: every method of the paper."""
    return list(PAPER_METHODS)


def get_method(name: str) -> Method:
    if name not in PAPER_METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(PAPER_METHODS)}")
    return importlib.import_module(f"{__name__}.{name}").METHOD


__all__ = ["Batch", "Method", "StepContext", "get_method", "list_methods", "PAPER_METHODS"]
