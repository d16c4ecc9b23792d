"""Errors of hyperparameter search."""

from __future__ import annotations

from trainer.errors import ConfigError

__all__ = ["HpoError", "SearchConfigError"]


class HpoError(Exception):
    """Root of the hpo package's errors."""


class SearchConfigError(HpoError, ConfigError):
    """A bad ``search`` section: exits with code 2 like every config error."""
