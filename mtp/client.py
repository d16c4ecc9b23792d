"""A Python client of the platform's gRPC API (``mtp serve``), for driver scripts::

    from mtp.client import Client

    with Client("head:50051", token=os.environ["MTP_API_TOKEN"]) as api:
        task = api.submit("examples/digits_mlp.yaml", priority=80, request_id="nightly-42")
        for event in api.watch(task.id):            # state changes, epochs, log lines
            print(event)
        print(api.get(task.id).result.weights_hash)
        print(api.version("digits@champion").metrics)

Each method is one call of ``mtp.v1`` (``proto/mtp/v1``) and returns its message. A refused
call raises :class:`ApiError` with the status code and the server's one-line message; the
ones caused by the request (``INVALID_ARGUMENT``, ``NOT_FOUND``, ``FAILED_PRECONDITION``) are
also :class:`mtp.InputError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from mtp.v1 import registry_pb2, registry_pb2_grpc, training_pb2, training_pb2_grpc
from mtp_core.errors import InputError, MtpError

__all__ = ["ApiError", "ApiInputError", "Client"]

TOKEN_ENV = "MTP_API_TOKEN"
_INPUT_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED)


class ApiError(MtpError):
    """A call the server refused or could not serve."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str) -> None:
        super().__init__(f"{target}: {code.name}: {details}")
        self.code = code
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.details, ""))


class ApiInputError(ApiError, InputError):
    """Refused because of the request: a bad config, an unknown id, a finished task, a task
    that can never fit, a wrong token."""


class Client:
    """A channel to one server, with its token sent on every call."""

    def __init__(self, target: str = "127.0.0.1:50051", *, token: str | None = None,
                 tls_ca: bytes | str | Path | None = None, timeout_s: float = 60.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if tls_ca is not None:
            ca = tls_ca if isinstance(tls_ca, bytes) else Path(tls_ca).read_bytes()
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca))
        else:
            self.channel = grpc.insecure_channel(target)
        self.training = training_pb2_grpc.TrainingServiceStub(self.channel)
        self.registry = registry_pb2_grpc.ModelRegistryStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _unary(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        try:
            return method(request, metadata=self._metadata,
                          timeout=self.timeout_s if timeout_s is None else timeout_s)
        except grpc.RpcError as err:
            raise self._error(err) from None

    def _error(self, err: grpc.RpcError) -> ApiError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = err.details() if hasattr(err, "details") else str(err)
        cls = ApiInputError if code in _INPUT_CODES else ApiError
        return cls(code, details or "", self.target)

    # -- tasks ---------------------------------------------------------------------------------

    def submit(self, config: str | Path | Mapping[str, Any] | Any, *, priority: int = 0,
               request_id: str = "", overrides: Iterable[str] = ()
               ) -> training_pb2.Task:
        """Queue a task: a config file's path (read here), YAML/JSON text, a mapping of task
        fields, or a ``TrainingTask``. Returns it as queued (or, for a ``request_id`` seen
        before, the task that request created)."""
        request = training_pb2.SubmitTaskRequest(priority=priority, request_id=request_id,
                                                 overrides=list(overrides))
        if hasattr(config, "canonical_dict"):
            config = config.canonical_dict()
        if isinstance(config, Mapping):
            struct = struct_pb2.Struct()
            struct.update(json.loads(json.dumps(dict(config))))
            request.config_struct.CopyFrom(struct)
        elif isinstance(config, Path) or (isinstance(config, str) and "\n" not in config
                                          and Path(config).is_file()):
            request.config_text = Path(config).read_text(encoding="utf-8")
            request.origin = str(config)  # errors name the file, as the CLI's do
        else:
            request.config_text = str(config)
        response = self._unary(self.training.SubmitTask, request)
        task: training_pb2.Task = response.task
        return task

    def get(self, task_id: str) -> training_pb2.Task:
        task: training_pb2.Task = self._unary(self.training.GetTask,
                                              training_pb2.GetTaskRequest(id=task_id))
        return task

    def tasks(self, states: Iterable[int] = (), name: str = "", page_size: int = 100
              ) -> Iterator[training_pb2.Task]:
        """Every matching task, in submit order, page by page."""
        token = ""
        while True:
            page = self._unary(self.training.ListTasks, training_pb2.ListTasksRequest(
                states=list(states), name=name,  # type: ignore[arg-type]
                page_size=page_size, page_token=token))
            yield from page.tasks
            token = page.next_page_token
            if not token:
                return

    def queue(self) -> training_pb2.Queue:
        found: training_pb2.Queue = self._unary(self.training.GetQueue,
                                                training_pb2.GetQueueRequest())
        return found

    def cancel(self, task_id: str) -> training_pb2.Task:
        task: training_pb2.Task = self._unary(self.training.CancelTask,
                                              training_pb2.CancelTaskRequest(id=task_id))
        return task

    def set_priority(self, task_id: str, priority: int) -> training_pb2.Task:
        task: training_pb2.Task = self._unary(
            self.training.UpdatePriority,
            training_pb2.UpdatePriorityRequest(id=task_id, priority=priority))
        return task

    def watch(self, task_id: str, *, logs: bool = False, once: bool = False,
              timeout_s: float | None = None) -> Iterator[training_pb2.TaskEvent]:
        """The task's events until it ends (``once``: the task and its log lines as they are
        now; ``timeout_s``: the stream's deadline, none by default)."""
        call = self.training.WatchTask(
            training_pb2.WatchTaskRequest(id=task_id, logs=logs, once=once),
            metadata=self._metadata, timeout=timeout_s)
        try:
            yield from call
        except grpc.RpcError as err:
            raise self._error(err) from None
        finally:
            call.cancel()  # a consumer that stops early frees the server's stream

    # -- the model registry ---------------------------------------------------------------------

    def models(self) -> list[registry_pb2.RegisteredModel]:
        return list(self._unary(self.registry.ListModels,
                                registry_pb2.ListModelsRequest()).models)

    def versions(self, name: str) -> list[registry_pb2.ModelVersion]:
        return list(self._unary(self.registry.ListVersions,
                                registry_pb2.ListVersionsRequest(name=name)).versions)

    def version(self, ref: str) -> registry_pb2.ModelVersion:
        """``NAME@ALIAS`` or ``NAME/VERSION``."""
        found: registry_pb2.ModelVersion = self._unary(
            self.registry.GetVersion, registry_pb2.GetVersionRequest(ref=ref))
        return found

    def set_alias(self, name: str, alias: str, version: int, reason: str = ""
                  ) -> registry_pb2.ModelVersion:
        found: registry_pb2.ModelVersion = self._unary(
            self.registry.SetAlias, registry_pb2.SetAliasRequest(
                name=name, alias=alias, version=version, reason=reason))
        return found

    def compare(self, a: str, b: str, data_path: str = "") -> registry_pb2.Comparison:
        found: registry_pb2.Comparison = self._unary(
            self.registry.CompareVersions,
            registry_pb2.CompareVersionsRequest(a=a, b=b, data_path=data_path),
            timeout_s=max(self.timeout_s, 600.0))
        return found
