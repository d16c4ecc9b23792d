"""The scheduler's side of a task's driver: an ``mtp run`` started as a scheduled Ray job.

The scheduler sets ``MTP_QUEUE_TASK=<queue id>:<attempt>`` in the job's environment. The driver
then writes each epoch's progress (epoch, metrics, newest checkpoint) and, as it ends, its
outcome (exit code, the one line it printed, a summary of the result) into the task's row of
the platform database, tagged with the attempt: the scheduler learns from them when a
preempted task has reached a checkpoint and whether a job that ended did so on purpose. A
report that cannot be written is logged and dropped: reporting never fails a training.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.queue import Outcome, Progress, QueueStore

__all__ = ["QUEUE_ENV", "ScheduledAttempt"]

logger = logging.getLogger(__name__)

QUEUE_ENV = "MTP_QUEUE_TASK"


@dataclass
class ScheduledAttempt:
    task: str
    attempt: int
    storage: Path
    checkpoint_epoch: int | None = None
    result: dict[str, Any] | None = None
    _store: QueueStore | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, storage: str | Path) -> ScheduledAttempt | None:
        raw = os.environ.get(QUEUE_ENV, "")
        task, _, attempt = raw.rpartition(":")
        if not task or not attempt.isdigit():
            if raw:
                logger.warning("%s=%r is not <task>:<attempt>; not reporting", QUEUE_ENV, raw)
            return None
        return cls(task, int(attempt), Path(storage))

    @property
    def store(self) -> QueueStore:
        if self._store is None:
            from database import open_database

            self._store = QueueStore(open_database(self.storage))
        return self._store

    def epoch(self, record: dict[str, Any], epochs: int | None) -> None:
        """One epoch's record as ``on_epoch`` receives it."""
        if record.get("checkpoint"):
            self.checkpoint_epoch = int(record["epoch"])
        metrics = {k: float(v) for k, v in record.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)
                   and k != "epoch" and math.isfinite(float(v))}
        self._write(lambda: self.store.record_progress(self.task, self.attempt, Progress(
            int(record.get("epoch", 1)), epochs, metrics, self.checkpoint_epoch, time.time())))

    def ended(self, code: int, message: str = "") -> None:
        self._write(lambda: self.store.record_outcome(
            self.task, self.attempt, Outcome(code, message, self.result if code == 0 else None)))

    def _write(self, fn: Any) -> None:
        try:
            if not fn():
                logger.warning("task %s: attempt %d is no longer current; report dropped",
                               self.task, self.attempt)
        except Exception as err:  # noqa: BLE001 - reporting never fails a training
            logger.warning("task %s: progress not reported: %s", self.task, err)
