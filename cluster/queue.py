"""The scheduler's task queue: its records, states, and their rows in the platform database.

Lifecycle of a queued task (``QueueState``)::

    PENDING ──admit──▶ RUNNING ──job ends──▶ SUCCEEDED | FAILED | CANCELLED
       ▲                 │  stop for a higher-priority task, at a checkpoint
       └── PREEMPTED ◀───┘  (waits in the queue; resumes from its newest checkpoint)

A task whose driver died (no outcome from it) is started again, up to
``scheduling.max_attempts``. The ``mtp-scheduler`` actor is the only writer of the state
columns; each task's own driver writes its ``progress`` and ``outcome`` (tagged with the attempt,
so a late write of an older attempt is ignored). Everything that crosses a process boundary is a
frozen dataclass; the store is usable without Ray (tests, the CLI's reads).
"""

from __future__ import annotations

import enum
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, update

from database import Database, DatabaseError
from database.schema import TASKS
from database.sql import insert_returning_key
from mtp_core.resources import Resources, TaskResources

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "Outcome",
    "Progress",
    "QueueState",
    "QueueStore",
    "StopRequest",
    "TaskRecord",
    "new_task_id",
]


class QueueState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PREEMPTED = "PREEMPTED"  # back in the queue, to resume from its checkpoint


TERMINAL_STATES = frozenset({QueueState.SUCCEEDED, QueueState.FAILED, QueueState.CANCELLED})
ACTIVE_STATES = frozenset(QueueState) - TERMINAL_STATES
WAITING_STATES = frozenset({QueueState.PENDING, QueueState.PREEMPTED})


class StopRequest(enum.StrEnum):
    """Why the scheduler is stopping a running task's job (kept until the job has ended)."""

    PREEMPT = "PREEMPT"  # at its next checkpoint, for a higher-priority task
    CANCEL = "CANCEL"  # `mtp cancel`
    TIME_LIMIT = "TIME_LIMIT"  # training.max_runtime_s


def new_task_id() -> str:
    """A short, unique queue id (``t-`` and 10 hex digits)."""
    return "t-" + secrets.token_hex(5)


@dataclass(frozen=True)
class Progress:
    """Where a running task stands, as its driver last reported (one record per epoch)."""

    epoch: int
    epochs: int | None  # None: an estimator's single fit
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_epoch: int | None = None  # the newest epoch with a checkpoint
    at: float = 0.0

    @property
    def percent(self) -> float:
        if not self.epochs:
            return 100.0 if self.epoch else 0.0
        return 100.0 * min(self.epoch, self.epochs) / self.epochs

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "percent": self.percent}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Progress | None:
        if not text:
            return None
        d = json.loads(text)
        return cls(int(d["epoch"]), d.get("epochs"), dict(d.get("metrics") or {}),
                   d.get("checkpoint_epoch"), float(d.get("at", 0.0)))


@dataclass(frozen=True)
class Outcome:
    """How an attempt's driver (``mtp run``) ended: its exit code, its one-line message and,
    on success, a summary of the result."""

    code: int
    message: str = ""
    result: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | None) -> Outcome | None:
        if not text:
            return None
        d = json.loads(text)
        return cls(int(d["code"]), str(d.get("message", "")), d.get("result"))


@dataclass(frozen=True)
class TaskRecord:
    """One queued task, as the scheduler sees it and the database stores it."""

    id: str
    name: str
    task_id: str
    priority: int
    resources: TaskResources
    config: str  # canonical JSON of the task
    config_path: str
    storage: str
    run_name: str
    submitter: str
    submitted_at: float
    seq: int = 0  # submit order; assigned by the database
    state: QueueState = QueueState.PENDING
    preemptible: bool = True
    checkpointed: bool = True  # False: an estimator (fitted in one step), stopped at once
    max_attempts: int = 3
    max_runtime_s: float | None = None
    request_id: str | None = None
    started_at: float | None = None
    attempt_started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    ran_s: float = 0.0
    preemptions: int = 0
    reason: str = "submitted"
    request: StopRequest | None = None
    requested_at: float | None = None
    request_epoch: int | None = None
    job_id: str | None = None
    progress: Progress | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        # computed here, never lazily: the scheduler's loop thread reads records while an actor
        # call pickles the same record for its caller, and a value cached on first read would
        # change the dict being pickled ("dictionary changed size during iteration")
        object.__setattr__(self, "_demand", Resources.of_task(self.resources))

    @property
    def demand(self) -> Resources:
        """What the task holds while it runs (its workers' CPUs, GPUs and memory)."""
        demand: Resources = self.__dict__["_demand"]
        return demand

    @property
    def waiting(self) -> bool:
        return self.state in WAITING_STATES

    def ran_at(self, now: float) -> float:
        """Seconds trained over all attempts, the current one up to ``now``."""
        current = (now - self.attempt_started_at
                   if self.state is QueueState.RUNNING and self.attempt_started_at else 0.0)
        return self.ran_s + max(current, 0.0)

    def waited_at(self, now: float) -> float:
        """Seconds from submission to the first start (or to ``now`` while never started)."""
        return (self.started_at or (now if self.waiting else self.ended_at or now)) \
            - self.submitted_at

    def job_id_for(self, attempt: int) -> str:
        """The Ray job submission id of an attempt: fixed, so a resubmission after a restart
        of the scheduler finds the job it already started instead of starting a second."""
        return f"mtp-{self.id}-{attempt}"


_STATE_COLUMNS = ("priority", "state", "started_at", "attempt_started_at", "ended_at",
                  "attempts", "ran_s", "preemptions", "reason", "request", "requested_at",
                  "request_epoch", "job_id", "result", "error")


def _row(rec: TaskRecord) -> dict[str, Any]:
    return {
        "id": rec.id, "request_id": rec.request_id, "name": rec.name, "task_id": rec.task_id,
        "priority": rec.priority, "state": rec.state.value, "preemptible": rec.preemptible,
        "checkpointed": rec.checkpointed,
        "max_attempts": rec.max_attempts, "max_runtime_s": rec.max_runtime_s,
        "resources": json.dumps(asdict(rec.resources), sort_keys=True),
        "submitter": rec.submitter, "submitted_at": rec.submitted_at,
        "started_at": rec.started_at, "attempt_started_at": rec.attempt_started_at,
        "ended_at": rec.ended_at, "attempts": rec.attempts, "ran_s": rec.ran_s,
        "preemptions": rec.preemptions, "reason": rec.reason,
        "request": rec.request.value if rec.request else None,
        "requested_at": rec.requested_at, "request_epoch": rec.request_epoch,
        "job_id": rec.job_id, "config": rec.config, "config_path": rec.config_path,
        "storage": rec.storage, "run_name": rec.run_name,
        "result": json.dumps(rec.result, sort_keys=True) if rec.result is not None else None,
        "error": rec.error, "updated_at": rec.updated_at or time.time(),
    }


def _record(row: RowMapping | Mapping[str, Any]) -> TaskRecord:
    progress = (Progress.from_json(row["progress"])
                if row["progress_attempt"] == row["attempts"] else None)
    return TaskRecord(
        id=row["id"], name=row["name"], task_id=row["task_id"], priority=row["priority"],
        resources=TaskResources(**json.loads(row["resources"])), config=row["config"],
        config_path=row["config_path"], storage=row["storage"], run_name=row["run_name"],
        submitter=row["submitter"], submitted_at=row["submitted_at"], seq=row["seq"],
        state=QueueState(row["state"]), preemptible=bool(row["preemptible"]),
        checkpointed=bool(row["checkpointed"]),
        max_attempts=row["max_attempts"], max_runtime_s=row["max_runtime_s"],
        request_id=row["request_id"], started_at=row["started_at"],
        attempt_started_at=row["attempt_started_at"], ended_at=row["ended_at"],
        attempts=row["attempts"], ran_s=row["ran_s"], preemptions=row["preemptions"],
        reason=row["reason"], request=StopRequest(row["request"]) if row["request"] else None,
        requested_at=row["requested_at"], request_epoch=row["request_epoch"],
        job_id=row["job_id"], progress=progress,
        result=json.loads(row["result"]) if row["result"] else None, error=row["error"],
        updated_at=row["updated_at"])


class QueueStore:
    """The ``mtp_tasks`` rows of one database. Writes are single transactions; submission is
    idempotent per ``request_id``; an attempt's progress and outcome are written only while
    that attempt is the task's current one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the scheduler's writes ------------------------------------------------------------

    def insert(self, rec: TaskRecord) -> TaskRecord:
        """Add a task; returns it with its ``seq``. With a ``request_id`` already used, returns
        the task that request created instead (a retried submit never queues twice)."""

        def write(conn: Connection) -> TaskRecord:
            seq = insert_returning_key(conn, TASKS, _row(rec))
            if seq is not None:
                return replace(rec, seq=int(seq))
            # the request was queued before (or by a concurrent submit, now committed)
            found = conn.execute(select(TASKS).where(
                TASKS.c.request_id == rec.request_id)).mappings().first()
            if found is None:
                raise DatabaseError(f"database {self.db.where}: task {rec.id} was not queued "
                                    "and no task of its request exists")
            return _record(found)

        return self.db.write(write, "queue a task")

    def save(self, rec: TaskRecord) -> None:
        """Write a record's state columns (the scheduler's view after a decision)."""
        values = {k: v for k, v in _row(rec).items() if k in _STATE_COLUMNS}
        values["updated_at"] = time.time()
        self.db.write(lambda conn: conn.execute(
            update(TASKS).where(TASKS.c.id == rec.id).values(**values)), "update a task")

    def save_many(self, recs: Iterable[TaskRecord]) -> None:
        recs = list(recs)
        if not recs:
            return
        now = time.time()

        def write(conn: Connection) -> None:
            for rec in recs:
                values = {k: v for k, v in _row(rec).items() if k in _STATE_COLUMNS}
                values["updated_at"] = now
                conn.execute(update(TASKS).where(TASKS.c.id == rec.id).values(**values))

        self.db.write(write, "update tasks")

    # -- the driver's writes -------------------------------------------------------------------

    def record_progress(self, task_id: str, attempt: int, progress: Progress) -> bool:
        """The driver of ``attempt`` reports an epoch; False when that attempt is not current."""
        return self._attempt_write(task_id, attempt, progress=progress.to_json(),
                                   progress_attempt=attempt)

    def record_outcome(self, task_id: str, attempt: int, outcome: Outcome) -> bool:
        """The driver of ``attempt`` reports how it ended (before its process exits)."""
        return self._attempt_write(task_id, attempt, outcome=outcome.to_json(),
                                   outcome_attempt=attempt)

    def _attempt_write(self, task_id: str, attempt: int, **values: Any) -> bool:
        def write(conn: Connection) -> bool:
            res = conn.execute(update(TASKS).where(
                TASKS.c.id == task_id, TASKS.c.attempts == attempt).values(**values))
            return bool(res.rowcount)

        return self.db.write(write, "record a task's progress")

    # -- reads -----------------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        row = self.db.read(lambda conn: conn.execute(
            select(TASKS).where(TASKS.c.id == task_id)).mappings().first())
        return _record(row) if row is not None else None

    def find_request(self, request_id: str) -> TaskRecord | None:
        row = self.db.read(lambda conn: conn.execute(
            select(TASKS).where(TASKS.c.request_id == request_id)).mappings().first())
        return _record(row) if row is not None else None

    def outcome(self, task_id: str, attempt: int) -> Outcome | None:
        row = self.db.read(lambda conn: conn.execute(
            select(TASKS.c.outcome, TASKS.c.outcome_attempt).where(TASKS.c.id == task_id)
        ).first())
        if row is None or row.outcome_attempt != attempt:
            return None
        return Outcome.from_json(row.outcome)

    def running_reports(self) -> dict[str, tuple[Progress | None, Outcome | None]]:
        """Progress and outcome of every RUNNING task's current attempt (one query)."""

        def read(conn: Connection) -> dict[str, tuple[Progress | None, Outcome | None]]:
            rows = conn.execute(select(
                TASKS.c.id, TASKS.c.attempts, TASKS.c.progress, TASKS.c.progress_attempt,
                TASKS.c.outcome, TASKS.c.outcome_attempt,
            ).where(TASKS.c.state == QueueState.RUNNING.value)).all()
            return {r.id: (Progress.from_json(r.progress) if r.progress_attempt == r.attempts
                           else None,
                           Outcome.from_json(r.outcome) if r.outcome_attempt == r.attempts
                           else None) for r in rows}

        return self.db.read(read)

    def active(self) -> list[TaskRecord]:
        """Every task not yet ended, in queue order."""
        return self.list(states=ACTIVE_STATES)

    def list(self, states: Iterable[QueueState] | None = None, name: str | None = None,
             limit: int | None = None, after_seq: int = 0) -> list[TaskRecord]:
        """Tasks in submit order, optionally only some states or one name."""
        query = select(TASKS).where(TASKS.c.seq > after_seq).order_by(TASKS.c.seq)
        if states is not None:
            query = query.where(TASKS.c.state.in_([s.value for s in states]))
        if name is not None:
            query = query.where(TASKS.c.name == name)
        if limit is not None:
            query = query.limit(limit)
        rows = self.db.read(lambda conn: conn.execute(query).mappings().all())
        return [_record(r) for r in rows]

    def counts(self) -> dict[QueueState, int]:
        rows = self.db.read(lambda conn: conn.execute(
            select(TASKS.c.state, func.count()).group_by(TASKS.c.state)).all())
        return {QueueState(s): int(n) for s, n in rows}
