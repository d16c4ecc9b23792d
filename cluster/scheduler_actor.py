"""The scheduler as a Ray actor: ``mtp-scheduler`` in namespace ``mtp``, on the head node.

A thin shell around :class:`cluster.scheduler.Scheduler`: detached, restarting itself
(``max_restarts=-1``), its state the ``mtp_tasks`` rows of the platform database
(:class:`cluster.queue.QueueStore`), reloaded on every (re)start. A loop thread steps the
scheduler every ``interval_s`` (and at once after a submit or a cancel): it reads each running
task's job status from Ray's job API and its progress and outcome from the database, reads the
cluster's resources from Ray, persists the step's changes, then starts and stops Ray jobs.

Each attempt of a task is the Ray job ``mtp-<task>-<attempt>`` whose entrypoint is
``mtp run <storage>/_queue/<task>/task.json --storage-path <storage> --run-name <run>``, so
``ray job list``, ``ray job logs`` and the dashboard's jobs page show it. The record of an
attempt is stored RUNNING (with its job id) before the job is submitted: after a restart of the
scheduler in between, the job id is found (or not, and the attempt counts as a driver that
died), and a task is never started twice.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from sqlalchemy.engine import make_url

from cluster.attempt import QUEUE_ENV
from cluster.errors import ClusterError
from cluster.queue import (
    TERMINAL_STATES,
    Outcome,
    QueueState,
    QueueStore,
    TaskRecord,
    new_task_id,
)
from cluster.scheduler import (
    ActionKind,
    Capacity,
    JobReport,
    JobStatus,
    Scheduler,
    SchedulerError,
    SchedulerPolicy,
    StepResult,
)
from database import Database, DatabaseError, open_database
from mtp_core.atomic import atomic_write_text
from mtp_core.errors import ConfigError
from mtp_core.metrics import LazyMetrics
from mtp_core.ray_env import NAMESPACE, control_plane_options
from mtp_core.resources import Resources, TaskResources, capacity_problem

__all__ = [
    "QUEUE_ENV",
    "SCHEDULER_NAME",
    "JobLauncher",
    "NeverFitsError",
    "SchedulerActor",
    "Submission",
    "TaskEndedError",
    "TaskNotFoundError",
    "cluster_capacity",
    "find_scheduler",
    "get_scheduler",
    "snapshot_json",
    "summarize",
]

logger = logging.getLogger(__name__)

SCHEDULER_NAME = "mtp-scheduler"
_INTERVAL_S = 0.5


class TaskNotFoundError(ConfigError):
    """An id that names no task of the queue (a user's input: exit 2)."""


class NeverFitsError(ConfigError):
    """A task that needs more than the cluster has, or a worker larger than every node."""


class TaskEndedError(ConfigError):
    """A request for a task that has already ended (cancel, a new priority)."""


@dataclass(frozen=True)
class Submission:
    """A validated task, ready to queue (built by ``mtp submit`` and the API)."""

    name: str
    task_id: str
    config: str  # canonical JSON of the task
    resources: TaskResources
    priority: int
    preemptible: bool
    checkpointed: bool
    max_attempts: int
    max_runtime_s: float | None
    submitter: str
    request_id: str | None = None
    # the queue id this submit creates (chosen by the caller, so that it can tell its own task
    # from one a concurrent submit of the same request created first)
    id: str = field(default_factory=new_task_id)


def default_submitter() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in a container: the host is enough
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def cluster_capacity() -> Capacity:
    """Alive nodes' totals, what Ray reports available, and what each node has free (CPU,
    GPU, memory)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = tuple(Resources.from_ray(n["Resources"]) for n in alive)
    try:  # per node: Ray exposes it only as private API
        from ray._private import state as _state

        per_node = _state.available_resources_per_node()
        node_free = tuple(Resources.from_ray(per_node.get(n["NodeID"], {})) for n in alive)
    except Exception as err:  # noqa: BLE001 - without it, admission checks the sum only
        logger.debug("available resources per node not read: %s", err)
        node_free = ()
    return Capacity(nodes, Resources.from_ray(ray.available_resources()), node_free)


def _dashboard_url() -> str:
    """The dashboard's address, from the cluster's own record (a worker's node info can name
    the default port rather than the one the head started with)."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(ray_constants.DASHBOARD_ADDRESS,
                           namespace=ray_constants.KV_NAMESPACE_DASHBOARD)
    if not raw:
        raise ClusterError("the Ray cluster has no dashboard, which runs Ray jobs: start the "
                           "head with the dashboard (ray start --head --include-dashboard=true)")
    url = raw.decode() if isinstance(raw, bytes) else str(raw)
    return url if url.startswith("http") else f"http://{url}"


def _mtp_command() -> list[str]:
    """The ``mtp`` of this Python environment (every node runs the same one)."""
    script = Path(sys.executable).with_name("mtp")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mtp.cli"]


class JobLauncher:
    """Starts, watches and stops the Ray jobs of tasks (Ray's job submission API)."""

    def __init__(self, address: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self._address = address
        self._client: Any = None
        self.env = env or {}

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self._address or _dashboard_url())
        return self._client

    def entrypoint(self, rec: TaskRecord) -> str:
        return shlex.join([*_mtp_command(), "run", rec.config_path, "--storage-path",
                           rec.storage, "--run-name", rec.run_name])

    def start(self, rec: TaskRecord) -> None:
        assert rec.job_id is not None
        env = {**self.env, QUEUE_ENV: f"{rec.id}:{rec.attempts}"}
        try:
            self.client.submit_job(
                entrypoint=self.entrypoint(rec), submission_id=rec.job_id,
                runtime_env={"env_vars": env},
                metadata={"mtp_task": rec.id, "mtp_name": rec.name,
                          "mtp_attempt": str(rec.attempts), "mtp_priority": str(rec.priority)},
                entrypoint_num_cpus=0)
        except Exception as err:
            if "already exists" in str(err):  # started before a restart of the scheduler
                logger.info("job %s already exists", rec.job_id)
                return
            raise

    def status(self, job_id: str) -> tuple[JobStatus, str] | None:
        """The job's status and message; UNKNOWN when Ray has no such job; None when the job
        API did not answer (nothing is concluded from silence)."""
        try:
            info = self.client.get_job_info(job_id)
        except Exception as err:  # noqa: BLE001 - a missing job is an error of the client
            if "status code 404" in str(err) and "does not exist" in str(err):
                return JobStatus.UNKNOWN, "Ray has no such job"
            logger.debug("job %s: status not read: %s", job_id, err)
            self._client = None  # reconnect next time (the dashboard may have restarted)
            return None
        return JobStatus(str(info.status.value if hasattr(info.status, "value")
                             else info.status)), str(info.message or "")

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job; False when the job API did not take the request."""
        try:
            self.client.stop_job(job_id)
            return True
        except Exception as err:  # noqa: BLE001 - ended on its own, or the API is down
            logger.info("job %s not stopped: %s", job_id, err)
            self._client = None
            return False

    def logs(self, job_id: str) -> str:
        try:
            return str(self.client.get_job_logs(job_id))
        except Exception as err:  # noqa: BLE001 - a job that never started has no logs
            logger.debug("job %s: no logs: %s", job_id, err)
            return ""


def _outcome_from_run_dir(rec: TaskRecord) -> Outcome | None:
    """A finished run's summary from its ``result.json`` (when its driver's report was lost)."""
    try:
        r = json.loads((Path(rec.storage) / rec.run_name / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return Outcome(0, "read from its result.json (its driver's report was lost)", {
        "run_dir": r.get("run_dir"), "weights_hash": r.get("weights_hash"),
        "best_metrics": r.get("best_metrics"), "test_metrics": r.get("test_metrics"),
        "epochs_completed": r.get("epochs_completed"), "data_hash": r.get("data_hash"),
        "seed": r.get("seed"), "cache_hit": r.get("cache_hit") is not None})


def _scheduler_metrics() -> dict[str, Any]:
    from ray.util.metrics import Counter as RayCounter
    from ray.util.metrics import Gauge, Histogram

    return {
        "queued": Gauge("mtp_queue_length", description="Tasks waiting, by priority.",
                        tag_keys=("priority",)),
        "running": Gauge("mtp_running_tasks", description="Tasks running."),
        "wait": Histogram("mtp_queue_wait_s", description="Seconds from submit to start.",
                          boundaries=[1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400]),
        "preemptions": RayCounter("mtp_preemptions", description="Tasks asked to stop for a "
                                  "higher-priority task."),
        "refused": RayCounter("mtp_admissions_refused", description="Submissions refused: "
                              "the task can never fit the cluster."),
        "ended": RayCounter("mtp_tasks_ended", description="Tasks ended, by state.",
                            tag_keys=("state",)),
    }


class SchedulerActor:
    """``mtp-scheduler`` (see the module docstring)."""

    def __init__(self, storage: str, url: str, interval_s: float = _INTERVAL_S,
                 policy: SchedulerPolicy | None = None,
                 job_env: dict[str, str] | None = None) -> None:
        self.storage = str(Path(storage).expanduser().resolve())
        self.url = url
        self.interval_s = interval_s
        self.db: Database = open_database(make_url(url))
        self.store = QueueStore(self.db)
        self.scheduler = Scheduler(policy)
        self.scheduler.load(self.store.active())
        self.launcher = JobLauncher(env=job_env)
        self.metrics = LazyMetrics(_scheduler_metrics)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.last_error: str | None = None
        self.steps = 0
        self._needs_reload = False  # a failed write: memory and database may differ
        self._priorities_seen: set[int] = set()
        logger.info("scheduler on %s: %d active tasks", self.db.where, len(self.scheduler.tasks))
        self._thread = threading.Thread(target=self._loop, name="mtp-scheduler", daemon=True)
        self._thread.start()

    # -- requests ------------------------------------------------------------------------------

    def submit(self, sub: Submission) -> TaskRecord:
        """Queue a task (idempotent per ``request_id``); refused when it can never fit."""
        if sub.request_id is not None:
            found = self.store.find_request(sub.request_id)
            if found is not None:
                return found
        problem = capacity_problem(sub.resources, list(cluster_capacity().nodes))
        if problem is not None:
            self.metrics.get()["refused"].inc()
            raise NeverFitsError(f"task {sub.name!r} can never run on this cluster: {problem}")
        qid = sub.id
        folder = Path(self.storage) / "_queue" / qid
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "task.json"
        atomic_write_text(config_path, json.dumps(json.loads(sub.config), indent=1))
        rec = TaskRecord(
            id=qid, name=sub.name, task_id=sub.task_id, priority=sub.priority,
            resources=sub.resources, config=sub.config, config_path=str(config_path),
            storage=self.storage, run_name=f"{sub.task_id}-{qid}", submitter=sub.submitter,
            submitted_at=time.time(), preemptible=sub.preemptible,
            checkpointed=sub.checkpointed, max_attempts=sub.max_attempts,
            max_runtime_s=sub.max_runtime_s, request_id=sub.request_id,
            reason=f"submitted by {sub.submitter}", updated_at=time.time())
        with self._lock:
            rec = self.store.insert(rec)
            if rec.state is QueueState.PENDING and rec.id not in self.scheduler.tasks:
                self.scheduler.submit(rec)
        if rec.id != qid:  # a concurrent submit of the same request queued it first
            shutil.rmtree(folder, ignore_errors=True)
        self._wake.set()
        return rec

    def cancel(self, task_id: str, who: str = "a user") -> TaskRecord:
        with self._lock:
            before = self.scheduler.tasks.get(task_id)
            try:
                rec = self.scheduler.cancel(task_id, who)
            except SchedulerError:
                stored = self._stored(task_id)
                raise TaskEndedError(f"task {task_id} is already {stored.state.value} "
                                     f"({stored.reason}); nothing to cancel") from None
            self._save_or_undo(rec, before)
        if rec.state is QueueState.CANCELLED:
            self.metrics.get()["ended"].inc(tags={"state": rec.state.value})
        self._wake.set()
        return rec

    def set_priority(self, task_id: str, priority: int) -> TaskRecord:
        if not 1 <= priority <= 99:
            raise ConfigError(f"priority {priority} is out of range; allowed: 1 to 99")
        with self._lock:
            before = self.scheduler.tasks.get(task_id)
            try:
                rec = self.scheduler.set_priority(task_id, priority)
            except SchedulerError:
                stored = self._stored(task_id)
                raise TaskEndedError(f"task {task_id} is already {stored.state.value}; its "
                                     "priority no longer matters") from None
            self._save_or_undo(rec, before)
        self._wake.set()
        return rec

    def _save_or_undo(self, rec: TaskRecord, before: TaskRecord | None) -> None:
        """Store a request's change; when that fails, the queue in memory is put back as it
        was (the caller sees the database's error, and nothing changed)."""
        try:
            self.store.save(rec)
        except DatabaseError:
            if before is not None:
                self.scheduler.tasks[rec.id] = before
            raise

    def _stored(self, task_id: str) -> TaskRecord:
        rec = self.store.get(task_id)
        if rec is None:
            raise TaskNotFoundError(f"no task {task_id!r} in the queue (see `mtp queue --all`)")
        return rec

    # -- reads ----------------------------------------------------------------------------------

    def find_request(self, request_id: str) -> TaskRecord | None:
        """The task a submit with ``request_id`` created, if any."""
        return self.store.find_request(request_id)

    def get(self, task_id: str) -> TaskRecord:
        with self._lock:
            live = self.scheduler.tasks.get(task_id)
        return live if live is not None else self._stored(task_id)

    def tasks(self, states: list[str] | None = None, name: str | None = None,
              limit: int | None = None, after_seq: int = 0) -> list[TaskRecord]:
        wanted = [QueueState(s) for s in states] if states else None
        stored = self.store.list(wanted, name, limit, after_seq)
        with self._lock:
            live = dict(self.scheduler.tasks)
        return [live.get(r.id, r) for r in stored]

    def snapshot(self) -> dict[str, Any]:
        """The queue in order, the running tasks and the cluster's resources."""
        capacity = cluster_capacity()
        with self._lock:
            waiting = self.scheduler.waiting()
            running = sorted(self.scheduler.running(), key=lambda t: t.attempt_started_at or 0)
            allocated = self.scheduler.allocated()
            free = self.scheduler.free(capacity)
        return {"waiting": waiting, "running": running, "total": capacity.total,
                "available": capacity.available, "allocated": allocated, "free": free,
                "nodes": len(capacity.nodes), "now": time.time(), "database": self.db.where,
                "storage": self.storage, "last_error": self.last_error, "steps": self.steps}

    def logs(self, task_id: str) -> list[tuple[int, str, str]]:
        """Each attempt's job id and log text, oldest first."""
        rec = self.get(task_id)
        return [(n, rec.job_id_for(n), self.launcher.logs(rec.job_id_for(n)))
                for n in range(1, rec.attempts + 1)]

    def info(self) -> dict[str, str]:
        return {"storage": self.storage, "database": self.db.where,
                "url": make_url(self.url).render_as_string(hide_password=True)}

    def ping(self) -> bool:
        return True

    def shutdown(self) -> None:
        """Stop the loop (``mtp cluster stop``) after its current step; running jobs are
        left to finish."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._needs_reload:
                    self._reload()  # no step on a queue that may differ from the database
                else:
                    self.step()
                self.last_error = None
            except DatabaseError as err:
                self.last_error = str(err)
                logger.error("scheduler step: %s; reloading the queue from the database", err)
                self._needs_reload = True
            except Exception as err:  # noqa: BLE001 - the loop must outlive one bad step
                self.last_error = f"{type(err).__name__}: {err}"
                logger.exception("scheduler step failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def _reload(self) -> None:
        """The queue again from the database (raises its error: the loop tries again)."""
        with self._lock:
            fresh = Scheduler(self.scheduler.policy, self.scheduler.clock)
            fresh.load(self.store.active())
            self.scheduler = fresh
            self._needs_reload = False
        logger.info("queue reloaded from the database: %d active tasks", len(fresh.tasks))

    def _observe(self) -> None:
        with self._lock:
            running = [t for t in self.scheduler.running() if t.job_id]
        if not running:
            return
        reports = self.store.running_reports()
        for rec in running:
            assert rec.job_id is not None
            seen = self.launcher.status(rec.job_id)
            if seen is None:
                continue
            status, message = seen
            progress, outcome = reports.get(rec.id, (None, None))
            if status.ended and outcome is None:  # the driver writes it just before it exits
                outcome = self.store.outcome(rec.id, rec.attempts)
            if status is JobStatus.SUCCEEDED and outcome is None:
                outcome = _outcome_from_run_dir(rec)  # its report was lost: the run says
            with self._lock:
                self.scheduler.observe(rec.id, JobReport(status, progress, outcome, message))

    def step(self) -> StepResult:
        self._observe()
        capacity = cluster_capacity()
        with self._lock:
            result = self.scheduler.step(capacity)
            try:
                self.store.save_many(result.changed)
            except DatabaseError:
                self._needs_reload = True  # nothing of this step is carried out
                raise
        self.steps += 1
        for action in result.actions:
            if action.kind is ActionKind.STOP_JOB:
                assert action.task.job_id is not None
                if not self.launcher.stop(action.task.job_id):
                    with self._lock:
                        self.scheduler.stop_failed(action.task.job_id)  # sent again next step
                continue
            try:
                self.launcher.start(action.task)
            except Exception as err:  # noqa: BLE001 - e.g. the job agent is not up yet
                logger.warning("task %s: job %s not started (%s); queued again",
                               action.task.id, action.task.job_id, err)
                with self._lock:
                    back = self.scheduler.start_failed(action.task.id, str(err))
                    if back is not None:
                        self.store.save(back)
        self._record_metrics(result)
        return result

    def _record_metrics(self, result: StepResult) -> None:
        m = self.metrics.get()
        with self._lock:
            waiting = self.scheduler.waiting()
            running = len(self.scheduler.running())
        by_priority = Counter(t.priority for t in waiting)
        self._priorities_seen |= set(by_priority)  # a priority emptied reads 0, not stale
        for p in self._priorities_seen:
            m["queued"].set(by_priority.get(p, 0), tags={"priority": str(p)})
        m["running"].set(running)
        for rec in result.admitted:
            if rec.attempts == 1:
                m["wait"].observe(max((rec.started_at or 0) - rec.submitted_at, 0.0))
        for _ in result.preempted:
            m["preemptions"].inc()
        for rec in result.changed:
            if rec.state in TERMINAL_STATES:
                m["ended"].inc(tags={"state": rec.state.value})


def find_scheduler() -> Any | None:
    """The running scheduler actor, or None."""
    try:
        return ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def get_scheduler(storage: str | Path, database_url: str | None = None,
                  interval_s: float = _INTERVAL_S,
                  policy: SchedulerPolicy | None = None) -> Any:
    """The cluster's scheduler, started on ``storage``'s platform database if none runs.

    The database is opened here first, so a corrupt or newer one is an error in the caller's
    process (one line), not an actor that cannot start.
    """
    found = find_scheduler()
    if found is not None:
        return found
    storage = Path(storage).expanduser().resolve()
    db = open_database(storage, override=database_url)
    url = db.url.render_as_string(hide_password=False)
    job_env = {"MTP_DATABASE_URL": url} if database_url or os.environ.get(
        "MTP_DATABASE_URL") else {}
    return ray.remote(SchedulerActor).options(
        name=SCHEDULER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=3, num_cpus=0, max_concurrency=32,
        **control_plane_options(),
    ).remote(str(storage), url, interval_s, policy, job_env)


def snapshot_json(snap: dict[str, Any], finished: list[TaskRecord] | None = None
                  ) -> dict[str, Any]:
    """:meth:`SchedulerActor.snapshot` as JSON-ready data."""
    now = snap["now"]
    return {"running": [summarize(r, now) for r in snap["running"]],
            "waiting": [summarize(r, now) for r in snap["waiting"]],
            **({"finished": [summarize(r, now) for r in finished]} if finished is not None
               else {}),
            "cluster": {k: vars(snap[k]) for k in ("total", "allocated", "free", "available")},
            "nodes": snap["nodes"], "database": snap["database"], "storage": snap["storage"],
            "last_error": snap["last_error"]}


def summarize(rec: TaskRecord, now: float) -> dict[str, Any]:
    """A record as JSON-ready data (``mtp status --json``, the API)."""
    d = {
        "id": rec.id, "name": rec.name, "task_id": rec.task_id, "priority": rec.priority,
        "state": rec.state.value, "reason": rec.reason, "submitter": rec.submitter,
        "submitted_at": rec.submitted_at, "started_at": rec.started_at,
        "ended_at": rec.ended_at, "attempts": rec.attempts, "preemptions": rec.preemptions,
        "waited_s": rec.waited_at(now), "ran_s": rec.ran_at(now), "job_id": rec.job_id,
        "run_dir": str(Path(rec.storage) / rec.run_name),
        "resources": {"cpu": rec.demand.cpu, "gpu": rec.demand.gpu,
                      "memory": rec.demand.memory},
        "progress": (json.loads(rec.progress.to_json()) if rec.progress else None),
        "request": rec.request.value if rec.request else None,
        "result": rec.result, "error": rec.error,
    }
    return d
