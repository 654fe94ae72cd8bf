"""Errors raised by the DataModules: missing data and options that do not fit the data."""

from __future__ import annotations

__all__ = ["DataNotFoundError", "DataSpecError"]


class DataNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message names the path and the remedy."""


class DataSpecError(ValueError):
    """A DataModule option that does not fit the data (the message names the option)."""
