"""s4l_models: ResNets, datasets and splits, methods and the trainer of s4l-tune.

The package's names are loaded on first use (PEP 562), so that importing a torch-free module
such as `s4l_models.config`, `s4l_models.predictions` or `s4l_models.io` (the analysis reads
sweeps through them) does not import torch.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "TrainConfig": "config",
    "UserError": "errors",
    "get_method": "methods",
    "list_methods": "methods",
    "create_model": "resnet",
    "list_models": "resnet",
}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
