"""The cluster-wide result-sharing registry as a Ray actor: ``mtp-result-registry``.

A thin wrapper around :class:`consistency.store.RegistryStore`: detached, in namespace ``mtp``,
created with ``get_if_exists`` (every driver gets the running one) and restarting itself
(``max_restarts=-1``). Every change is saved atomically to
``<storage_path>/_registry/registry.json`` (of the driver that created it; on a cluster that
path must be on shared storage) and reloaded when the actor starts, so the registry survives
its own restart and a restart of the whole cluster. Metrics go to Ray's Prometheus endpoint
through ``ray.util.metrics``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray

from consistency.errors import RegistryCorruptError
from consistency.store import CLAIM_TIMEOUT_S, RegistryEntry, RegistryStore
from mtp_core.metrics import LazyMetrics
from mtp_core.ray_env import NAMESPACE, control_plane_options

__all__ = ["REGISTRY_NAME", "ResultRegistryActor", "get_result_registry", "registry_path"]

logger = logging.getLogger(__name__)

REGISTRY_NAME = "mtp-result-registry"


def registry_path(storage: str | Path) -> Path:
    return Path(storage) / "_registry" / "registry.json"


def _registry_metrics() -> dict[str, Any]:
    """``ray.util.metrics`` of the registry (built in the actor process)."""
    from ray.util.metrics import Counter, Gauge

    return {
        "lookups": Counter("mtp_registry_lookups", description="Registry lookups.",
                           tag_keys=("outcome",)),
        "cache": Counter("mtp_cache_requests",
                         description="Result-cache lookups by drivers (local cache).",
                         tag_keys=("outcome",)),
        "hit_rate": Gauge("mtp_cache_hit_rate",
                          description="Hits / lookups over local caches and registry."),
        "entries": Gauge("mtp_registry_entries", description="Results in the registry."),
        "shared": Counter("mtp_results_shared", description="Results registered."),
        "violations": Counter("mtp_consistency_violations",
                              description="Consensus checks that found disagreement."),
        "confidence": Gauge("mtp_consistency_confidence",
                            description="Confidence of the latest consensus check."),
    }


class ResultRegistryActor:
    """The registry; each method is one step on the store plus a save when it changed.

    A registry file that cannot be loaded (corrupt, with no good backup) does not fail the
    constructor: Ray would report that as an ``ActorDiedError`` whose text is the actor's
    traceback, and a restarting actor would die for good. The actor stays up instead and
    every call that needs the entries raises the :class:`RegistryCorruptError` (which
    crosses to the caller as itself), loading the file again first: once the user has moved
    it aside, the next call starts an empty registry, without restarting the cluster.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.store = RegistryStore(claim_timeout_s=CLAIM_TIMEOUT_S)
        self.load_error: RegistryCorruptError | None = None
        self.metrics = LazyMetrics(_registry_metrics)
        self.counts = {"cache_hits": 0, "cache_misses": 0, "registry_hits": 0,
                       "registry_misses": 0, "violations": 0, "verified": 0}
        self.last_confidence: float | None = None
        self._load()

    def _load(self) -> None:
        try:
            loaded = self.store.load(self.path)
        except RegistryCorruptError as err:
            if self.load_error is None:
                logger.error("result registry unusable: %s", err)
            self.load_error = err
            return
        if self.load_error is not None:
            logger.warning("result registry %s is usable again", self.path)
        self.load_error = None
        logger.info("result registry: %d entries from %s", loaded, self.path)
        self._gauge()

    def _ready(self) -> None:
        """Raise the load error while the file is still unusable."""
        if self.load_error is not None:
            self._load()
        if self.load_error is not None:
            raise self.load_error

    def _save(self) -> None:
        self.store.save(self.path)
        self._gauge()

    def _gauge(self) -> None:
        m = self.metrics.get()
        m["entries"].set(len(self.store))
        lookups = sum(self.counts[k] for k in ("cache_hits", "cache_misses"))
        hits = self.counts["cache_hits"] + self.counts["registry_hits"]
        m["hit_rate"].set(hits / lookups if lookups else 0.0)

    def lookup(self, key: str) -> dict[str, Any] | None:
        self._ready()
        entry = self.store.lookup(key)
        outcome = "hit" if entry is not None else "miss"
        self.counts["registry_hits" if entry is not None else "registry_misses"] += 1
        self.metrics.get()["lookups"].inc(tags={"outcome": outcome})
        self._gauge()
        return entry

    def note_cache(self, hit: bool) -> None:
        """A driver's local-cache outcome, counted here so stats cover the whole cluster."""
        self.counts["cache_hits" if hit else "cache_misses"] += 1
        self.metrics.get()["cache"].inc(tags={"outcome": "hit" if hit else "miss"})
        self._gauge()

    def claim(self, key: str, owner: str) -> str:
        self._ready()
        return self.store.try_claim(key, owner).value

    def release(self, key: str, owner: str) -> bool:
        # no _ready(): drivers release without waiting for the answer, and an unloaded
        # registry holds no claims
        return self.store.release(key, owner)

    def claimed(self, key: str) -> bool:
        self._ready()
        return self.store.is_claimed(key)

    def register(self, key: str, entry: RegistryEntry | dict[str, Any]) -> dict[str, Any]:
        self._ready()
        stored = self.store.register(key, entry)
        self.metrics.get()["shared"].inc()
        self._save()
        return stored

    def mark_verified(self, key: str, report: dict[str, Any]) -> dict[str, Any]:
        self._ready()
        entry = self.store.mark_verified(key, report)
        self.record_report(report)
        self._save()
        return entry

    def record_report(self, report: dict[str, Any]) -> None:
        """Count a consensus report (verified or violation) and its confidence."""
        m = self.metrics.get()
        confidence = float(report.get("confidence", 0.0))
        self.last_confidence = confidence
        m["confidence"].set(confidence)
        if report.get("is_consistent"):
            self.counts["verified"] += 1
        else:
            self.counts["violations"] += 1
            m["violations"].inc()

    def stats(self) -> dict[str, Any]:
        self._ready()
        s = self.store.stats().as_dict()
        lookups = self.counts["cache_hits"] + self.counts["cache_misses"]
        hits = self.counts["cache_hits"] + self.counts["registry_hits"]
        return {**s, **self.counts, "path": str(self.path),
                "hit_rate": hits / lookups if lookups else 0.0,
                "last_confidence": self.last_confidence}

    def ping(self) -> bool:
        return True


def get_result_registry(storage: str | Path) -> Any:
    """The running registry actor, or a new one persisted under ``storage``.

    Before it starts one, the driver checks the file it would load: a corrupt registry is a
    :class:`RegistryCorruptError` here, in the caller's process, naming the file and how to
    recover, rather than an actor that cannot serve.
    """
    path = registry_path(Path(storage).expanduser().resolve())
    try:
        ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
    except ValueError:  # none running: this driver's storage is the one it would load
        RegistryStore.check_file(path)
    return ray.remote(ResultRegistryActor).options(
        name=REGISTRY_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=3, num_cpus=0, max_concurrency=64,
        **control_plane_options(),
    ).remote(str(path))
