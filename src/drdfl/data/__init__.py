"""Workload data: trace readers, binning, the dataset registry and :func:`load_series`."""

from drdfl.data.binning import TOKENS, Binner, bin_requests, parse_interval
from drdfl.data.loading import load_series
from drdfl.data.readers import FORMATS, detect_format, read_series
from drdfl.data.registry import (
    DATASETS,
    Dataset,
    cache_dir,
    fetch,
    find_local,
    get_dataset,
    resolve,
    sha256_file,
)
from drdfl.data.series import Series

__all__ = [
    "DATASETS",
    "FORMATS",
    "TOKENS",
    "Binner",
    "Dataset",
    "Series",
    "bin_requests",
    "cache_dir",
    "detect_format",
    "fetch",
    "find_local",
    "get_dataset",
    "load_series",
    "parse_interval",
    "read_series",
    "resolve",
    "sha256_file",
]
