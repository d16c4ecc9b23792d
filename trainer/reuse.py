"""Reusing finished results: local cache, then the cluster registry, then train (once).

``train()`` asks a :class:`ResultReuse` before it starts any worker:

1. the node-local :class:`consistency.cache.ResultCache` under ``<storage>/_cache`` (no Ray
   needed);
2. the ``mtp-result-registry`` actor, which holds every result shared on the cluster;
3. a *claim* on the task's cache key in the registry. The first driver to claim trains; an
   identical task submitted meanwhile waits for that result instead of training it twice. A
   driver keeps its claim alive while it trains; a claim that is not renewed for
   ``CLAIM_TIMEOUT_S`` (its driver died) is taken over.

A reused result is served only if its model file still hashes to the result's
``weights_hash``; otherwise the entry is skipped with a warning and the task trains.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from consistency.cache import ResultCache
from consistency.hashing import model_file_hash
from consistency.store import CLAIM_TIMEOUT_S, ClaimOutcome, RegistryEntry
from mtp_core.spec import TrainingTask
from trainer.result import CacheHit, TrainingResult

__all__ = ["ResultReuse", "cache_dir", "registry_entry", "usable_result"]

logger = logging.getLogger(__name__)

_WAIT_POLL_S = 0.5


def cache_dir(storage: Path) -> Path:
    return storage / "_cache"


def registry_entry(key: str, result: TrainingResult, *, node_id: str, ttl_s: float,
                   now: float | None = None) -> RegistryEntry:
    """The registry's record of a freshly trained ``result``: the one place that builds it
    (``ResultReuse.publish`` after training, ``verify`` after a consensus). It expires
    ``ttl_s`` seconds after ``now`` (default: the current wall time)."""
    shared_at = time.time() if now is None else now
    stored = result.model_copy(update={"cache_hit": None})
    return RegistryEntry(key=key, task_id=result.task_id, result=stored.model_dump(mode="json"),
                         model_path=result.model_path, run_dir=result.run_dir,
                         shared_at=shared_at, expires_at=shared_at + ttl_s, node_id=node_id)


def usable_result(entry: dict[str, Any] | None, where: str) -> TrainingResult | None:
    """The stored result, if its model file is there and matches its weights hash."""
    if entry is None:
        return None
    try:
        result = TrainingResult.model_validate(entry["result"])
        digest = model_file_hash(result.model_path)  # verifying a hit needs no torch
    except Exception as err:  # noqa: BLE001 - any unreadable entry is a miss
        logger.warning("ignoring the %s entry: its result or model is unreadable (%s)",
                       where, err)
        return None
    if digest != result.weights_hash:
        logger.warning("ignoring the %s entry for task %s: %s hashes to %s, the result says %s",
                       where, result.task_id, result.model_path, digest[:12],
                       result.weights_hash[:12])
        return None
    return result


class ResultReuse:
    """One ``train()`` call's view of the cache and registry for its cache key."""

    def __init__(self, task: TrainingTask, key: str, storage: Path) -> None:
        self.task = task
        self.key = key
        spec = task.consistency
        self.cache = (ResultCache.from_spec(spec.cache, cache_dir(storage))
                      if spec.cache.enabled else None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._claimed = False
        self._renew_stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- lookups -------------------------------------------------------------------------------

    def local(self) -> TrainingResult | None:
        if self.cache is None:
            return None
        hit = usable_result(self.cache.get(self.key), "local cache")
        return None if hit is None else hit.model_copy(update={"cache_hit": CacheHit.LOCAL})

    def shared(self, registry: Any) -> TrainingResult | None:
        import ray

        if self.cache is not None:
            registry.note_cache.remote(False)
        hit = usable_result(ray.get(registry.lookup.remote(self.key)), "registry")
        if hit is None:
            return None
        self._remember(hit)
        return hit.model_copy(update={"cache_hit": CacheHit.REGISTRY})

    def claim_or_wait(self, registry: Any) -> TrainingResult | None:
        """None: this call holds the claim and trains. A result: another driver trained it."""
        import ray

        announced = False
        while True:
            outcome = ClaimOutcome(ray.get(registry.claim.remote(self.key, self.owner)))
            if outcome.should_train:
                # the previous owner may have registered between our lookup and this claim
                hit = usable_result(ray.get(registry.lookup.remote(self.key)), "registry")
                if hit is not None:
                    ray.get(registry.release.remote(self.key, self.owner))
                    self._remember(hit)
                    return hit.model_copy(update={"cache_hit": CacheHit.REGISTRY})
                self._claimed = True
                self._start_renewing(registry)
                return None
            if not announced:
                logger.warning("task %s (key %s) is being trained by another driver; waiting "
                               "for its result instead of training it twice",
                               self.task.task_id, self.key[:12])
                announced = True
            while ray.get(registry.claimed.remote(self.key)):
                time.sleep(_WAIT_POLL_S)
            hit = usable_result(ray.get(registry.lookup.remote(self.key)), "registry")
            if hit is not None:
                self._remember(hit)
                return hit.model_copy(update={"cache_hit": CacheHit.WAITED})
            # the other driver gave up without a result: try to claim it ourselves

    # -- after training --------------------------------------------------------------------------

    def _remember(self, result: TrainingResult) -> None:
        if self.cache is not None:
            self.cache.put(self.key, {"result": result.model_dump(mode="json")})

    def publish(self, result: TrainingResult, registry: Any | None) -> None:
        """Store a freshly trained result locally and share it with the cluster."""
        self._remember(result.model_copy(update={"cache_hit": None}))
        if registry is None:
            return
        import ray

        entry = registry_entry(self.key, result,
                               node_id=ray.get_runtime_context().get_node_id(),
                               ttl_s=self.task.consistency.cache.ttl_s)
        ray.get(registry.register.remote(self.key, entry))
        self._claimed = False  # register ends the claim

    def release(self, registry: Any | None) -> None:
        self._renew_stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if registry is not None and self._claimed:
            try:
                registry.release.remote(self.key, self.owner)
            except Exception as err:  # noqa: BLE001 - the claim times out anyway
                logger.debug("claim release failed: %s", err)
            self._claimed = False

    def _start_renewing(self, registry: Any) -> None:
        import ray

        def renew() -> None:
            while not self._renew_stop.wait(CLAIM_TIMEOUT_S / 4):
                try:
                    outcome = ClaimOutcome(ray.get(registry.claim.remote(self.key, self.owner)))
                except Exception as err:  # noqa: BLE001 - retried next round
                    logger.debug("claim renewal failed: %s", err)
                    continue
                if outcome is ClaimOutcome.HELD_BY_OTHER:
                    # claims live in the registry's memory: after its restart another driver
                    # may have claimed this key and be training it too
                    logger.warning("task %s: another driver now holds the claim on key %s "
                                   "(the registry restarted?); both runs train it",
                                   self.task.task_id, self.key[:12])

        self._renewer = threading.Thread(target=renew, name="mtp-claim-renew", daemon=True)
        self._renewer.start()
