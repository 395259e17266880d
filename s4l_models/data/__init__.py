"""Data: datasets by name (`datasets`), splits and label specs (`splits`), augmentation, sources.

The names below are loaded on first use (PEP 562): `s4l_models.data.splits` (numpy only; the
configuration parses label specs with it) is importable without importing torch.
"""

from __future__ import annotations

import importlib

_NAMES = {
    name: "datasets"
    for name in ("DATASETS", "ArrayData", "DatasetSpec", "FileData", "LoadedDataset",
                 "clear_dataset_cache", "load_dataset", "read_image")
}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
