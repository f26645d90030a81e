"""Data sets: named benchmarks (cached, verified downloads) and readers for user files.

Named data sets are stored as ``<data_home>/<name>.npz`` (``x`` uint8 images, ``y`` int64 labels,
``split`` uint8); ``data_home`` is the ``data_home`` argument, else ``$AECLUST_DATA``, else
``~/.cache/aeclust``. Every loader returns a :class:`Dataset` whose ``x`` is float32 (N, D), images
flattened in (C, H, W) order.

Examples
--------
>>> from aeclust.datasets import load_dataset, load_file, list_datasets
>>> ds = load_dataset("digits")            # embedded, no file needed
>>> ds.images().shape
(1797, 1, 8, 8)
"""

from .base import Dataset
from .download import ChecksumError, DownloadError, UnsafeArchiveError, content_sha256
from .readers import load_file
from .registry import (
    DATASETS,
    DatasetInfo,
    fetch_dataset,
    get_data_home,
    get_dataset_info,
    list_datasets,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "ChecksumError",
    "Dataset",
    "DatasetInfo",
    "DownloadError",
    "UnsafeArchiveError",
    "content_sha256",
    "fetch_dataset",
    "get_data_home",
    "get_dataset_info",
    "list_datasets",
    "load_dataset",
    "load_file",
]
