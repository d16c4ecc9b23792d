"""Cluster-level services: failure detection, task migration, cluster configuration checks.

``FaultDetector`` and ``TaskMigrator`` are plain classes; ``cluster.actors`` runs them as the
named Ray actors ``mtp-fault-detector`` and ``mtp-task-migrator`` in namespace ``mtp``.
``Supervisor`` is the restart and placement policy the drivers and those actors follow.
``ParameterShard``, ``ShardLayout`` and ``Rendezvous`` are the parameter-server strategy's
logic; ``cluster.ps_actors`` runs the shards and the rendezvous as ``mtp-ps-<task>-*`` actors
(the workers are ``trainer.parameter_server``'s). Those import torch: they are loaded on first
use (PEP 562), so the driver's control plane (and a cached rerun) stays without it.
"""

import importlib
from typing import TYPE_CHECKING, Any

from cluster.config import validate_cluster_config
from cluster.detector import (
    EventKind,
    FailureEvent,
    FaultDetector,
    Health,
    HealthThresholds,
    NodeView,
    TaskProgress,
)
from cluster.errors import ClusterConfigError, ClusterError
from cluster.migrator import (
    Migration,
    MigrationTrigger,
    NoCapacityError,
    Placement,
    TaskMigrator,
    TaskState,
)
from cluster.supervision import Action, Decision, Limit, Phase, RestartLimits, Supervisor

if TYPE_CHECKING:
    from cluster.parameter_server import (
        ParameterShard,
        PushOutcome,
        Rendezvous,
        ShardLayout,
        StaleAttemptError,
    )

__all__ = [
    "Action",
    "ClusterConfigError",
    "ClusterError",
    "Decision",
    "EventKind",
    "FailureEvent",
    "FaultDetector",
    "Health",
    "HealthThresholds",
    "Limit",
    "Migration",
    "MigrationTrigger",
    "NoCapacityError",
    "NodeView",
    "ParameterShard",
    "Phase",
    "Placement",
    "PushOutcome",
    "Rendezvous",
    "RestartLimits",
    "ShardLayout",
    "StaleAttemptError",
    "Supervisor",
    "TaskMigrator",
    "TaskProgress",
    "TaskState",
    "validate_cluster_config",
]


_LAZY = ("ParameterShard", "PushOutcome", "Rendezvous", "ShardLayout", "StaleAttemptError")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("cluster.parameter_server"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cluster' has no attribute {name!r}")
