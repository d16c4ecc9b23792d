"""``mtp serve``: the ``mtp.v1`` gRPC API over the scheduler and the model registry.

A thin layer: every call is one call of :mod:`mtp.queue` (the cluster's ``mtp-scheduler``
actor) or of the model registry, its errors mapped to status codes with the same one-line
message the CLI prints. Around it: a bearer token on every call (:mod:`mtp.api.auth`), TLS
when a certificate and key are given, the standard health-checking and reflection services,
deadlines passed down to the calls into Ray, and a shutdown (SIGTERM) that ends open
``WatchTask`` streams with status ``UNAVAILABLE`` before the server stops.

Lifecycle: :func:`start_server` connects nothing itself (the caller has joined the cluster),
builds the servicers and the ``grpc.Server``, binds and starts it; :meth:`ApiServer.stop`
ends the streams, then stops the server with a grace period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cluster.queue import TERMINAL_STATES, TaskRecord
from cluster.scheduler_actor import NeverFitsError, TaskEndedError, TaskNotFoundError
from mtp import queue
from mtp.api.auth import TokenInterceptor
from mtp.api.convert import (
    comparison_pb,
    progress_pb,
    resources_pb,
    state_of,
    task_pb,
    version_pb,
)
from mtp.v1 import registry_pb2, registry_pb2_grpc, training_pb2, training_pb2_grpc
from mtp_core.config_file import parse_yaml
from mtp_core.errors import InputError, MtpError, raised_error
from mtp_core.spec import apply_overrides, parse_task

__all__ = ["DEFAULT_PORT", "ApiServer", "ServerConfig", "start_server"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 50051
WATCH_POLL_S = 0.25  # how often a watch looks at its task (the scheduler steps every 0.5 s)
_MAX_PAGE = 1000
_SERVICES = ("mtp.v1.TrainingService", "mtp.v1.ModelRegistry")

T = TypeVar("T")


def _status_of(err: BaseException) -> grpc.StatusCode:
    cause = raised_error(err)
    if isinstance(cause, TaskNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(cause, NeverFitsError | TaskEndedError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if type(cause).__name__ == "ModelNotFoundError":
        return grpc.StatusCode.NOT_FOUND
    if isinstance(cause, InputError | ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(cause, TimeoutError) or type(cause).__name__ in (
            "GetTimeoutError", "RayActorError", "ActorDiedError", "ActorUnavailableError"):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(cause, MtpError):
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.UNKNOWN


def _message(err: BaseException) -> str:
    """The line the CLI prints after ``mtp: error: `` (one line, no remote traceback)."""
    from mtp.cli import _error_message

    text = _error_message(err)
    return text.splitlines()[0] if text else type(err).__name__


def _call(context: grpc.ServicerContext, fn: Callable[[float | None], T]) -> T:
    """Run ``fn(timeout_s)`` within the call's deadline; errors become status codes."""
    remaining = context.time_remaining()
    timeout = None if remaining is None or remaining > 1e9 else max(remaining, 0.001)
    try:
        return fn(timeout)
    except Exception as err:  # noqa: BLE001 - every error becomes a status, never a traceback
        code = _status_of(err)
        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
            logger.exception("API call failed")
        context.abort(code, _message(err))
        raise AssertionError("unreachable") from None  # abort raises


def _config(request: training_pb2.SubmitTaskRequest) -> dict[str, Any]:
    which = request.WhichOneof("config")
    if which == "config_struct":
        raw: Any = json_format.MessageToDict(request.config_struct)
    elif which == "config_text":  # JSON is YAML; the CLI's bounded, duplicate-refusing reader
        raw = parse_yaml(request.config_text, "the request's config_text")
    else:
        raise InputError("config: give config_text (YAML or JSON) or config_struct")
    if not isinstance(raw, dict):
        raise InputError(f"config: expected a mapping of task fields, got "
                         f"{type(raw).__name__}")
    return raw


@dataclass
class _Watches:
    """Open WatchTask streams (the server frees each when its client goes away)."""

    limit: int  # the server's threads minus those kept for the other calls
    active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    def try_add(self) -> bool:
        """Count one more open stream, unless ``limit`` are open (a watch holds one of the
        server's threads for as long as it is open: unlimited, they would leave no thread
        for any other call, the health check included)."""
        with self.lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """One stream ended."""
        with self.lock:
            self.active -= 1

    @classmethod
    def for_threads(cls, max_workers: int) -> _Watches:
        """A quarter of the server's threads (at least 4) stay for the other calls."""
        return cls(limit=max(max_workers - max(max_workers // 4, 4), 1))


class TrainingService(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, storage: str | None, watches: _Watches) -> None:
        self.storage = storage
        self.watches = watches

    def SubmitTask(self, request: training_pb2.SubmitTaskRequest,  # noqa: N802 - gRPC's name
                   context: grpc.ServicerContext) -> training_pb2.SubmitTaskResponse:
        def submit(timeout: float | None) -> training_pb2.SubmitTaskResponse:
            raw = apply_overrides(_config(request), list(request.overrides))
            raw.pop("search", None)  # a study config's base task, as `mtp submit` reads it
            task = parse_task(raw, origin=request.origin or "the request's config",
                              base_dir=Path.cwd())
            if request.priority and not 1 <= request.priority <= 99:
                raise InputError(f"priority {request.priority} is out of range; allowed: 1 "
                                 "to 99 (0: the task's scheduling.priority)")
            rid = request.request_id or None
            # a retry finds its task without the data checks (its files may have moved since)
            before = queue.find_request(rid, timeout) if rid else None
            if before is not None:
                rec, created = before, False
            else:  # `created` from the scheduler: another submit may have just won the race
                rec, created = queue.submit_created(task, priority=request.priority or None,
                                                    storage=self.storage, request_id=rid,
                                                    timeout_s=timeout)
            return training_pb2.SubmitTaskResponse(task=task_pb(rec, time.time()),
                                                   created=created)

        return _call(context, submit)

    def GetTask(self, request: training_pb2.GetTaskRequest,  # noqa: N802
                context: grpc.ServicerContext) -> training_pb2.Task:
        return _call(context, lambda t: task_pb(queue.get_task(request.id, t), time.time()))

    def ListTasks(self, request: training_pb2.ListTasksRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> training_pb2.ListTasksResponse:
        def page(timeout: float | None) -> training_pb2.ListTasksResponse:
            size = request.page_size or 100
            if not 0 < size <= _MAX_PAGE:
                raise InputError(f"page_size {size} is out of range; allowed: 1 to "
                                 f"{_MAX_PAGE} (0: 100)")
            try:
                after = int(request.page_token or "0")
            except ValueError:
                raise InputError(f"page_token {request.page_token!r} is not a token this "
                                 "server gave") from None
            states = [state_of(s) for s in request.states] or None
            found = queue.tasks(states, request.name or None, size + 1, after, timeout)
            now = time.time()
            more = len(found) > size
            found = found[:size]
            return training_pb2.ListTasksResponse(
                tasks=[task_pb(r, now) for r in found],
                next_page_token=str(found[-1].seq) if more and found else "")

        return _call(context, page)

    def CancelTask(self, request: training_pb2.CancelTaskRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> training_pb2.Task:
        who = _caller(context)
        return _call(context, lambda t: task_pb(queue.cancel(request.id, who, t), time.time()))

    def UpdatePriority(self, request: training_pb2.UpdatePriorityRequest,  # noqa: N802
                       context: grpc.ServicerContext) -> training_pb2.Task:
        def update(timeout: float | None) -> training_pb2.Task:
            if not 1 <= request.priority <= 99:
                raise InputError(f"priority {request.priority} is out of range; allowed: 1 "
                                 "to 99")
            return task_pb(queue.set_priority(request.id, request.priority, timeout),
                           time.time())

        return _call(context, update)

    def GetQueue(self, request: training_pb2.GetQueueRequest,  # noqa: N802
                 context: grpc.ServicerContext) -> training_pb2.Queue:
        def snapshot(timeout: float | None) -> training_pb2.Queue:
            snap = queue.snapshot(timeout)
            now = snap["now"]
            return training_pb2.Queue(
                running=[task_pb(r, now) for r in snap["running"]],
                waiting=[task_pb(r, now) for r in snap["waiting"]],
                total=resources_pb(snap["total"]), allocated=resources_pb(snap["allocated"]),
                free=resources_pb(snap["free"]), available=resources_pb(snap["available"]),
                nodes=snap["nodes"], last_error=snap.get("last_error") or "")

        return _call(context, snapshot)

    def WatchTask(self, request: training_pb2.WatchTaskRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> Iterator[training_pb2.TaskEvent]:
        rec = _call(context, lambda t: queue.get_task(request.id, t))
        if not self.watches.try_add():
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.watches.limit} WatchTask streams are open, the most this "
                          "server serves at once (each holds a thread); close one, or poll "
                          "GetTask, or start the server with a larger --max-workers")
        gone = threading.Event()
        context.add_callback(gone.set)  # the client went away, or the deadline passed
        try:
            yield from self._events(request, context, rec, gone)
        finally:
            self.watches.release()

    def _events(self, request: training_pb2.WatchTaskRequest, context: grpc.ServicerContext,
                rec: TaskRecord, gone: threading.Event) -> Iterator[training_pb2.TaskEvent]:
        yield training_pb2.TaskEvent(task=task_pb(rec, time.time()), at=time.time())
        seen = _Seen.of(rec)
        logs: dict[int, int] = {}  # attempt -> lines sent
        while True:
            ended = rec.state in TERMINAL_STATES
            if request.logs:
                yield from _new_log_lines(request.id, logs, context)
            if ended or request.once:
                return
            if gone.wait(WATCH_POLL_S) or not context.is_active():
                return
            if self.watches.closing.is_set():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; "
                              "watch the task again on a running server")
            rec = _call(context, lambda t: queue.get_task(request.id, t))
            now = time.time()
            if rec.progress is not None and rec.progress != seen.progress:
                yield training_pb2.TaskEvent(progress=progress_pb(rec.progress), at=now)
            if _Seen.of(rec).record != seen.record:
                yield training_pb2.TaskEvent(task=task_pb(rec, now), at=now)
            seen = _Seen.of(rec)


@dataclass(frozen=True)
class _Seen:
    """What a watch has sent: the record's fields that make a `task` event, and progress."""

    record: tuple[Any, ...]
    progress: Any

    @classmethod
    def of(cls, rec: TaskRecord) -> _Seen:
        return cls((rec.state, rec.reason, rec.priority, rec.attempts, rec.request, rec.job_id,
                    rec.error), rec.progress)


def _new_log_lines(task_id: str, sent: dict[int, int], context: grpc.ServicerContext
                   ) -> Iterator[training_pb2.TaskEvent]:
    for attempt, _, text in _call(context, lambda t: queue.task_logs(task_id, t)):
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            lines = lines[:-1]  # a line still being written is sent once it is whole
        new = lines[sent.get(attempt, 0):]
        if new:
            sent[attempt] = sent.get(attempt, 0) + len(new)
            yield training_pb2.TaskEvent(log=training_pb2.LogLines(attempt=attempt, lines=new),
                                         at=time.time())


def _version_ref(ref: str) -> str:
    """A version reference as the registry reads it: the protos' ``NAME/VERSION`` is
    ``models:/NAME/VERSION``; ``NAME@ALIAS``, ``NAME@VERSION`` and ``models:/`` URIs pass as
    they are (a bad one is refused by the registry, naming the forms it takes)."""
    text = ref.strip()
    _, slash, tail = text.partition("/")
    if slash and "@" not in text and ":" not in text and tail.isdigit():
        return f"models:/{text}"
    return ref


def _caller(context: grpc.ServicerContext) -> str:
    return f"an API client at {context.peer()}"


class ModelRegistryService(registry_pb2_grpc.ModelRegistryServicer):
    def __init__(self, storage: str | None, tracking_uri: str | None) -> None:
        self.storage = storage
        self.tracking_uri = tracking_uri
        self._registry: Any = None

    def registry(self) -> Any:
        if self._registry is None:
            from mtp.models import open_model_registry
            from trainer.api import resolve_storage

            self._registry = open_model_registry(resolve_storage(self.storage),
                                                 self.tracking_uri)
        return self._registry

    def ListModels(self, request: registry_pb2.ListModelsRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> registry_pb2.ListModelsResponse:
        def models(_: float | None) -> registry_pb2.ListModelsResponse:
            reg = self.registry()
            out = []
            for name in reg.models():
                versions = reg.versions(name)
                out.append(registry_pb2.RegisteredModel(
                    name=name, versions=len(versions),
                    latest_version=versions[-1].version if versions else 0,
                    aliases={a: v.version for v in versions for a in v.aliases}))
            return registry_pb2.ListModelsResponse(models=out)

        return _call(context, models)

    def ListVersions(self, request: registry_pb2.ListVersionsRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> registry_pb2.ListVersionsResponse:
        return _call(context, lambda _: registry_pb2.ListVersionsResponse(
            versions=[version_pb(v) for v in self.registry().versions(request.name)]))

    def GetVersion(self, request: registry_pb2.GetVersionRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> registry_pb2.ModelVersion:
        return _call(context, lambda _: version_pb(
            self.registry().resolve(_version_ref(request.ref))))

    def SetAlias(self, request: registry_pb2.SetAliasRequest,  # noqa: N802
                 context: grpc.ServicerContext) -> registry_pb2.ModelVersion:
        def move(_: float | None) -> registry_pb2.ModelVersion:
            reg = self.registry()
            reg.set_alias(request.name, request.version, request.alias,
                          reason=request.reason or "set through the API", user=_caller(context))
            return version_pb(reg.get(request.name, request.version))

        return _call(context, move)

    def CompareVersions(self, request: registry_pb2.CompareVersionsRequest,  # noqa: N802
                        context: grpc.ServicerContext) -> registry_pb2.Comparison:
        def compare(_: float | None) -> registry_pb2.Comparison:
            from mtp.models import compare_versions
            from trainer.api import resolve_storage

            storage = resolve_storage(self.storage)
            reg = self.registry()
            ref_a, ref_b = _version_ref(request.a), _version_ref(request.b)
            a, b = reg.resolve(ref_a), reg.resolve(ref_b)
            c = compare_versions(ref_a, ref_b, storage=storage,
                                 tracking_uri=self.tracking_uri,
                                 data=Path(request.data_path) if request.data_path else None)
            return comparison_pb(c, a, b)

        return _call(context, compare)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str = ""
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    storage: str | None = None  # the registry's storage (default: the scheduler's)
    tracking_uri: str | None = None
    max_workers: int = 64


class ApiServer:
    """A started server; :meth:`stop` ends the open watches, then the server."""

    def __init__(self, server: grpc.Server, port: int, watches: _Watches,
                 health_servicer: health.HealthServicer) -> None:
        self.server = server
        self.port = port
        self.watches = watches
        self.health = health_servicer

    @property
    def active_watches(self) -> int:
        return self.watches.active

    def stop(self, grace_s: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.watches.closing.set()  # each open watch ends with UNAVAILABLE at its next look
        deadline = time.monotonic() + grace_s
        while self.watches.active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.server.stop(max(deadline - time.monotonic(), 0.0)).wait()

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_server(config: ServerConfig) -> ApiServer:
    """Build, bind and start the server (the caller is connected to the cluster)."""
    if not config.token:
        raise InputError("mtp serve needs a token: set MTP_API_TOKEN or give --token-file "
                         "(every call must send `authorization: Bearer <token>`)")
    storage = config.storage
    if storage is None:
        try:
            storage = queue.scheduler(create=False).info.remote()
            import ray

            storage = ray.get(storage, timeout=60)["storage"]
        except MtpError:
            storage = None  # no scheduler yet: the default storage
    watches = _Watches.for_threads(config.max_workers)
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=config.max_workers,
                                            thread_name_prefix="mtp-api"),
                         interceptors=[TokenInterceptor(config.token)],
                         maximum_concurrent_rpcs=config.max_workers * 4)
    training_pb2_grpc.add_TrainingServiceServicer_to_server(
        TrainingService(storage, watches), server)
    registry_pb2_grpc.add_ModelRegistryServicer_to_server(
        ModelRegistryService(storage, config.tracking_uri), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*_SERVICES, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{config.host}:{config.port}" if ":" not in config.host else \
        f"[{config.host}]:{config.port}"
    if config.tls_cert is not None and config.tls_key is not None:
        creds = grpc.ssl_server_credentials([(config.tls_key, config.tls_cert)])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise InputError(f"--host {config.host} --port {config.port}: cannot listen there "
                         "(in use, or not an address of this machine)")
    server.start()
    logger.info("mtp API on %s:%d (%s)", config.host, port,
                "TLS" if config.tls_cert else "plaintext")
    return ApiServer(server, port, watches, health_servicer)
