"""Exceptions that name the item at fault, so a user can find and fix it."""

from __future__ import annotations


class CascadeError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(CascadeError):
    """Bad input data: names the file (and row, when there is one) and what is wrong."""

    def __init__(self, item: str, message: str, row: int | None = None):
        self.item = str(item)
        self.row = row
        self.reason = message
        where = self.item if row is None else f"{self.item}, row {row}"
        super().__init__(f"{where}: {message}")


class ConfigError(CascadeError):
    """Invalid or missing configuration (thresholds, backends, bundle paths)."""


class BundleError(CascadeError):
    """A model bundle that is missing, incomplete, corrupt or from an incompatible version."""


class WeightsUnavailableError(CascadeError):
    """Pretrained weights were asked for but cannot be found or downloaded."""
