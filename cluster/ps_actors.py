"""The parameter-server strategy's server-side actors.

Actors, all in namespace ``mtp`` (``ray list actors`` and the dashboard show them):

- ``mtp-ps-<task>-shard-<i>``: a :class:`ShardActor` per shard (asyncio actor, restarts itself
  with ``max_restarts``; a restarted shard is empty until the next attempt publishes into it).
  Its optimizer comes from a factory the driver passes in (the task's optimizer, fused).
- ``mtp-ps-<task>-rendezvous``: the :class:`RendezvousActor` the workers' per-epoch
  collectives meet at.

The workers (``mtp-ps-<task>-worker-<r>``) and the driver loop that supervises attempts are the
orchestration layer's: :mod:`trainer.parameter_server`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from cluster.parameter_server import ParameterShard, PushOutcome, Rendezvous, StaleAttemptError
from mtp_core.metrics import LazyMetrics
from mtp_core.spec import PSMode

__all__ = ["RendezvousActor", "ShardActor", "actor_names", "ps_metrics"]

logger = logging.getLogger(__name__)

_SHARE_BYTES = 1 << 20  # sync replies above this go through one shared object-store copy


def actor_names(task_key: str, num_shards: int, num_workers: int) -> dict[str, list[str]]:
    prefix = f"mtp-ps-{task_key}"
    return {"shards": [f"{prefix}-shard-{k}" for k in range(num_shards)],
            "workers": [f"{prefix}-worker-{r}" for r in range(num_workers)],
            "rendezvous": [f"{prefix}-rendezvous"]}


def ps_metrics() -> dict[str, Any]:
    """``ray.util.metrics`` of the parameter server (built in the recording process)."""
    from ray.util.metrics import Counter, Histogram

    return {
        "pushes": Counter("mtp_ps_pushes", description="Gradient pushes received.",
                          tag_keys=("shard", "applied")),
        "pulls": Counter("mtp_ps_pulls", description="Parameter pulls served.",
                         tag_keys=("shard",)),
        "staleness": Histogram("mtp_ps_staleness",
                               description="Versions between a push's base and newest.",
                               boundaries=[0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5],
                               tag_keys=("shard",)),
        "step_s": Histogram("mtp_ps_step_time_s",
                            description="Worker step: compute, push, pull, copy back.",
                            boundaries=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]),
    }


# ---------------------------------------------------------------------------------------------
# Server side


class ShardActor:
    """One parameter shard (asyncio actor: pushes of one sync step wait on an event)."""

    def __init__(self, shard_index: int, mode: PSMode, world_size: int, max_staleness: int,
                 make_optimizer: Callable[[Any], Any]) -> None:
        self.mode = PSMode(mode)
        self.shard = ParameterShard(shard_index, self.mode, world_size, max_staleness,
                                    make_optimizer)
        self._applied = asyncio.Event()
        self._outgoing: Any = None
        self._tags = {"shard": str(shard_index)}
        self._metrics = LazyMetrics(ps_metrics)

    def _share(self, params: np.ndarray) -> Any:
        """What every rank of a sync step receives: large buffers go into the object store
        once (all ranks read the same copy); small ones travel inline with each reply."""
        if params.nbytes > _SHARE_BYTES:
            return ray.put(params)
        # no copy: the buffer cannot change before every rank has pushed again, which needs
        # this very reply
        return params

    def _wake(self) -> None:
        self._applied.set()
        self._applied = asyncio.Event()

    async def ready(self) -> int:
        return self.shard.attempt

    async def publish(self, attempt: int, params: np.ndarray, version: int,
                      optimizer_state: dict[str, Any] | None) -> int:
        self.shard.publish(attempt, params, version, optimizer_state)
        self._wake()  # pushes still waiting from an older attempt fail (attempt check below)
        return self.shard.version

    async def push(self, attempt: int, rank: int, version: int,
                   grad: np.ndarray) -> tuple[int, bool, int, np.ndarray]:
        m = self._metrics.get()
        if self.mode is PSMode.SYNC:
            waiter = self._applied
            if self.shard.submit(attempt, rank, version, grad):
                self.shard.apply_pending()
                self._outgoing = self._share(self.shard.params())
                self._wake()
            else:
                await waiter.wait()
            if self.shard.attempt != attempt:
                raise StaleAttemptError(f"shard {self.shard.index}: attempt {attempt} replaced "
                                        f"by {self.shard.attempt} while waiting")
            outcome = PushOutcome(self.shard.version, True, 0)
            params = self._outgoing
        else:
            outcome = self.shard.apply_async(attempt, version, grad)
            m["staleness"].observe(outcome.staleness, tags=self._tags)
            # a copy: other workers' pushes update the buffer while this result is serialized
            params = self.shard.params().copy()
        m["pushes"].inc(tags={**self._tags, "applied": str(outcome.applied).lower()})
        return outcome.version, outcome.applied, outcome.staleness, params

    async def pull(self, attempt: int) -> tuple[int, np.ndarray]:
        if attempt != self.shard.attempt:
            raise StaleAttemptError(f"shard {self.shard.index}: pull from attempt {attempt}, "
                                    f"current is {self.shard.attempt}")
        self._metrics.get()["pulls"].inc(tags=self._tags)
        return self.shard.version, self.shard.params().copy()

    async def state_dict(self) -> dict[str, Any]:
        return self.shard.state_dict()

    async def stats(self) -> dict[str, Any]:
        s = self.shard
        return {"index": s.index, "attempt": s.attempt, "version": s.version,
                "pushes": s.pushes, "dropped": s.dropped,
                "size": 0 if s.param is None else int(s.param.numel())}


class RendezvousActor:
    """Gather-to-all for the workers' per-epoch collectives (see ``Rendezvous``)."""

    def __init__(self, world_size: int) -> None:
        self.r = Rendezvous(world_size)
        self._events: dict[str, asyncio.Event] = {}

    async def gather(self, key: str, rank: int, value: Any) -> list[Any]:
        event = self._events.setdefault(key, asyncio.Event())
        if self.r.put(key, rank, value):
            event.set()
        else:
            await event.wait()
        out = self.r.result(key)
        if not self.r.pending(key):
            self._events.pop(key, None)
        return out
