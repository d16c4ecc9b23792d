"""Lazily built ``ray.util.metrics`` objects.

``ray.util.metrics`` records in the process that creates a metric, so every actor builds its own
on first use (a pickled copy would record nowhere). The builders import Ray themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LazyMetrics"]


class LazyMetrics:
    """Metric objects built on first use, in the process that records them."""

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build = build
        self._m: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        if self._m is None:
            self._m = self._build()
        return self._m
