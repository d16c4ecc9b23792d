"""The cluster-wide result-sharing registry as a Ray actor: ``mtp-result-registry``.

A thin wrapper around :class:`consistency.store.RegistryStore`: detached, in namespace ``mtp``,
created with ``get_if_exists`` (every driver gets the running one) and restarting itself
(``max_restarts=-1``). Its state is the platform database of the driver that created it
(``MTP_DATABASE_URL``, PostgreSQL on a cluster; else ``<storage_path>/_db/mtp.db``, which must
then be on storage every node reaches), so the registry survives its own restart and a restart
of the whole cluster. Metrics go to Ray's Prometheus endpoint through ``ray.util.metrics``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import ray
from sqlalchemy.engine import make_url

from consistency.store import CLAIM_TIMEOUT_S, RegistryEntry, RegistryStore
from database import Database, DatabaseError, open_database
from mtp_core.metrics import LazyMetrics
from mtp_core.ray_env import NAMESPACE, control_plane_options

__all__ = ["REGISTRY_NAME", "ResultRegistryActor", "get_result_registry",
           "legacy_registry_path", "open_registry"]

logger = logging.getLogger(__name__)

REGISTRY_NAME = "mtp-result-registry"


def legacy_registry_path(storage: str | Path) -> Path:
    """Where an ``mtp`` before the platform database kept the registry (imported once)."""
    return Path(storage) / "_registry" / "registry.json"


def open_registry(storage: str | Path, database_url: str | None = None) -> RegistryStore:
    """The registry store on ``storage``'s platform database (opened and migrated; the JSON
    file of an earlier ``mtp`` under ``storage`` imported first). Raises the database's
    errors (corrupt, newer schema) here, in the caller's process."""
    db = open_database(Path(storage).expanduser().resolve(), override=database_url)
    store = RegistryStore(db, claim_timeout_s=CLAIM_TIMEOUT_S)
    legacy = legacy_registry_path(Path(storage).expanduser().resolve())
    if legacy.exists() or legacy.with_name(legacy.name + ".bak").exists():
        store.import_file(legacy)
    return store


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
    """The registry; each method is one step on the store (one database transaction).

    The database is opened on the first call, not in the constructor: a database that cannot
    be opened (a corrupt file, a newer schema) would otherwise kill the actor with a
    traceback as its only message. Each call raises the database's error instead (it crosses
    to the caller as itself) and tries again next time, so once the user has moved a corrupt
    file aside the registry serves again without a cluster restart.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: RegistryStore | None = None
        self.metrics = LazyMetrics(_registry_metrics)
        self.counts = {"cache_hits": 0, "cache_misses": 0, "registry_hits": 0,
                       "registry_misses": 0, "violations": 0, "verified": 0}
        self.last_confidence: float | None = None
        self._rate_at = float("-inf")

    @property
    def store(self) -> RegistryStore:
        if self._store is None:
            try:
                db: Database = open_database(make_url(self.url))
            except DatabaseError as err:
                logger.error("result registry unusable: %s", err)
                raise
            self._store = RegistryStore(db, claim_timeout_s=CLAIM_TIMEOUT_S)
            logger.info("result registry on %s", db.where)
            self._gauge()
        return self._store

    def _gauge(self) -> None:
        if self._store is not None:
            self.metrics.get()["entries"].set(len(self._store))
        self._rate()

    def _rate(self, force: bool = False) -> None:
        """The hit-rate gauge, at most once a second (a gauge per lookup costs more than the
        lookup's database read)."""
        now = time.monotonic()
        if not force and now - self._rate_at < 1.0:
            return
        self._rate_at = now
        lookups = sum(self.counts[k] for k in ("cache_hits", "cache_misses"))
        hits = self.counts["cache_hits"] + self.counts["registry_hits"]
        self.metrics.get()["hit_rate"].set(hits / lookups if lookups else 0.0)

    def lookup(self, key: str) -> dict[str, Any] | None:
        entry = self.store.lookup(key)
        outcome = "hit" if entry is not None else "miss"
        self.counts["registry_hits" if entry is not None else "registry_misses"] += 1
        self.metrics.get()["lookups"].inc(tags={"outcome": outcome})
        self._rate()
        return entry

    def note_cache(self, hit: bool) -> None:
        """A driver's local-cache outcome, counted here so stats cover the whole cluster."""
        self.counts["cache_hits" if hit else "cache_misses"] += 1
        self.metrics.get()["cache"].inc(tags={"outcome": "hit" if hit else "miss"})
        self._rate()

    def claim(self, key: str, owner: str) -> str:
        return self.store.try_claim(key, owner).value

    def release(self, key: str, owner: str) -> bool:
        return self.store.release(key, owner)

    def claimed(self, key: str) -> bool:
        return self.store.is_claimed(key)

    def register(self, key: str, entry: RegistryEntry | dict[str, Any]) -> dict[str, Any]:
        stored = self.store.register(key, entry)
        self.metrics.get()["shared"].inc()  # the entries gauge is set by stats(): a count
        return stored                          # per registration would cost O(entries)

    def mark_verified(self, key: str, report: dict[str, Any]) -> dict[str, Any]:
        entry = self.store.mark_verified(key, report)
        self.record_report(report)
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
        s = self.store.stats().as_dict()
        self.metrics.get()["entries"].set(s["entries"])
        self._rate(force=True)
        lookups = self.counts["cache_hits"] + self.counts["cache_misses"]
        hits = self.counts["cache_hits"] + self.counts["registry_hits"]
        return {**s, **self.counts, "database": self.store.db.where,
                "hit_rate": hits / lookups if lookups else 0.0,
                "last_confidence": self.last_confidence}

    def ping(self) -> bool:
        return True


def get_result_registry(storage: str | Path, database_url: str | None = None) -> Any:
    """The running registry actor, or a new one on ``storage``'s platform database.

    Before it starts one, the driver opens the database itself (:func:`open_registry`): a
    corrupt or newer database is an error here, in the caller's process, naming the file and
    how to recover, rather than an actor that cannot serve.
    """
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
    except ValueError:  # none running: this driver's database is the one it would use
        store = open_registry(storage, database_url)
    return ray.remote(ResultRegistryActor).options(
        name=REGISTRY_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=3, num_cpus=0, max_concurrency=64,
        **control_plane_options(),
    ).remote(store.db.url.render_as_string(hide_password=False))
