"""Bounded retries of a tracking-store write that met a busy SQLite database.

MLflow's SQLite sessions wait up to 20 s on a lock (``PRAGMA busy_timeout = 20000``), but in
WAL mode a transaction that read before another process committed cannot upgrade to a write
(SQLITE_BUSY_SNAPSHOT) and fails at once; MLflow turns that into an ``MlflowException`` with
``TEMPORARILY_UNAVAILABLE`` and retries deadlocks only. Each retry here is a fresh call (a
fresh session: the failed one was rolled back, so nothing is written twice).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BUSY_ATTEMPTS", "is_busy", "retry_busy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_ATTEMPTS = 8
_BASE_S = 0.05
_MAX_S = 2.0
_BUSY_WORDS = ("database is locked", "database table is locked", "database is busy",
               "sqlite_busy")


def is_busy(err: BaseException) -> bool:
    """``err`` (or what it was raised from) is SQLite refusing a write for another writer."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if any(w in str(e).lower() for w in _BUSY_WORDS):
            return True
        e = e.__cause__ or e.__context__
    return False


def retry_busy(call: Callable[[], T], what: str, *, attempts: int = BUSY_ATTEMPTS,
               sleep: Callable[[float], None] = time.sleep,
               rng: random.Random | None = None) -> T:
    """``call()``, again after a busy database up to ``attempts`` times in all, waiting
    0.05 s, 0.1 s, ... (at most 2 s, with jitter) in between; other errors and the last busy
    one are raised."""
    jitter = rng or random.Random()
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:
            if attempt >= attempts or not is_busy(err):
                raise
            wait = min(_MAX_S, _BASE_S * 2 ** (attempt - 1)) * (0.5 + jitter.random())
            logger.debug("tracking store busy during %s (attempt %d of %d); retrying in "
                         "%.2f s", what, attempt, attempts, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises
