"""Failure detection: heartbeats and Ray's node table turned into health levels and events.

:class:`FaultDetector` is plain logic with an explicit clock: feed it heartbeats
(``node_heartbeat`` from the per-node agents, ``worker_heartbeat`` from training workers) and
node-table snapshots (``observe_nodes``), then call ``step(now)``; it returns the failure events
that this step discovered. The Ray actor in :mod:`cluster.actors` is a thin loop around it.

Health of a node: FAILED at once when Ray's node table says the node is dead; until its first
heartbeat (its agent is still starting) HEALTHY while the table says it is alive, for up to
``first_heartbeat_grace_s``; otherwise by the age of its newest heartbeat (agent or worker):
WARNING after ``warning_missed`` intervals, CRITICAL after ``critical_missed``, FAILED after
``node_failure_timeout_s``. A FAILED node whose heartbeats come back (a network partition that
healed) is HEALTHY again, unless the node table says it is dead. Workers are graded the same way
by their own heartbeats, and are FAILED when their node is.

Local pauses: when the detector itself stops looking for a while (its process starved of CPU,
a garbage-collection pause, a slow call to Ray's control store), every node's heartbeats look
late at once although no node failed. With ``max_pause_s`` set, a step that comes more than
``max_pause_s`` after the previous one does not count the gap against anyone: each heartbeat
age is shortened by the pause (never below zero). A node that really died meanwhile is FAILED
one timeout later, or at once when Ray's node table says so. Cassandra's failure detector
does the same for the same reason.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "EventKind",
    "FailureEvent",
    "FaultDetector",
    "Health",
    "HealthThresholds",
    "NodeRecord",
    "NodeView",
    "TaskProgress",
    "WorkerRecord",
]

logger = logging.getLogger(__name__)


class Health(enum.StrEnum):
    HEALTHY = "HEALTHY"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    FAILED = "FAILED"


class EventKind(enum.StrEnum):
    NODE = "node"  # a node became FAILED
    WORKER = "worker"  # a training worker went silent on a node that is not FAILED


@dataclass(frozen=True)
class HealthThresholds:
    heartbeat_interval_s: float = 1.0
    node_failure_timeout_s: float = 5.0
    warning_missed: int = 2
    critical_missed: int = 3
    # before a node's first heartbeat: its agent is a fresh Python process, seconds to start on
    # a loaded machine; meanwhile Ray's node table alone judges the node
    first_heartbeat_grace_s: float = 30.0

    def classify(self, age_s: float) -> Health:
        if age_s > self.node_failure_timeout_s:
            return Health.FAILED
        if age_s > self.critical_missed * self.heartbeat_interval_s:
            return Health.CRITICAL
        if age_s > self.warning_missed * self.heartbeat_interval_s:
            return Health.WARNING
        return Health.HEALTHY


@dataclass
class NodeRecord:
    node_id: str
    address: str = ""
    alive_in_table: bool = True
    resources: dict[str, float] = field(default_factory=dict)
    last_heartbeat: float | None = None
    first_seen: float = 0.0
    # no heartbeat yet: last_heartbeat is then when the node joined (or the detector restarted)
    awaiting_first_heartbeat: bool = False
    health: Health = Health.HEALTHY
    cause: str = ""
    failed_at: float | None = None


@dataclass
class WorkerRecord:
    task_id: str
    attempt: int
    rank: int
    node_id: str
    step: int
    last_heartbeat: float
    health: Health = Health.HEALTHY

    @property
    def key(self) -> str:
        return f"{self.task_id}/{self.attempt}/{self.rank}"


@dataclass(frozen=True)
class FailureEvent:
    """A node (``rank`` None) or a worker that became FAILED, with the cause in words."""

    kind: EventKind
    node_id: str
    time: float
    cause: str
    task_ids: tuple[str, ...] = ()
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value, "task_ids": list(self.task_ids)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FailureEvent:
        return cls(**{**d, "kind": EventKind(d["kind"]), "task_ids": tuple(d["task_ids"])})


@dataclass(frozen=True)
class NodeView:
    """One node as placement and verdict waits read it: the detector's health and newest
    heartbeat (None: none yet), and the node's free resources (``CPU``/``GPU``; empty where
    unknown, as in the detector's own views)."""

    node_id: str
    health: Health
    free: dict[str, float] = field(default_factory=dict)
    last_heartbeat: float | None = None


@dataclass(frozen=True)
class TaskProgress:
    """Where a task's newest attempt runs (rank -> node) and the furthest step it reported."""

    nodes: dict[int, str]
    step: int


class FaultDetector:
    """Health bookkeeping for nodes and training workers (see module docstring)."""

    def __init__(self, thresholds: HealthThresholds, max_events: int = 200,
                 max_pause_s: float | None = None) -> None:
        self.thresholds = thresholds
        self.max_pause_s = max_pause_s
        self.last_step_at: float | None = None
        self.pauses = 0
        self.nodes: dict[str, NodeRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.events: list[FailureEvent] = []
        self.max_events = max_events
        self.heartbeats_received = 0

    # -- inputs ---------------------------------------------------------------------------------

    def _node(self, node_id: str, now: float) -> NodeRecord:
        rec = self.nodes.get(node_id)
        if rec is None:
            rec = self.nodes[node_id] = NodeRecord(node_id, first_seen=now)
        return rec

    def node_heartbeat(self, node_id: str, now: float) -> None:
        self.heartbeats_received += 1
        rec = self._node(node_id, now)
        rec.last_heartbeat = max(rec.last_heartbeat or now, now)
        rec.awaiting_first_heartbeat = False

    def worker_heartbeat(self, task_id: str, attempt: int, rank: int, node_id: str, step: int,
                         now: float) -> None:
        self.heartbeats_received += 1
        node = self._node(node_id, now)
        node.last_heartbeat = max(node.last_heartbeat or now, now)
        node.awaiting_first_heartbeat = False
        key = f"{task_id}/{attempt}/{rank}"
        rec = self.workers.get(key)
        if rec is None:
            self.workers[key] = WorkerRecord(task_id, attempt, rank, node_id, step, now)
        else:
            rec.step = max(rec.step, step)
            rec.last_heartbeat = max(rec.last_heartbeat, now)
            rec.node_id = node_id

    def retire_task(self, task_id: str, attempt: int | None = None) -> None:
        """Forget a task's workers (the run ended, or an attempt was replaced)."""
        for key in [k for k, w in self.workers.items()
                    if w.task_id == task_id and (attempt is None or w.attempt == attempt)]:
            del self.workers[key]

    def observe_nodes(self, table: list[dict[str, Any]], now: float) -> None:
        """A snapshot of Ray's node table (``ray.nodes()`` entries)."""
        for entry in table:
            node_id = str(entry.get("NodeID", ""))
            if not node_id:
                continue
            rec = self._node(node_id, now)
            rec.alive_in_table = bool(entry.get("Alive", False))
            rec.address = str(entry.get("NodeManagerAddress", rec.address))
            rec.resources = {k: float(v) for k, v in (entry.get("Resources") or {}).items()
                             if not k.startswith("node:")}
            if rec.last_heartbeat is None and rec.alive_in_table:
                # a node that joined: Ray's table vouches for it until its first heartbeat
                rec.last_heartbeat, rec.awaiting_first_heartbeat = now, True

    # -- the control step ------------------------------------------------------------------------

    def step(self, now: float) -> list[FailureEvent]:
        """Recompute every health level; return failures first discovered by this step."""
        new: list[FailureEvent] = []
        t = self.thresholds
        self._forgive_local_pause(now)
        for rec in self.nodes.values():
            before = rec.health
            age = now - (rec.last_heartbeat if rec.last_heartbeat is not None else rec.first_seen)
            if not rec.alive_in_table:
                rec.health = Health.FAILED
                cause = "Ray's node table reports the node dead"
            elif rec.awaiting_first_heartbeat:
                rec.health = (Health.FAILED if age > t.first_heartbeat_grace_s
                              else Health.HEALTHY)
                cause = (f"no heartbeat in {age:.1f} s since it joined > "
                         f"first_heartbeat_grace_s={t.first_heartbeat_grace_s:g}")
            else:
                rec.health = t.classify(age)
                cause = (f"no heartbeat for {age:.1f} s > node_failure_timeout_s="
                         f"{t.node_failure_timeout_s:g}")
            if rec.health is Health.FAILED and before is not Health.FAILED:
                rec.cause, rec.failed_at = cause, now
                tasks = tuple(sorted({w.task_id for w in self.workers.values()
                                      if w.node_id == rec.node_id}))
                logger.warning("node %s FAILED: %s; tasks affected: %s", rec.node_id[:12], cause,
                               list(tasks) or "none")
                new.append(FailureEvent(EventKind.NODE, rec.node_id, now, cause, tasks))
            elif before is Health.FAILED and rec.health is not Health.FAILED:
                logger.warning("node %s recovered: heartbeats resumed", rec.node_id[:12])
                rec.cause, rec.failed_at = "", None
            elif rec.health is not before:
                logger.info("node %s %s -> %s (heartbeat age %.1f s)", rec.node_id[:12],
                            before.value, rec.health.value, age)
        for w in self.workers.values():
            before = w.health
            node = self.nodes.get(w.node_id)
            w.health = t.classify(now - w.last_heartbeat)
            if node is not None and node.health is Health.FAILED:
                w.health = Health.FAILED
            if w.health is Health.FAILED and before is not Health.FAILED and (
                    node is None or node.health is not Health.FAILED):
                cause = (f"worker rank {w.rank} of {w.task_id}: no heartbeat for "
                         f"{now - w.last_heartbeat:.1f} s > node_failure_timeout_s="
                         f"{t.node_failure_timeout_s:g}")
                logger.warning("%s", cause)
                new.append(FailureEvent(EventKind.WORKER, w.node_id, now, cause, (w.task_id,),
                                        w.rank))
        self.events.extend(new)
        del self.events[: max(0, len(self.events) - self.max_events)]
        return new

    def _forgive_local_pause(self, now: float) -> None:
        last, self.last_step_at = self.last_step_at, now
        if self.max_pause_s is None or last is None or now - last <= self.max_pause_s:
            return
        pause = now - last
        self.pauses += 1
        logger.warning("fault detector paused for %.1f s (> %.1f s between steps): heartbeats "
                       "missed meanwhile are not held against any node", pause, self.max_pause_s)
        for rec in self.nodes.values():
            if rec.last_heartbeat is not None:
                rec.last_heartbeat = min(rec.last_heartbeat + pause, max(rec.last_heartbeat, now))
        for w in self.workers.values():
            w.last_heartbeat = min(w.last_heartbeat + pause, max(w.last_heartbeat, now))

    # -- queries ---------------------------------------------------------------------------------

    def health_of(self, node_id: str) -> Health:
        rec = self.nodes.get(node_id)
        return rec.health if rec else Health.FAILED

    def views(self, node_ids: Iterable[str] | None = None) -> list[NodeView]:
        """The known nodes among ``node_ids`` (all known nodes when None), without resources."""
        recs = (self.nodes.values() if node_ids is None
                else [r for n in node_ids if (r := self.nodes.get(n)) is not None])
        return [NodeView(r.node_id, r.health, last_heartbeat=r.last_heartbeat) for r in recs]

    def task_progress(self, task_id: str) -> TaskProgress:
        return TaskProgress(self.task_nodes(task_id), self.task_step(task_id))

    def task_nodes(self, task_id: str) -> dict[int, str]:
        """rank -> node of the task's newest attempt."""
        ws = [w for w in self.workers.values() if w.task_id == task_id]
        if not ws:
            return {}
        newest = max(w.attempt for w in ws)
        return {w.rank: w.node_id for w in ws if w.attempt == newest}

    def task_step(self, task_id: str) -> int:
        """The furthest training step any worker of the task reported."""
        return max((w.step for w in self.workers.values() if w.task_id == task_id), default=0)

    def counts(self) -> dict[str, int]:
        out = {h.value: 0 for h in Health}
        for rec in self.nodes.values():
            out[rec.health.value] += 1
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything ``mtp cluster status`` shows, as plain data."""
        return {
            "time": now,
            "nodes": [
                {**asdict(n), "health": n.health.value,
                 "heartbeat_age_s": None if n.last_heartbeat is None else now - n.last_heartbeat,
                 "tasks": sorted({w.task_id for w in self.workers.values()
                                  if w.node_id == n.node_id})}
                for n in sorted(self.nodes.values(), key=lambda r: r.first_seen)
            ],
            "workers": [{**asdict(w), "health": w.health.value} for w in self.workers.values()],
            "events": [e.to_dict() for e in self.events[-50:]],
            "heartbeats_received": self.heartbeats_received,
            "detector_pauses": self.pauses,
        }

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "nodes": [{**asdict(n), "health": n.health.value} for n in self.nodes.values()],
            "workers": [{**asdict(w), "health": w.health.value} for w in self.workers.values()],
            "events": [e.to_dict() for e in self.events],
            "heartbeats_received": self.heartbeats_received,
        }

    def load_state_dict(self, state: dict[str, Any], now: float) -> None:
        """Restore after a restart. Heartbeat ages restart from ``now``: the detector was away,
        so silence while it was down is not evidence against a node; the node table and fresh
        heartbeats decide within one timeout."""
        self.nodes = {}
        for n in state.get("nodes", []):
            rec = NodeRecord(**{**n, "health": Health(n["health"])})
            if rec.health is not Health.FAILED:
                # the restarted detector starts new node agents: grace until they report
                rec.last_heartbeat, rec.awaiting_first_heartbeat = now, True
            else:
                # failed stays failed until its heartbeats come back
                rec.awaiting_first_heartbeat = False
            self.nodes[rec.node_id] = rec
        self.workers = {}
        for w in state.get("workers", []):
            rec_w = WorkerRecord(**{**w, "health": Health(w["health"]), "last_heartbeat": now})
            self.workers[rec_w.key] = rec_w
        self.events = [FailureEvent.from_dict(e) for e in state.get("events", [])]
        self.heartbeats_received = int(state.get("heartbeats_received", 0))
