from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]
    TASK_STATE_PREEMPTED: _ClassVar[TaskState]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_PREEMPTED: TaskState

class Resources(_message.Message):
    __slots__ = ("cpu", "gpu", "memory_bytes", "workers")
    CPU_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    gpu: float
    memory_bytes: float
    workers: int
    def __init__(self, cpu: _Optional[float] = ..., gpu: _Optional[float] = ..., memory_bytes: _Optional[float] = ..., workers: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("epoch", "epochs", "percent", "metrics", "checkpoint_epoch", "at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    epochs: int
    percent: float
    metrics: _containers.ScalarMap[str, float]
    checkpoint_epoch: int
    at: float
    def __init__(self, epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., percent: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., checkpoint_epoch: _Optional[int] = ..., at: _Optional[float] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("weights_hash", "best_metrics", "test_metrics", "epochs_completed", "run_dir", "data_hash", "seed", "cache_hit")
    class BestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WEIGHTS_HASH_FIELD_NUMBER: _ClassVar[int]
    BEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    TEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    DATA_HASH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    weights_hash: str
    best_metrics: _containers.ScalarMap[str, float]
    test_metrics: _containers.ScalarMap[str, float]
    epochs_completed: int
    run_dir: str
    data_hash: str
    seed: str
    cache_hit: bool
    def __init__(self, weights_hash: _Optional[str] = ..., best_metrics: _Optional[_Mapping[str, float]] = ..., test_metrics: _Optional[_Mapping[str, float]] = ..., epochs_completed: _Optional[int] = ..., run_dir: _Optional[str] = ..., data_hash: _Optional[str] = ..., seed: _Optional[str] = ..., cache_hit: _Optional[bool] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "name", "task_id", "priority", "state", "reason", "submitter", "submitted_at", "started_at", "ended_at", "attempts", "max_attempts", "preemptions", "waited_s", "ran_s", "resources", "progress", "job_id", "run_dir", "result", "error", "stop_request", "preemptible", "max_runtime_s", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    WAITED_S_FIELD_NUMBER: _ClassVar[int]
    RAN_S_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNTIME_S_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    task_id: str
    priority: int
    state: TaskState
    reason: str
    submitter: str
    submitted_at: float
    started_at: float
    ended_at: float
    attempts: int
    max_attempts: int
    preemptions: int
    waited_s: float
    ran_s: float
    resources: Resources
    progress: Progress
    job_id: str
    run_dir: str
    result: TaskResult
    error: str
    stop_request: str
    preemptible: bool
    max_runtime_s: float
    request_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., task_id: _Optional[str] = ..., priority: _Optional[int] = ..., state: _Optional[_Union[TaskState, str]] = ..., reason: _Optional[str] = ..., submitter: _Optional[str] = ..., submitted_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., preemptions: _Optional[int] = ..., waited_s: _Optional[float] = ..., ran_s: _Optional[float] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., job_id: _Optional[str] = ..., run_dir: _Optional[str] = ..., result: _Optional[_Union[TaskResult, _Mapping]] = ..., error: _Optional[str] = ..., stop_request: _Optional[str] = ..., preemptible: _Optional[bool] = ..., max_runtime_s: _Optional[float] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitTaskRequest(_message.Message):
    __slots__ = ("config_text", "config_struct", "priority", "request_id", "overrides", "origin")
    CONFIG_TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_STRUCT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    config_text: str
    config_struct: _struct_pb2.Struct
    priority: int
    request_id: str
    overrides: _containers.RepeatedScalarFieldContainer[str]
    origin: str
    def __init__(self, config_text: _Optional[str] = ..., config_struct: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[int] = ..., request_id: _Optional[str] = ..., overrides: _Optional[_Iterable[str]] = ..., origin: _Optional[str] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("task", "created")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    task: Task
    created: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("states", "name", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    name: str
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UpdatePriorityRequest(_message.Message):
    __slots__ = ("id", "priority")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    priority: int
    def __init__(self, id: _Optional[str] = ..., priority: _Optional[int] = ...) -> None: ...

class GetQueueRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Queue(_message.Message):
    __slots__ = ("running", "waiting", "total", "allocated", "free", "available", "nodes", "last_error")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    running: _containers.RepeatedCompositeFieldContainer[Task]
    waiting: _containers.RepeatedCompositeFieldContainer[Task]
    total: Resources
    allocated: Resources
    free: Resources
    available: Resources
    nodes: int
    last_error: str
    def __init__(self, running: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., waiting: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., total: _Optional[_Union[Resources, _Mapping]] = ..., allocated: _Optional[_Union[Resources, _Mapping]] = ..., free: _Optional[_Union[Resources, _Mapping]] = ..., available: _Optional[_Union[Resources, _Mapping]] = ..., nodes: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("id", "logs", "once")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    ONCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    logs: bool
    once: bool
    def __init__(self, id: _Optional[str] = ..., logs: _Optional[bool] = ..., once: _Optional[bool] = ...) -> None: ...

class LogLines(_message.Message):
    __slots__ = ("attempt", "lines")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attempt: _Optional[int] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task", "progress", "log", "at")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    task: Task
    progress: Progress
    log: LogLines
    at: float
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., log: _Optional[_Union[LogLines, _Mapping]] = ..., at: _Optional[float] = ...) -> None: ...
