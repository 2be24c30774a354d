"""The one entry point from a dataset name or a file to a demand :class:`Series`."""

from __future__ import annotations

from pathlib import Path

from drdfl.data.binning import DEFAULT_INTERVAL
from drdfl.data.readers import read_series
from drdfl.data.registry import resolve
from drdfl.data.series import Series


def load_series(
    spec: str | Path,
    data_dir: str | Path | None = None,
    interval: str | float | None = DEFAULT_INTERVAL,
    tokens: str = "context",
    column: str | None = None,
    download: bool = True,
) -> Series:
    """Load a registered dataset (by name) or a file (by path) as a demand series.

    Per-request traces are binned at ``interval`` counting ``tokens`` (context, generated
    or total); binned files are read as they are (``column`` picks one; ``interval`` None
    takes the file's own, a different one is an error). Names resolve
    through the data directory, the cache and, if ``download``, a checked download. A
    named dataset's series is named after it, a file's after its stem.
    """
    path, dataset = resolve(spec, data_dir, download=download)
    if dataset is None:
        return read_series(path, None, interval, tokens, column)
    series = read_series(path, dataset.format, interval, tokens, column, name=dataset.name)
    series.meta["dataset"] = dataset.name
    return series
