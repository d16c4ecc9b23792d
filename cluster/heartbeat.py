"""The heartbeat a training worker sends to the fault detector, from a background thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["HeartbeatSender"]

logger = logging.getLogger(__name__)


class HeartbeatSender:
    """Calls ``detector.heartbeat.remote(task, attempt, rank, node, step)`` every interval.

    Fire-and-forget: a detector that is restarting or gone costs a debug log line, never the
    training step. ``step`` is read from a callable so the thread sees the loop's progress.
    """

    def __init__(self, detector: Any, task_key: str, attempt: int, rank: int, node_id: str,
                 step: Callable[[], int], interval_s: float) -> None:
        self.detector = detector
        self.args = (task_key, attempt, rank, node_id)
        self.step = step
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mtp-heartbeat", daemon=True)

    def start(self) -> HeartbeatSender:
        self._send()
        self._thread.start()
        return self

    def _send(self) -> None:
        try:
            self.detector.heartbeat.remote(*self.args, self.step())
        except Exception as err:  # noqa: BLE001 - see class docstring
            logger.debug("heartbeat not sent: %s", err)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._send()

    def stop(self) -> None:
        self._stop.set()
