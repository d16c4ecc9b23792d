"""The task queue from a driver script or the CLI: submit, look, cancel, reprioritize.

::

    import mtp.queue as q

    rec = q.submit(mtp.load_task("examples/digits_mlp.yaml"), priority=80)  # returns at once
    q.get_task(rec.id).state        # QueueState.PENDING / RUNNING / SUCCEEDED ...
    q.cancel(rec.id)

Each call needs a connection to the cluster (``mtp_core.ray_env.connect``): the scheduler is
the cluster's ``mtp-scheduler`` actor, started here on the first submit if ``mtp cluster start``
has not started it. A task is checked completely before it is queued: its config, its data
(loaded, validated and hashed, as ``mtp validate`` does) and whether the cluster could ever hold
it; a task that passes starts later exactly as ``mtp run`` would run it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import ray

from cluster.errors import ClusterError
from cluster.queue import QueueState, TaskRecord
from cluster.scheduler_actor import (
    SCHEDULER_NAME,
    Submission,
    default_submitter,
    find_scheduler,
    get_scheduler,
)
from mtp_core.errors import ConfigError
from mtp_core.resources import TaskResources
from mtp_core.spec import SklearnModel, TrainingTask

__all__ = ["cancel", "check_task", "find_request", "get_task", "scheduler", "set_priority",
           "snapshot", "submit", "submit_created", "task_logs", "tasks", "wait"]

_CALL_TIMEOUT_S = 60.0  # a call to the scheduler actor (a caller's deadline may be shorter)
_MAX_REQUEST_ID = 256


class SchedulerUnavailableError(ClusterError):
    """The scheduler actor did not answer (dead, restarting, or too busy)."""


def check_task(task: TrainingTask, storage: Path) -> None:
    """What ``mtp run`` would refuse before training, refused now: the data (loaded, checked
    against ``dataset.validation``), the model and loss for its kind, ``init_from``."""
    from trainer.api import prepare
    from trainer.init_weights import resolve_init_from

    prepare(resolve_init_from(task, storage, task.tracking.uri))


def submission(task: TrainingTask, *, priority: int | None = None,
               request_id: str | None = None, submitter: str | None = None) -> Submission:
    if priority is not None and not 1 <= priority <= 99:
        raise ConfigError(f"--priority {priority} is out of range; allowed: 1 to 99")
    if request_id is not None and not 0 < len(request_id) <= _MAX_REQUEST_ID:
        raise ConfigError(f"request id of {len(request_id)} characters; allowed: 1 to "
                          f"{_MAX_REQUEST_ID}")
    # always one: a submit that Ray retries (the actor died after storing it, before it
    # answered) finds the task it created instead of queueing a second
    request_id = request_id or f"auto-{uuid.uuid4().hex}"
    s = task.scheduling
    return Submission(
        name=task.name, task_id=task.task_id, config=task.model_dump_json(),
        resources=TaskResources.of(task),
        priority=priority if priority is not None else s.priority,
        preemptible=s.preemptible, checkpointed=not isinstance(task.model, SklearnModel),
        max_attempts=s.max_attempts, max_runtime_s=task.training.max_runtime_s,
        submitter=submitter or default_submitter(), request_id=request_id)


#: ("<this driver's Ray job id>@<its node id>", the scheduler actor) once found; forgotten
#: when the actor is gone for good, and not used once the process joins another cluster
_handle: tuple[str, Any] | None = None


def scheduler(storage: str | Path | None = None, database_url: str | None = None,
              create: bool = True) -> Any:
    """The cluster's scheduler actor; with ``create`` started on ``storage`` if none runs.
    A ``storage`` given explicitly must be the running scheduler's."""
    global _handle
    ctx = ray.get_runtime_context()  # job ids restart at 1 in every cluster: with the node
    session = f"{ctx.get_job_id()}@{ctx.get_node_id()}"
    if _handle is not None and _handle[0] == session and storage is None:
        return _handle[1]  # a named detached actor keeps its handle across its restarts
    found = find_scheduler()
    if found is None:
        if not create:
            raise ConfigError("no scheduler runs on this cluster: start it with `mtp cluster "
                              "start` (or queue a task with `mtp submit`)")
        from trainer.api import resolve_storage

        return get_scheduler(resolve_storage(storage), database_url)
    if storage is not None:
        info = _call(found.info.remote())
        wanted = str(Path(storage).expanduser().resolve())
        if info["storage"] != wanted:
            raise ConfigError(f"--storage-path {storage}: the cluster's scheduler stores runs "
                              f"under {info['storage']}; omit --storage-path or give that")
    _handle = (session, found)
    return found


def _call(ref: Any, timeout_s: float | None = None) -> Any:
    """The scheduler's answer; one line (ClusterError) when it cannot give one."""
    from ray.exceptions import GetTimeoutError, RayActorError

    timeout = _CALL_TIMEOUT_S if timeout_s is None else max(min(timeout_s, _CALL_TIMEOUT_S),
                                                            0.001)
    global _handle
    try:
        return ray.get(ref, timeout=timeout)
    except GetTimeoutError:
        with contextlib.suppress(Exception):  # a call that never ran needs no cancel
            ray.cancel(ref)
        raise SchedulerUnavailableError(
            f"the cluster's scheduler ({SCHEDULER_NAME}) did not answer within "
            f"{timeout:g} s; see `mtp cluster status`") from None
    except RayActorError as err:
        _handle = None  # stopped for good (`mtp cluster stop`): look it up again next time
        raise SchedulerUnavailableError(
            f"the cluster's scheduler ({SCHEDULER_NAME}) is not available (it died or is "
            f"restarting: {str(err).strip().splitlines()[0][:200]}); try again, or see "
            "`mtp cluster status`") from None


def submit(task: TrainingTask, *, priority: int | None = None,
           storage: str | Path | None = None, database_url: str | None = None,
           request_id: str | None = None, check: bool = True,
           timeout_s: float | None = None) -> TaskRecord:
    """Queue ``task``; returns its record (state PENDING) at once."""
    record, _ = submit_created(task, priority=priority, storage=storage,
                               database_url=database_url, request_id=request_id, check=check,
                               timeout_s=timeout_s)
    return record


def submit_created(task: TrainingTask, *, priority: int | None = None,
                   storage: str | Path | None = None, database_url: str | None = None,
                   request_id: str | None = None, check: bool = True,
                   timeout_s: float | None = None) -> tuple[TaskRecord, bool]:
    """:func:`submit`, and whether this call queued the task (False: a submit with the same
    ``request_id`` did before, or at the same time, and its task is returned)."""
    from trainer.api import resolve_storage

    sub = submission(task, priority=priority, request_id=request_id)
    if check:  # before anything is started or queued
        check_task(task, resolve_storage(storage))
    actor = scheduler(storage, database_url)
    record: TaskRecord = _call(actor.submit.remote(sub), timeout_s)
    return record, record.id == sub.id


def get_task(task_id: str, timeout_s: float | None = None) -> TaskRecord:
    record: TaskRecord = _call(scheduler(create=False).get.remote(task_id), timeout_s)
    return record


def find_request(request_id: str, timeout_s: float | None = None) -> TaskRecord | None:
    """The task a submit with ``request_id`` created, or None."""
    found: TaskRecord | None = _call(scheduler(create=False).find_request.remote(request_id),
                                     timeout_s)
    return found


def tasks(states: list[QueueState] | None = None, name: str | None = None,
          limit: int | None = None, after_seq: int = 0,
          timeout_s: float | None = None) -> list[TaskRecord]:
    """Tasks in submit order (those after ``after_seq``, at most ``limit``)."""
    found: list[TaskRecord] = _call(scheduler(create=False).tasks.remote(
        [s.value for s in states] if states else None, name, limit, after_seq), timeout_s)
    return found


def snapshot(timeout_s: float | None = None) -> dict[str, Any]:
    found: dict[str, Any] = _call(scheduler(create=False).snapshot.remote(), timeout_s)
    return found


def cancel(task_id: str, who: str | None = None, timeout_s: float | None = None
           ) -> TaskRecord:
    record: TaskRecord = _call(scheduler(create=False).cancel.remote(
        task_id, who or default_submitter()), timeout_s)
    return record


def set_priority(task_id: str, priority: int, timeout_s: float | None = None) -> TaskRecord:
    record: TaskRecord = _call(scheduler(create=False).set_priority.remote(task_id, priority),
                               timeout_s)
    return record


def task_logs(task_id: str, timeout_s: float | None = None) -> list[tuple[int, str, str]]:
    """(attempt, Ray job id, log text) of each attempt, oldest first."""
    found: list[tuple[int, str, str]] = _call(scheduler(create=False).logs.remote(task_id),
                                              timeout_s)
    return found


def wait(task_id: str, timeout_s: float, poll_s: float = 0.5) -> TaskRecord:
    """The task's record once it has ended (or raise TimeoutError after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rec = get_task(task_id)
        if rec.state in (QueueState.SUCCEEDED, QueueState.FAILED, QueueState.CANCELLED):
            return rec
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {rec.state.value} after {timeout_s:g} s")
        time.sleep(poll_s)
