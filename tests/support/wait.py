"""The one bounded wait of the test suite: poll a condition, fail with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["wait_for"]


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Fails the test after ``timeout_s`` seconds, naming ``what`` was awaited. An assertion
    inside ``predicate`` fails at once (a wait that can no longer succeed should say why).
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
