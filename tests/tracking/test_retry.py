"""Busy SQLite writes are retried a bounded number of times with growing waits; nothing else
is retried."""

from __future__ import annotations

import random
import sqlite3

import pytest

from tracking._retry import is_busy, retry_busy


def test_a_busy_database_is_retried_until_the_write_goes_through() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def write() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "done"

    assert retry_busy(write, "metrics", sleep=waits.append, rng=random.Random(0)) == "done"
    assert len(calls) == 4 and len(waits) == 3
    # exponential (0.05, 0.1, 0.2 s) with jitter in [0.5, 1.5)
    for i, w in enumerate(waits):
        assert 0.05 * 2 ** i * 0.5 <= w < 0.05 * 2 ** i * 1.5


def test_the_retries_are_bounded_and_the_last_busy_error_is_raised() -> None:
    waits: list[float] = []

    def write() -> None:
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="locked"):
        retry_busy(write, "metrics", attempts=5, sleep=waits.append)
    assert len(waits) == 4 and max(waits) <= 2.0 * 1.5


def test_other_errors_are_not_retried() -> None:
    waits: list[float] = []

    def write() -> None:
        raise ValueError("bad metric name")

    with pytest.raises(ValueError):
        retry_busy(write, "metrics", sleep=waits.append)
    assert waits == []


def test_busy_is_found_in_the_cause_chain() -> None:
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as outer:
        assert is_busy(outer)
    assert not is_busy(RuntimeError("no such table"))
