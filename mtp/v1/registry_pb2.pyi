from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisteredModel(_message.Message):
    __slots__ = ("name", "versions", "latest_version", "aliases")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: int
    latest_version: int
    aliases: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[int] = ..., latest_version: _Optional[int] = ..., aliases: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "run_dir", "run_id", "tags", "metrics", "aliases", "parent_version", "relation", "changes", "verified", "created_at", "created_by")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ChangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    run_dir: str
    run_id: str
    tags: _containers.ScalarMap[str, str]
    metrics: _containers.ScalarMap[str, float]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    parent_version: int
    relation: str
    changes: _containers.ScalarMap[str, str]
    verified: bool
    created_at: float
    created_by: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., run_dir: _Optional[str] = ..., run_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., aliases: _Optional[_Iterable[str]] = ..., parent_version: _Optional[int] = ..., relation: _Optional[str] = ..., changes: _Optional[_Mapping[str, str]] = ..., verified: _Optional[bool] = ..., created_at: _Optional[float] = ..., created_by: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RegisteredModel]
    def __init__(self, models: _Optional[_Iterable[_Union[RegisteredModel, _Mapping]]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("name", "alias", "version", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    version: int
    reason: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CompareVersionsRequest(_message.Message):
    __slots__ = ("a", "b", "data_path")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    DATA_PATH_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    data_path: str
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., data_path: _Optional[str] = ...) -> None: ...

class MetricComparison(_message.Message):
    __slots__ = ("metric", "a", "b", "difference")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    a: float
    b: float
    difference: float
    def __init__(self, metric: _Optional[str] = ..., a: _Optional[float] = ..., b: _Optional[float] = ..., difference: _Optional[float] = ...) -> None: ...

class Comparison(_message.Message):
    __slots__ = ("a", "b", "rows", "data_source", "metrics", "test", "statistic", "p_value", "interval_low", "interval_high", "significant", "summary", "notes")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LOW_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_HIGH_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    a: ModelVersion
    b: ModelVersion
    rows: int
    data_source: str
    metrics: _containers.RepeatedCompositeFieldContainer[MetricComparison]
    test: str
    statistic: float
    p_value: float
    interval_low: float
    interval_high: float
    significant: bool
    summary: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, a: _Optional[_Union[ModelVersion, _Mapping]] = ..., b: _Optional[_Union[ModelVersion, _Mapping]] = ..., rows: _Optional[int] = ..., data_source: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[MetricComparison, _Mapping]]] = ..., test: _Optional[str] = ..., statistic: _Optional[float] = ..., p_value: _Optional[float] = ..., interval_low: _Optional[float] = ..., interval_high: _Optional[float] = ..., significant: _Optional[bool] = ..., summary: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...
