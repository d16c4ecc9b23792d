"""Task migration: where a failed run resumes, and the record of every move.

:class:`TaskMigrator` is plain logic. The driver of a run registers it (``register``), reports
each attempt's workers (``attempt_started``) and asks for a placement after a failure
(``plan``). The plan excludes every node that is not HEALTHY, picks nodes for the same world
size by strategy (``load_balanced``: most free CPUs first, spreading ranks; ``round_robin``:
healthy nodes in turn, starting after the last one used), and records a :class:`Migration`.
Rank 0 of the resumed attempt reports back (``resumed``) with the checkpoint epoch and the steps
redone, which completes the record. The Ray actor in :mod:`cluster.actors` wraps this class.

Restarts are the migrator's alone: with auto-recovery on, the driver runs Ray Train with
``max_failures=0`` and restarts only on the migrator's plan, so a failure never triggers both
Ray Train's restart and a migration.

Preemption on detection: Ray notices a lost node only when its own health checks give up (tens
of seconds by default), and until then the surviving ranks of a run sit blocked in a collective.
When the detector declares a node FAILED that hosts a rank of a running task, the migrator
actor probes the node's agent; if it does not answer, it stops the attempt at once (kills its
workers, so Ray Train's controller ends the run with a worker-group error) and
:meth:`TaskMigrator.preempted` records when. The migration that follows counts its time from
that detection and says so (``trigger: "detector"``; ``"error"`` when Ray Train failed first).

When to try a placement again and when to give up is :mod:`cluster.supervision`'s decision;
:meth:`TaskMigrator.plan` makes one try, and raises :class:`NoCapacityError` when it finds no
room (the task stays MIGRATING until the caller gives up with ``finished(ok=False)``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cluster.detector import Health, NodeView
from cluster.errors import ClusterError
from mtp_core.resources import TaskResources
from mtp_core.spec import MigrationStrategy

__all__ = ["Migration", "MigrationTrigger", "NoCapacityError", "Placement", "TaskMigrator",
           "TaskRecord", "TaskState"]

logger = logging.getLogger(__name__)


class TaskState(enum.StrEnum):
    RUNNING = "RUNNING"
    MIGRATING = "MIGRATING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class MigrationTrigger(enum.StrEnum):
    ERROR = "error"  # Ray Train ended the attempt with an error first
    DETECTOR = "detector"  # the migrator stopped the attempt on the detector's verdict


class NoCapacityError(ClusterError):
    """No set of healthy nodes can hold the task's workers (the message says why)."""


@dataclass(frozen=True)
class Placement:
    """Where the next attempt runs: one node per rank, and how they were chosen."""

    node_ids: tuple[str, ...]
    reason: str


@dataclass
class Migration:
    task_id: str
    attempt: int
    from_nodes: list[str]
    to_nodes: list[str]
    failed_nodes: list[str]
    cause: str
    planned_at: float
    failure_at: float
    checkpoint_epoch: int | None = None
    steps_redone: int | None = None
    resumed_at: float | None = None
    trigger: MigrationTrigger = MigrationTrigger.ERROR

    @property
    def time_to_resume_s(self) -> float | None:
        return None if self.resumed_at is None else self.resumed_at - self.failure_at

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trigger": self.trigger.value,
                "time_to_resume_s": self.time_to_resume_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Migration:
        fields = {k: v for k, v in d.items() if k != "time_to_resume_s"}
        return cls(**{**fields, "trigger": MigrationTrigger(d.get("trigger", "error"))})


@dataclass
class TaskRecord:
    task_id: str
    world_size: int
    cpus_per_worker: float
    gpus_per_worker: float
    state: TaskState = TaskState.RUNNING
    attempt: int = 0
    nodes: list[str] = field(default_factory=list)
    last_step: int = 0
    message: str = ""
    preempt_on_detection: bool = False  # stop the attempt at once on a FAILED node verdict
    preempted_at: float | None = None  # when the migrator stopped this attempt on a verdict


class TaskMigrator:
    """Placement decisions and the migration log (see module docstring)."""

    def __init__(self, strategy: MigrationStrategy = MigrationStrategy.LOAD_BALANCED,
                 max_records: int = 500) -> None:
        self.strategy = MigrationStrategy(strategy)
        self.tasks: dict[str, TaskRecord] = {}
        self.migrations: list[Migration] = []
        self.max_records = max_records
        self._rr_cursor = 0

    def register(self, task_id: str, resources: TaskResources,
                 preempt_on_detection: bool = False) -> None:
        self.tasks[task_id] = TaskRecord(task_id, resources.num_workers,
                                         resources.cpus_per_worker, resources.gpus_per_worker,
                                         preempt_on_detection=preempt_on_detection)

    def attempt_started(self, task_id: str, attempt: int, nodes: list[str]) -> None:
        rec = self.tasks[task_id]
        rec.attempt, rec.nodes = attempt, list(nodes)
        rec.state = TaskState.RUNNING
        rec.preempted_at = None

    def on_failure(self, node_id: str, task_ids: list[str]) -> list[str]:
        """A failure event: mark the affected running tasks; returns their ids."""
        hit = []
        for tid in task_ids:
            rec = self.tasks.get(tid)
            if rec is not None and rec.state is TaskState.RUNNING:
                rec.state = TaskState.MIGRATING
                hit.append(tid)
        if hit:
            logger.warning("node %s failed: tasks %s need migration", node_id[:12], hit)
        return hit

    def to_preempt(self, node_id: str, task_ids: list[str]) -> list[str]:
        """Tasks to stop now on a FAILED verdict for ``node_id``: preemption on, the current
        attempt runs on the node, and it was not stopped yet.

        Independent of the task's state: a silent rank on a live node (its worker event comes
        first) may already have marked the task MIGRATING without stopping anything.
        """
        out = []
        for task_id in task_ids:
            rec = self.tasks.get(task_id)
            if (rec is not None and rec.preempt_on_detection and node_id in rec.nodes
                    and rec.preempted_at is None
                    and rec.state in (TaskState.RUNNING, TaskState.MIGRATING)):
                out.append(task_id)
        return out

    def preempted(self, task_id: str, now: float) -> None:
        """The migrator stopped the task's running attempt on a FAILED verdict at ``now``."""
        rec = self.tasks.get(task_id)
        if rec is not None and rec.preempted_at is None:
            rec.preempted_at = now

    def could_fit_once_settled(self, task_id: str, totals: dict[str, dict[str, float]]) -> bool:
        """Whether the task would fit on the nodes Ray still counts alive (``totals``: each
        node's total resources) once they are healthy again and their reservations are free.

        The detector's verdict on a live node is not final: a node that misses heartbeats while
        its machine is overloaded (WARNING, or even FAILED for a few seconds) answers again, and
        Ray releases the failed attempt's reservations a moment after the attempt ends. While
        this holds, a placement that does not fit yet is worth retrying.
        """
        nodes = [NodeView(nid, Health.HEALTHY, dict(total)) for nid, total in totals.items()]
        try:
            self.plan(task_id, nodes, now=0.0, failure_at=0.0, cause="", record=False)
        except NoCapacityError:
            return False
        return True

    def plan(
        self,
        task_id: str,
        nodes: Sequence[NodeView],
        *,
        now: float,
        failure_at: float,
        cause: str,
        last_step: int = 0,
        strategy: MigrationStrategy | None = None,
        record: bool = True,
    ) -> Placement:
        """Choose nodes for every rank among ``nodes``.

        Each view's ``free`` holds the node's available resources, with the failed attempt's
        own reservations already returned. Raises NoCapacityError with the reason when the
        healthy nodes cannot hold the task; the task stays MIGRATING, and the caller may try
        again (for example while Ray still releases the failed attempt's reservations) or give
        up (``finished(ok=False)``). Without ``record`` it only answers whether the nodes could
        hold the task: no state changes, no log, no migration record.
        """
        rec = self.tasks[task_id]
        if record:
            rec.state = TaskState.MIGRATING
            rec.last_step = max(rec.last_step, last_step)
        strategy = MigrationStrategy(strategy or self.strategy)
        healthy = [n for n in nodes if n.health is Health.HEALTHY]
        failed = [n.node_id for n in nodes if n.health is Health.FAILED]
        free = {n.node_id: dict(n.free) for n in healthy}

        def fits(node_id: str) -> bool:
            f = free[node_id]
            return (f.get("CPU", 0.0) + 1e-9 >= rec.cpus_per_worker
                    and f.get("GPU", 0.0) + 1e-9 >= rec.gpus_per_worker)

        def take(node_id: str) -> None:
            free[node_id]["CPU"] = free[node_id].get("CPU", 0.0) - rec.cpus_per_worker
            free[node_id]["GPU"] = free[node_id].get("GPU", 0.0) - rec.gpus_per_worker

        chosen: list[str] = []
        order = sorted(free)  # node ids: a stable base order
        cursor = self._rr_cursor
        for _ in range(rec.world_size):
            candidates = [n for n in order if fits(n)]
            if not candidates:
                break
            if strategy is MigrationStrategy.ROUND_ROBIN:
                pick = candidates[cursor % len(candidates)]
                cursor += 1
            else:  # load_balanced: the node with the most free CPU (then GPU), ties by id
                pick = max(candidates, key=lambda n: (free[n].get("CPU", 0.0),
                                                      free[n].get("GPU", 0.0), n))
            take(pick)
            chosen.append(pick)
        if len(chosen) < rec.world_size:
            total_cpu = sum(n.free.get("CPU", 0.0) for n in healthy)
            message = (
                f"no healthy capacity for task {task_id!r}: it needs {rec.world_size} workers x "
                f"{rec.cpus_per_worker:g} CPU"
                + (f" + {rec.gpus_per_worker:g} GPU" if rec.gpus_per_worker else "")
                + f"; healthy nodes: {len(healthy)} with {total_cpu:g} free CPUs; "
                f"failed nodes: {[f[:12] for f in failed]}")
            raise NoCapacityError(message)
        if not record:
            return Placement(tuple(chosen), "dry run")
        self._rr_cursor = cursor
        trigger = MigrationTrigger.ERROR
        if rec.preempted_at is not None and rec.preempted_at <= failure_at:
            # the attempt ended because it was stopped: the failure was known at the verdict
            failure_at, trigger = rec.preempted_at, MigrationTrigger.DETECTOR
        migration = Migration(task_id, rec.attempt + 1, list(rec.nodes), chosen, failed, cause,
                              now, failure_at, trigger=trigger)
        self.migrations.append(migration)
        del self.migrations[: max(0, len(self.migrations) - self.max_records)]
        logger.warning("task %s: migrating from %s to %s (%s; strategy %s)", task_id,
                       [n[:12] for n in rec.nodes], [n[:12] for n in chosen], cause, strategy)
        return Placement(tuple(chosen), f"{strategy} over {len(healthy)} healthy nodes")

    def resumed(self, task_id: str, attempt: int, checkpoint_epoch: int | None,
                checkpoint_step: int, now: float) -> Migration | None:
        """Rank 0 of a resumed attempt is training again: complete the migration record."""
        rec = self.tasks.get(task_id)
        if rec is not None:
            rec.state = TaskState.RUNNING
        for m in reversed(self.migrations):
            if m.task_id == task_id and m.attempt == attempt and m.resumed_at is None:
                m.resumed_at = now
                m.checkpoint_epoch = checkpoint_epoch
                last = rec.last_step if rec else checkpoint_step
                m.steps_redone = max(0, last - checkpoint_step)
                return m
        return None

    def finished(self, task_id: str, ok: bool, message: str = "") -> None:
        rec = self.tasks.get(task_id)
        if rec is not None:
            rec.state = TaskState.FINISHED if ok else TaskState.FAILED
            rec.message = message

    # -- persistence and views -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "tasks": [{**asdict(t), "state": t.state.value} for t in self.tasks.values()],
            "migrations": [m.to_dict() for m in self.migrations],
        }

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "rr_cursor": self._rr_cursor, **self.snapshot()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rr_cursor = int(state.get("rr_cursor", 0))
        self.tasks = {t["task_id"]: TaskRecord(**{**t, "state": TaskState(t["state"])})
                      for t in state.get("tasks", [])}
        self.migrations = [Migration.from_dict(m) for m in state.get("migrations", [])]
