"""The scheduler's decisions: a plain class with a step function (no Ray, injected clock).

Each ``step(capacity)`` looks at the queue and the running tasks and returns what to do:

1. **Running tasks.** A task whose job has ended moves on by how it ended (see
   :meth:`Scheduler._end_attempt`): SUCCEEDED; FAILED with its driver's error; started again
   when its driver died without saying why (``scheduling.max_attempts``); PREEMPTED, CANCELLED
   or FAILED when the scheduler had asked it to stop. A task that has trained longer than
   ``training.max_runtime_s`` (over all its attempts) is stopped. A task asked to make room
   is stopped at its next checkpoint boundary: once its driver reports a checkpoint newer than
   the one it had when asked (at once for one that writes none, e.g. an estimator; after
   ``preempt_grace_s`` at the latest, when it resumes from its newest checkpoint anyway; not
   at all once its last epoch is done, as it is ending anyway).
2. **Admission**, in queue order: priority (99 first), then submit order. A task starts when
   its CPUs, GPUs and memory fit in what is free: the cluster's alive totals minus what the
   running tasks were given, and never more than Ray reports available (work started outside
   the scheduler counts too).
3. **Reservation and backfill (EASY backfilling).** The first task in queue order that does not
   fit gets a reservation. Tasks behind it may start ahead of it only when that cannot delay
   it: either they fit in what will be left over once it starts (the "extra"), or they are
   certain to end before it can start (their ``max_runtime_s`` ends before the "shadow time",
   when the running tasks' own limits guarantee enough room for it). Without limits on the
   running tasks, only the extra is used. So a large task is never starved by small ones.
4. **Preemption.** When the reserved task has preemptible running tasks of lower priority in
   its way, the lowest-priority ones (the most recently started first among equals: they lose
   the least) are asked to stop, just enough of them to make room; none are stopped when even
   all of them would not make enough room. The stopped tasks wait in the queue as PREEMPTED
   with their priority and submit order, and resume from their newest checkpoint: the same
   weights as an uninterrupted run.

Every decision is logged with its cause and the numbers it compared.
"""

from __future__ import annotations

import bisect
import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from cluster.queue import (
    TERMINAL_STATES,
    Outcome,
    Progress,
    QueueState,
    StopRequest,
    TaskRecord,
)
from mtp_core.resources import Resources

__all__ = [
    "Action",
    "ActionKind",
    "Capacity",
    "JobReport",
    "JobStatus",
    "Scheduler",
    "SchedulerError",
    "SchedulerPolicy",
    "StepResult",
    "queue_order",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
_INTERRUPTED = (130, 143)  # mtp run stopped by SIGINT / SIGTERM
_MAX_RESUBMITS = 3


class SchedulerError(ValueError):
    """A request the queue cannot honour (an unknown task, a finished one)."""


@dataclass(frozen=True)
class SchedulerPolicy:
    backfill: bool = True
    preemption: bool = True
    #: a task asked to stop for a higher-priority one that reaches no checkpoint within this
    #: is stopped anyway (it resumes from its newest checkpoint: the result is the same)
    preempt_grace_s: float = 600.0


@dataclass(frozen=True)
class Capacity:
    """The cluster as Ray reports it: alive nodes' totals, and what is available now."""

    nodes: tuple[Resources, ...]
    available: Resources
    #: what each alive node has available now, as Ray reports it (empty: not known); a
    #: task's workers must each fit on one node
    node_free: tuple[Resources, ...] = ()

    @cached_property
    def total(self) -> Resources:
        out = Resources()
        for n in self.nodes:
            out = out + n
        return out


class JobStatus(enum.StrEnum):
    """A task's Ray job, as the job API reports it (``UNKNOWN``: there is no such job)."""

    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def ended(self) -> bool:
        return self in (JobStatus.UNKNOWN, JobStatus.SUCCEEDED, JobStatus.FAILED,
                        JobStatus.STOPPED)


@dataclass(frozen=True)
class JobReport:
    """What the scheduler knows of a running task's current attempt."""

    status: JobStatus
    progress: Progress | None = None
    outcome: Outcome | None = None  # written by the attempt's driver as it ends
    message: str = ""  # Ray's job message


class ActionKind(enum.StrEnum):
    START_JOB = "START_JOB"
    STOP_JOB = "STOP_JOB"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    task: TaskRecord
    reason: str


@dataclass(frozen=True)
class StepResult:
    changed: list[TaskRecord] = field(default_factory=list)  # records to persist
    actions: list[Action] = field(default_factory=list)  # jobs to start or stop, in order
    admitted: list[TaskRecord] = field(default_factory=list)
    preempted: list[TaskRecord] = field(default_factory=list)  # asked to stop this step


def queue_order(rec: TaskRecord) -> tuple[int, int]:
    return (-rec.priority, rec.seq)


class _TaskTable(dict[str, TaskRecord]):
    """The active tasks by id, with the queue order and the running set kept up to date as
    records change: a step over 10,000 queued tasks would otherwise spend most of its time
    sorting them. ``order`` holds (queue key, id) for waiting tasks, sorted; an entry whose
    task has since started, ended or changed priority is skipped when read, and dropped when
    stale entries outnumber live ones."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[tuple[int, int], str]] = []
        self.running: dict[str, None] = {}  # an ordered set
        self._waiting: list[TaskRecord] | None = None  # valid until a waiting task changes

    def __setitem__(self, key: str, value: TaskRecord) -> None:
        old = self.get(key)
        if value.waiting or (old is not None and old.waiting):
            self._waiting = None
        super().__setitem__(key, value)
        if value.state is QueueState.RUNNING:
            self.running[key] = None
        else:
            self.running.pop(key, None)
        if value.waiting and (old is None or not old.waiting
                              or queue_order(old) != queue_order(value)):
            bisect.insort(self.order, (queue_order(value), key))

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.running.pop(key, None)
        self._waiting = None

    def pop(self, key: str, *default: Any) -> Any:
        self.running.pop(key, None)
        self._waiting = None
        return super().pop(key, *default)

    def waiting(self) -> list[TaskRecord]:
        if self._waiting is not None:
            return list(self._waiting)
        out: list[TaskRecord] = []
        seen: set[str] = set()
        for k, task_id in self.order:
            rec = self.get(task_id)
            if (rec is not None and rec.waiting and task_id not in seen
                    and queue_order(rec) == k):
                out.append(rec)
                seen.add(task_id)
        if len(self.order) > 2 * len(out) + 64:
            self.order = [(queue_order(r), r.id) for r in out]
        self._waiting = out
        return list(out)


class Scheduler:
    """The queue's state and its step function (see the module docstring).

    Lifecycle: ``load`` the active records (from the database, on start and restart), then
    ``submit`` / ``cancel`` / ``set_priority`` as requests come, ``observe`` each running
    task's job, and ``step`` on a timer. The caller persists ``StepResult.changed`` and then
    carries out the actions (start a job after its RUNNING record is stored, so a restart in
    between finds it and cannot start it twice).
    """

    def __init__(self, policy: SchedulerPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = policy or SchedulerPolicy()
        self.clock = clock
        self.tasks = _TaskTable()
        self._reports: dict[str, JobReport] = {}
        self._stop_sent: set[str] = set()  # job ids asked to stop (a restart asks again)
        self._resubmits: dict[str, int] = {}  # job id -> submissions after it was not found

    # -- requests ------------------------------------------------------------------------------

    def load(self, records: Iterable[TaskRecord]) -> None:
        for rec in records:
            if rec.state not in TERMINAL_STATES:
                self.tasks[rec.id] = rec

    def submit(self, rec: TaskRecord) -> None:
        self.tasks[rec.id] = rec

    def get(self, task_id: str) -> TaskRecord:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise SchedulerError(f"no active task {task_id!r} in the queue") from None

    def cancel(self, task_id: str, who: str = "a user") -> TaskRecord:
        """A waiting task leaves the queue now; a running one is stopped (its checkpoints
        stay) and becomes CANCELLED when its job has ended."""
        rec = self.get(task_id)
        now = self.clock()
        if rec.waiting:
            rec = replace(rec, state=QueueState.CANCELLED, ended_at=now,
                          reason=f"cancelled by {who} while {rec.state.value}")
            del self.tasks[task_id]
        else:
            rec = replace(rec, request=StopRequest.CANCEL, requested_at=now,
                          reason=f"cancel requested by {who}: stopping its job")
            self.tasks[task_id] = rec
        logger.info("task %s: %s", task_id, rec.reason)
        return rec

    def set_priority(self, task_id: str, priority: int) -> TaskRecord:
        if not 1 <= priority <= 99:
            raise SchedulerError(f"priority {priority} is out of range; allowed: 1 to 99")
        rec = self.get(task_id)
        rec = replace(rec, priority=priority,
                      reason=f"priority {rec.priority} -> {priority} (still {rec.state.value})")
        self.tasks[task_id] = rec
        return rec

    def start_failed(self, task_id: str, error: str) -> TaskRecord | None:
        """The job of a just-admitted task could not be submitted: back to the queue, the
        attempt not counted (tried again at the next step)."""
        rec = self.tasks.get(task_id)
        if rec is None or rec.state is not QueueState.RUNNING:
            return None
        if rec.request is StopRequest.CANCEL:  # cancelled before its job could start
            rec = replace(rec, state=QueueState.CANCELLED, ended_at=self.clock(),
                          attempt_started_at=None, request=None,
                          reason=f"cancelled before its job could start ({error})")
            self.tasks.pop(task_id, None)
            return rec
        attempts = rec.attempts - 1
        rec = replace(rec, state=QueueState.PREEMPTED if rec.preemptions else
                      QueueState.PENDING, attempts=attempts, attempt_started_at=None,
                      started_at=rec.started_at if attempts else None,
                      job_id=rec.job_id_for(attempts) if attempts else None,
                      reason=f"its job could not be started ({error}); queued again")
        self.tasks[task_id] = rec
        return rec

    def stop_failed(self, job_id: str) -> None:
        """A stop of ``job_id`` was not delivered: it is sent again at the next step."""
        self._stop_sent.discard(job_id)

    def observe(self, task_id: str, report: JobReport) -> None:
        if task_id in self.tasks:
            self._reports[task_id] = report

    # -- views -----------------------------------------------------------------------------------

    def running(self) -> list[TaskRecord]:
        return [self.tasks[i] for i in self.tasks.running]

    def waiting(self) -> list[TaskRecord]:
        """Waiting tasks in queue order."""
        return self.tasks.waiting()

    def allocated(self) -> Resources:
        out = Resources()
        for t in self.running():
            out = out + t.demand
        return out

    def free(self, capacity: Capacity) -> Resources:
        return (capacity.total - self.allocated()).minimum(capacity.available).floor()

    # -- the step ----------------------------------------------------------------------------------

    def step(self, capacity: Capacity) -> StepResult:
        now = self.clock()
        out = StepResult()
        for rec in sorted(self.running(), key=queue_order):
            self._step_running(rec, now, out)
        self._admit(capacity, now, out)
        return out

    def _set(self, rec: TaskRecord, out: StepResult) -> TaskRecord:
        if rec.state in TERMINAL_STATES:
            self.tasks.pop(rec.id, None)
            self._reports.pop(rec.id, None)
        else:
            self.tasks[rec.id] = rec
        out.changed.append(rec)
        return rec

    def _stop(self, rec: TaskRecord, reason: str, out: StepResult) -> None:
        if rec.job_id is None or rec.job_id in self._stop_sent:
            return
        self._stop_sent.add(rec.job_id)
        out.actions.append(Action(ActionKind.STOP_JOB, rec, reason))
        logger.info("task %s: stopping job %s: %s", rec.id, rec.job_id, reason)

    def _step_running(self, rec: TaskRecord, now: float, out: StepResult) -> None:
        report = self._reports.get(rec.id)
        if report is None:
            return
        if report.progress is not None and report.progress != rec.progress:
            rec = replace(rec, progress=report.progress)
            self.tasks[rec.id] = rec  # progress is the driver's own column: not re-persisted
        if (report.status is JobStatus.UNKNOWN and report.outcome is None
                and rec.progress is None and rec.job_id is not None
                and self._resubmits.get(rec.job_id, 0) < _MAX_RESUBMITS):
            # Ray has no job of this attempt and the attempt never reported: it was stored
            # RUNNING but its job was never submitted (the scheduler stopped in between), or
            # Ray lost it before it started. Submit the same job id again.
            self._resubmits[rec.job_id] = self._resubmits.get(rec.job_id, 0) + 1
            out.actions.append(Action(ActionKind.START_JOB, rec, "its job was not found: "
                                      "submitted again"))
            logger.info("task %s: job %s not found; submitting it again", rec.id, rec.job_id)
            return
        if report.status.ended:
            self._end_attempt(rec, report, now, out)
            return
        limit = rec.max_runtime_s
        if (limit is not None and rec.ran_at(now) > limit
                and rec.request not in (StopRequest.TIME_LIMIT, StopRequest.CANCEL)):
            rec = self._set(replace(
                rec, request=StopRequest.TIME_LIMIT, requested_at=now,
                reason=f"ran {rec.ran_at(now):.1f} s > training.max_runtime_s={limit:g}: "
                "stopping its job"), out)
        if rec.request in (StopRequest.TIME_LIMIT, StopRequest.CANCEL):
            self._stop(rec, rec.reason, out)
        elif rec.request is StopRequest.PREEMPT:
            ckpt = rec.progress.checkpoint_epoch if rec.progress else None
            last = (rec.progress is not None and rec.progress.epochs is not None
                    and rec.progress.epoch >= rec.progress.epochs)
            if last:
                return  # its last epoch is done: it ends sooner than a stop and a restart
            if not rec.checkpointed:
                self._stop(rec, "preempted (it writes no checkpoints)", out)
            elif ckpt is not None and ckpt > (rec.request_epoch or 0):
                self._stop(rec, f"preempted at its checkpoint of epoch {ckpt}", out)
            elif now - (rec.requested_at or now) > self.policy.preempt_grace_s:
                self._stop(rec, f"preempted: no new checkpoint within preempt_grace_s="
                           f"{self.policy.preempt_grace_s:g}; it resumes from its newest", out)

    def _end_attempt(self, rec: TaskRecord, report: JobReport, now: float,
                     out: StepResult) -> None:
        """The attempt's job has ended: decide the task's next state."""
        ran = rec.ran_s + max(now - (rec.attempt_started_at or now), 0.0)
        outcome = report.outcome
        base = replace(rec, ran_s=ran, request=None, requested_at=None, request_epoch=None,
                       attempt_started_at=None)
        if rec.job_id is not None:
            self._stop_sent.discard(rec.job_id)
        self._reports.pop(rec.id, None)
        if outcome is None and report.status is JobStatus.SUCCEEDED:
            outcome = Outcome(EXIT_OK, "its driver's report was lost")  # exit 0 is success
        ok = outcome is not None and outcome.code == EXIT_OK
        why = (outcome.message if outcome is not None and outcome.message
               else report.message or f"job {report.status.value}")
        if ok:
            assert outcome is not None
            note = ("" if rec.request is None
                    else f" (it finished before the {rec.request.value.lower()} took effect)")
            self._finish(base, QueueState.SUCCEEDED, f"succeeded in attempt {rec.attempts}"
                         + note, now, out, result=outcome.result)
        elif outcome is not None and outcome.code not in _INTERRUPTED:
            self._finish(base, QueueState.FAILED, f"failed in attempt {rec.attempts} (exit "
                         f"{outcome.code}): {why}", now, out, error=why)
        elif rec.request is StopRequest.PREEMPT:
            epoch = rec.progress.checkpoint_epoch if rec.progress else None
            self._set(replace(base, state=QueueState.PREEMPTED, preemptions=rec.preemptions + 1,
                              reason=f"preempted after attempt {rec.attempts}; resumes from "
                              + (f"its checkpoint of epoch {epoch}" if epoch else
                                 "its newest checkpoint")), out)
        elif rec.request is StopRequest.CANCEL:
            self._finish(base, QueueState.CANCELLED, "cancelled while RUNNING; its "
                         "checkpoints are kept", now, out)
        elif rec.request is StopRequest.TIME_LIMIT:
            self._finish(base, QueueState.FAILED, f"stopped after {ran:.1f} s: over "
                         f"training.max_runtime_s={rec.max_runtime_s:g}", now, out,
                         error="max runtime exceeded")
        elif outcome is None:  # the driver died without saying how
            lost = f"the driver of attempt {rec.attempts} died ({why})"
            if rec.attempts - rec.preemptions < rec.max_attempts:  # preemptions do not count
                self._set(replace(base, state=QueueState.PENDING,
                                  reason=f"{lost}; queued again (scheduling.max_attempts="
                                  f"{rec.max_attempts})"), out)
            else:
                self._finish(base, QueueState.FAILED, f"{lost}; no attempts left "
                             f"(scheduling.max_attempts={rec.max_attempts})", now, out,
                             error=lost)
        else:  # interrupted, and not by the scheduler
            self._finish(base, QueueState.CANCELLED, "its Ray job was stopped outside the "
                         f"scheduler ({why})", now, out)

    def _finish(self, rec: TaskRecord, state: QueueState, reason: str, now: float,
                out: StepResult, result: dict | None = None, error: str | None = None) -> None:
        rec = self._set(replace(rec, state=state, ended_at=now, reason=reason,
                                result=result, error=error), out)
        logger.info("task %s %s: %s", rec.id, state.value, reason)

    # -- admission, reservation, backfill, preemption --------------------------------------------

    def _admit(self, capacity: Capacity, now: float, out: StepResult) -> None:
        free = self.free(capacity)
        node_room = list(capacity.node_free)
        reserved: _Reservation | None = None
        keep: set[str] = set()  # preemption requests the reservation still needs
        for rec in self.waiting():
            need = rec.demand
            if need.fits_in(free) and (not node_room or _place(rec, node_room) is not None):
                if reserved is not None:
                    why = reserved.allows(rec, now)
                    if why is None:
                        continue
                    how = f"backfilled ahead of {reserved.task.id} ({why})"
                else:
                    how = "in queue order"
                if node_room:
                    node_room = _place(rec, node_room) or node_room
                free = free - need
                self._start(rec, now, f"admitted {how}: needs {need.describe()}; "
                            f"free was {(free + need).describe()}", out)
                continue
            if not need.fits_in(capacity.total):
                continue  # larger than the cluster as it is now (a node left): no reservation
            if reserved is None:
                reserved = self._reserve(rec, capacity, free, now, out, keep)
                if not self.policy.backfill:
                    break
        self._withdraw_preemptions(keep, reserved, now, out)

    def _pending_preemptions(self) -> list[TaskRecord]:
        """Running tasks asked to make room whose stop has not been sent yet."""
        return [t for t in self.running() if t.request is StopRequest.PREEMPT
                and t.job_id not in self._stop_sent]

    def _withdraw_preemptions(self, keep: set[str], reserved: _Reservation | None,
                              now: float, out: StepResult) -> None:
        """A request to make room that is no longer needed (the task it was for started, was
        cancelled, or others made room) is withdrawn before its stop is sent."""
        for t in self._pending_preemptions():
            if t.id in keep:
                continue
            why = (f"{reserved.task.id} no longer needs its room" if reserved is not None
                   else "no waiting task needs its room any more")
            self._set(replace(t, request=None, requested_at=None, request_epoch=None,
                              reason=f"preemption withdrawn: {why}"), out)
            logger.info("task %s: preemption withdrawn: %s", t.id, why)

    def _start(self, rec: TaskRecord, now: float, reason: str, out: StepResult) -> None:
        attempt = rec.attempts + 1
        rec = self._set(replace(
            rec, state=QueueState.RUNNING, attempts=attempt, attempt_started_at=now,
            started_at=rec.started_at or now, job_id=rec.job_id_for(attempt), progress=None,
            request=None, requested_at=None, request_epoch=None,
            reason=f"{reason} (attempt {attempt})"), out)
        out.admitted.append(rec)
        out.actions.append(Action(ActionKind.START_JOB, rec, rec.reason))
        logger.info("task %s (priority %d): %s", rec.id, rec.priority, rec.reason)

    def _reserve(self, head: TaskRecord, capacity: Capacity, free: Resources, now: float,
                 out: StepResult, keep: set[str]) -> _Reservation:
        """Reserve room for ``head`` (the first task that does not fit), preempting for it
        when that makes room; returns what later tasks may still use.

        The room counted for preemption is the cluster's total minus what the running tasks
        were given, not Ray's available resources: those lag behind a task that has just
        ended, which would make a second, needless victim. Tasks already being stopped count
        as room; those asked to make room but not yet stopped are chosen again (or not:
        ``keep`` collects the ones still needed)."""
        running = sorted(self.running(), key=lambda t: (t.priority,
                                                        -(t.attempt_started_at or 0.0)))
        pending = {t.id for t in self._pending_preemptions()}
        room = (capacity.total - self.allocated()).floor()
        for t in running:
            if t.request is not None and t.id not in pending:  # being stopped: its room
                room = room + t.demand
        if self.policy.preemption and not head.demand.fits_in(room):
            candidates = [t for t in running if t.preemptible and t.priority < head.priority
                          and (t.request is None or t.id in pending)]
            for t in _victims(head, room, candidates):
                keep.add(t.id)
                if t.id in pending:
                    continue
                ckpt = t.progress.checkpoint_epoch if t.progress else None
                reason = (f"preempted for {head.id} (priority {head.priority} > "
                          f"{t.priority}): stops at its next checkpoint (newest now: "
                          + (f"epoch {ckpt})" if ckpt else "none)"))
                rec = self._set(replace(t, request=StopRequest.PREEMPT, requested_at=now,
                                        request_epoch=ckpt or 0, reason=reason), out)
                out.preempted.append(rec)
                logger.info("task %s: %s; %s needs %s, room %s", t.id, reason, head.id,
                            head.demand.describe(), room.describe())
                self._step_running(rec, now, out)  # a task with no checkpoints: now
        return _Reservation.of(head, free, self.running(), now)


def _victims(head: TaskRecord, room: Resources, candidates: list[TaskRecord]
             ) -> list[TaskRecord]:
    """The tasks of ``candidates`` (in preemption order: lowest priority first, the most
    recently started among equals) to stop so that ``head`` fits in ``room`` plus what they
    hold: each one freeing something ``head`` still lacks; then those not needed after all
    are spared (highest priority first). None when even all would not do."""
    chosen: list[TaskRecord] = []
    have = room
    for t in candidates:
        lack = (head.demand - have).floor()
        if not (lack.cpu and t.demand.cpu or lack.gpu and t.demand.gpu
                or lack.memory and t.demand.memory):
            continue
        chosen.append(t)
        have = have + t.demand
        if head.demand.fits_in(have):
            break
    if not head.demand.fits_in(have):
        return []
    for t in sorted(chosen, key=lambda v: -v.priority):
        if head.demand.fits_in(have - t.demand):
            chosen.remove(t)
            have = have - t.demand
    return chosen


def _place(rec: TaskRecord, node_room: list[Resources]) -> list[Resources] | None:
    """``node_room`` after placing ``rec``'s workers one per bundle (each on the node with
    the most room that holds it), or None when they do not all fit."""
    res = rec.resources
    bundle = Resources(res.cpus_per_worker, res.gpus_per_worker, res.memory_per_worker)
    room = list(node_room)
    for _ in range(res.num_workers):
        fits = [i for i, r in enumerate(room) if bundle.fits_in(r)]
        if not fits:
            return None
        best = max(fits, key=lambda i: (room[i].cpu, room[i].gpu, room[i].memory))
        room[best] = room[best] - bundle
    return room


@dataclass
class _Reservation:
    """Room kept for the first waiting task that does not fit (see the module docstring)."""

    task: TaskRecord
    extra: Resources  # what backfilled tasks may still take
    shadow: float | None  # when room for it is certain (None: not known)

    @classmethod
    def of(cls, head: TaskRecord, free: Resources, running: list[TaskRecord],
           now: float) -> _Reservation:
        def ends(t: TaskRecord) -> float | None:
            if t.request is not None:
                return now  # being stopped
            if t.max_runtime_s is None:
                return None
            return now + max(t.max_runtime_s - t.ran_at(now), 0.0)

        room, shadow = free, None
        known = sorted((t for t in running if ends(t) is not None), key=lambda t: ends(t) or 0)
        for t in known:
            room = room + t.demand
            if head.demand.fits_in(room):
                shadow = ends(t)
                break
        if shadow is None:
            # when the head can start is not known: a backfilled task may use only what the
            # head would leave over if it started now (never what it lacks), or it could
            # keep taking the room the head is waiting for
            return cls(head, (free - head.demand).floor(), None)
        return cls(head, room - head.demand, shadow)

    def allows(self, rec: TaskRecord, now: float) -> str | None:
        """Why ``rec`` may start now without delaying the reserved task, or None."""
        if rec.demand.fits_in(self.extra):
            self.extra = self.extra - rec.demand
            return f"it fits in the room left over once {self.task.id} runs"
        if (self.shadow is not None and rec.max_runtime_s is not None
                and now + rec.max_runtime_s <= self.shadow):
            return (f"its max_runtime_s={rec.max_runtime_s:g} ends before {self.task.id} "
                    f"can start in {self.shadow - now:.0f} s")
        return None
