"""Run asyncio actor classes in this process, without Ray.

Ray runs an asyncio actor's methods on one event loop in a thread of the actor's process; an
:class:`EventLoopHost` does the same here, so tests call the real ``ShardActor`` and
``RendezvousActor`` (``cluster.ps_actors``) from several threads, as workers call the actors.
Every wait is bounded: a call that does not finish within ``timeout_s`` raises ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["EventLoopHost", "event_loop_host"]

T = TypeVar("T")


class EventLoopHost:
    """One event loop on a daemon thread; :meth:`call` runs a coroutine there and waits."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aio-host",
                                        daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Start ``coro`` on the loop; returns a ``concurrent.futures.Future``."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        result: T = self.submit(coro).result(timeout=self.timeout_s)
        return result

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


@contextmanager
def event_loop_host(timeout_s: float = 60.0) -> Iterator[EventLoopHost]:
    host = EventLoopHost(timeout_s)
    try:
        yield host
    finally:
        host.close()
