"""Data: datasets by name (`datasets`)."""

from .datasets import (
    DATASETS,
    ArrayData,
    DatasetSpec,
    FileData,
    LoadedDataset,
    clear_dataset_cache,
    load_dataset,
    read_image,
)

__all__ = [
    "DATASETS",
    "ArrayData",
    "DatasetSpec",
    "FileData",
    "LoadedDataset",
    "clear_dataset_cache",
    "load_dataset",
    "read_image",
]
