"""Errors raised by the DataModules: missing data and malformed ``--data`` specs."""

from __future__ import annotations

__all__ = ["DataNotFoundError", "DataSpecError"]


class DataNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message names the path and the remedy."""


class DataSpecError(ValueError):
    """A ``--data`` spec or DataModule option that cannot be understood."""
