"""Errors that drdfl raises on bad input: each says what was wrong and where."""

from __future__ import annotations


class DrdflError(Exception):
    """Base class: a user-facing problem the CLI prints as one line (no traceback)."""


class DataError(DrdflError, ValueError):
    """A trace or series file, column, row or value is not what was expected."""


class DatasetNotFoundError(DrdflError, LookupError):
    """A dataset name or path that cannot be resolved to a local file."""


class ConfigError(DrdflError, ValueError):
    """A configuration key, type or value is invalid."""


class ModelError(DrdflError, ValueError):
    """A saved model or checkpoint is missing, incompatible or corrupt."""


class TrainingError(DrdflError, RuntimeError):
    """Training diverged or cannot proceed (e.g. NaN loss)."""
