"""Errors of the data layer that several modules raise (one definition each)."""
from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A data set that cannot be used as a whole; the message names the file and the problem."""
