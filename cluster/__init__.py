"""Cluster-level services: failure detection, task migration, cluster configuration checks.

``FaultDetector`` and ``TaskMigrator`` are plain classes; ``cluster.actors`` runs them as the
named Ray actors ``mtp-fault-detector`` and ``mtp-task-migrator`` in namespace ``mtp``.
``ParameterShard``, ``ShardLayout`` and ``Rendezvous`` are the parameter-server strategy's
logic; ``cluster.ps_actors`` runs the shards and the rendezvous as ``mtp-ps-<task>-*`` actors
(the workers are ``trainer.parameter_server``'s).
"""

from cluster.config import validate_cluster_config
from cluster.detector import FailureEvent, FaultDetector, Health, HealthThresholds
from cluster.errors import ClusterConfigError, ClusterError
from cluster.migrator import Migration, NoCapacityError, Placement, TaskMigrator, TaskState
from cluster.parameter_server import (
    ParameterShard,
    PushOutcome,
    Rendezvous,
    ShardLayout,
    StaleAttemptError,
)

__all__ = [
    "ClusterConfigError",
    "ClusterError",
    "FailureEvent",
    "FaultDetector",
    "Health",
    "HealthThresholds",
    "Migration",
    "NoCapacityError",
    "ParameterShard",
    "Placement",
    "PushOutcome",
    "Rendezvous",
    "ShardLayout",
    "StaleAttemptError",
    "TaskMigrator",
    "TaskState",
    "validate_cluster_config",
]
