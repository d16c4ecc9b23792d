"""Cluster-level services: failure detection, task migration, cluster configuration checks.

``FaultDetector`` and ``TaskMigrator`` are plain classes; ``cluster.actors`` runs them as the
named Ray actors ``mtp-fault-detector`` and ``mtp-task-migrator`` in namespace ``mtp``.
"""

from cluster.config import validate_cluster_config
from cluster.detector import FailureEvent, FaultDetector, Health, HealthThresholds
from cluster.errors import ClusterConfigError, ClusterError
from cluster.migrator import Migration, NoCapacityError, Placement, TaskMigrator, TaskState

__all__ = [
    "ClusterConfigError",
    "ClusterError",
    "FailureEvent",
    "FaultDetector",
    "Health",
    "HealthThresholds",
    "Migration",
    "NoCapacityError",
    "Placement",
    "TaskMigrator",
    "TaskState",
    "validate_cluster_config",
]
