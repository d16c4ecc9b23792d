"""Prometheus metrics of the cluster actors, through ``ray.util.metrics``.

They appear on each node's metrics endpoint (and so in Ray's dashboard and Grafana) as
``ray_mtp_*``. Metric objects are created lazily inside the actor process that records them.
"""

from __future__ import annotations

from typing import Any

from mtp_core.metrics import LazyMetrics

__all__ = ["ClusterMetrics"]

_HEALTH_LEVELS = ("HEALTHY", "WARNING", "CRITICAL", "FAILED")


def _build_cluster_metrics() -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge, Histogram

    return {
        "heartbeats": Counter("mtp_heartbeats_received",
                              description="Heartbeats received by the fault detector."),
        "nodes": Gauge("mtp_nodes_by_health", description="Nodes per health level.",
                       tag_keys=("health",)),
        "failures": Counter("mtp_failures_detected",
                            description="Node and worker failures detected.",
                            tag_keys=("kind",)),
        "migrations": Counter("mtp_migrations", description="Task migrations planned."),
        "migration_s": Histogram(
            "mtp_migration_duration_s",
            description="Seconds from a failure to the task training again.",
            boundaries=[1, 2, 5, 10, 20, 30, 60, 120, 300]),
    }


class ClusterMetrics:
    def __init__(self) -> None:
        self._lazy = LazyMetrics(_build_cluster_metrics)

    def _metrics(self) -> dict[str, Any]:
        return self._lazy.get()

    def heartbeat(self) -> None:
        self._metrics()["heartbeats"].inc()

    def node_counts(self, counts: dict[str, int]) -> None:
        gauge = self._metrics()["nodes"]
        for level in _HEALTH_LEVELS:
            gauge.set(counts.get(level, 0), tags={"health": level})

    def failure(self, kind: str) -> None:
        self._metrics()["failures"].inc(tags={"kind": kind})

    def migration_planned(self) -> None:
        self._metrics()["migrations"].inc()

    def migration_done(self, seconds: float) -> None:
        self._metrics()["migration_s"].observe(seconds)
