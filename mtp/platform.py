"""The platform's services on a cluster: ``mtp cluster start`` and ``mtp cluster stop``.

``start`` (run by ``ray-cluster.yaml``'s head start commands; idempotent) starts, on the head
node in namespace ``mtp``, the fault detector (which starts a heartbeat agent on every node), the
task migrator, the result registry and the scheduler, all on the same storage and platform
database. ``mtp cluster status`` then shows every node's health and the queue from the moment
the cluster is up, before any task has run. ``stop`` ends them; the scheduler's queue and the
registry stay in the database, running tasks' jobs go on, and the next ``start`` picks the queue
up where it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import ray

from cluster.actors import DETECTOR_NAME, MIGRATOR_NAME, get_fault_detector, get_task_migrator
from cluster.detector import HealthThresholds
from cluster.scheduler_actor import SCHEDULER_NAME, get_scheduler
from consistency.actors import REGISTRY_NAME, get_result_registry
from mtp_core.ray_env import NAMESPACE
from mtp_core.spec import FaultToleranceSpec

__all__ = ["SERVICES", "ServiceState", "start_services", "stop_services"]

logger = logging.getLogger(__name__)

SERVICES = (DETECTOR_NAME, MIGRATOR_NAME, REGISTRY_NAME, SCHEDULER_NAME)
_AGENT_PREFIX = "mtp-node-agent-"
_READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ServiceState:
    name: str
    started: bool  # False: it was already running


def _running() -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == NAMESPACE}


def start_services(storage: Path, database_url: str | None = None) -> list[ServiceState]:
    """Start whichever of the services is not running; wait until each answers."""
    before = _running()
    ft = FaultToleranceSpec()
    detector = get_fault_detector(
        HealthThresholds(ft.heartbeat_interval_s, ft.node_failure_timeout_s,
                         ft.warning_missed_heartbeats, ft.critical_missed_heartbeats), storage)
    migrator = get_task_migrator(ft.migration_strategy, storage)
    registry = get_result_registry(storage, database_url)
    scheduler = get_scheduler(storage, database_url)
    ray.get([detector.snapshot.remote(), migrator.snapshot.remote(), registry.ping.remote(),
             scheduler.ping.remote()], timeout=_READY_TIMEOUT_S)
    return [ServiceState(name, name not in before) for name in SERVICES]


def stop_services() -> list[str]:
    """Stop the services and the node agents; returns the names stopped."""
    stopped = []
    names = _running()
    if SCHEDULER_NAME in names:  # its loop first: no job is started while it is stopped
        handle = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
        try:
            ray.get(handle.shutdown.remote(), timeout=30)
        except Exception as err:  # noqa: BLE001 - it is killed next either way
            logger.debug("scheduler shutdown: %s", err)
    for name in sorted(names):
        if name in SERVICES or name.startswith(_AGENT_PREFIX):
            try:
                handle = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:  # ended since it was listed (the detector replaces agents)
                continue
            ray.kill(handle, no_restart=True)
            stopped.append(name)
    return stopped
