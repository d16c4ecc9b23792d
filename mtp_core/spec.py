"""The training task specification: what a user hands the platform.

A :class:`TrainingTask` is loaded from YAML or JSON (``load_task``), optionally patched with
``--set key.sub=value`` overrides, and validated by pydantic. Every model forbids unknown fields,
so a typo is an error that names the field rather than a silently ignored setting.
"""

from __future__ import annotations

import enum
import json
import math
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from mtp_core.base import StrictModel
from mtp_core.consistency_spec import ConsistencySpec
from mtp_core.direction import Direction
from mtp_core.errors import ConfigError

__all__ = [
    "Activation",
    "CheckpointPolicy",
    "Compression",
    "DatasetSpec",
    "EarlyStopping",
    "FailureSpec",
    "FaultToleranceSpec",
    "FileDataset",
    "Hyperparameters",
    "LossName",
    "MigrationStrategy",
    "ModelSpec",
    "MonitorSpec",
    "OptimizerName",
    "PSMode",
    "ParameterServerSpec",
    "ResourcesSpec",
    "SklearnDataset",
    "Strategy",
    "SyntheticDataset",
    "TaskKind",
    "TrainingSpec",
    "TrainingTask",
    "apply_overrides",
    "format_validation_error",
    "load_raw_config",
    "load_task",
    "parse_task",
    "set_dotted",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TaskKind(enum.StrEnum):
    """What the target column holds."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class OptimizerName(enum.StrEnum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class LossName(enum.StrEnum):
    AUTO = "auto"
    CROSS_ENTROPY = "cross_entropy"
    MSE = "mse"
    L1 = "l1"
    HUBER = "huber"


class Activation(enum.StrEnum):
    RELU = "relu"
    GELU = "gelu"
    TANH = "tanh"
    SIGMOID = "sigmoid"


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    LZMA = "lzma"


# ---------------------------------------------------------------------------------------------
# Models


class LinearModel(StrictModel):
    """A single affine layer: linear regression, or softmax (logistic) regression on logits."""

    type: Literal["linear", "logistic_regression"]


class MLPModel(StrictModel):
    """Fully connected network: ``Linear -> activation -> dropout`` per hidden size."""

    type: Literal["mlp"]
    hidden_sizes: list[Annotated[int, Field(gt=0, le=65536)]] = Field(
        default_factory=lambda: [128], min_length=1, description="Width of each hidden layer."
    )
    activation: Activation = Activation.RELU
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


class CNNModel(StrictModel):
    """Small conv net for image-shaped inputs (``dataset.image_shape`` or digits as 1x8x8)."""

    type: Literal["cnn"]
    channels: list[Annotated[int, Field(gt=0, le=4096)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, description="Channels per conv block."
    )
    kernel_size: int = Field(3, ge=1, le=15)
    hidden_size: int = Field(64, gt=0, le=65536, description="Width of the dense layer.")
    activation: Activation = Activation.RELU
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel_size must be odd so 'same' padding is exact, got {v}")
        return v


ModelSpec = Annotated[LinearModel | MLPModel | CNNModel, Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------
# Datasets


class _DatasetCommon(StrictModel):
    standardize: bool = Field(
        True,
        description="Scale features to zero mean, unit variance using train-split statistics; "
        "the statistics are stored in the model so the exported model takes raw inputs.",
    )
    image_shape: tuple[int, int, int] | None = Field(
        None, description="(channels, height, width) of each sample, needed by model.type=cnn."
    )
    max_samples: int | None = Field(
        None, gt=0, description="Use only the first N rows (after loading, before splitting)."
    )


class SklearnDataset(_DatasetCommon):
    """A dataset bundled with scikit-learn (no download needed)."""

    source: Literal["sklearn"]
    name: Literal["digits", "breast_cancer", "wine", "iris", "diabetes"]


class SyntheticDataset(_DatasetCommon):
    """Generated data (scikit-learn's make_classification / make_regression), any size."""

    source: Literal["synthetic"]
    kind: TaskKind = TaskKind.CLASSIFICATION
    n_samples: int = Field(1000, gt=0, le=100_000_000)
    n_features: int = Field(20, gt=0, le=100_000)
    n_classes: int = Field(2, ge=2, le=10_000, description="Classification only.")
    n_informative: int | None = Field(None, gt=0, description="Default: half of n_features.")
    noise: float = Field(0.1, ge=0.0, description="Regression: std of the Gaussian noise.")
    seed: int = Field(0, ge=0, lt=2**32, description="Generator seed (part of the data).")

    @model_validator(mode="after")
    def _check_informative(self) -> SyntheticDataset:
        if self.n_informative is not None and self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative={self.n_informative} exceeds n_features={self.n_features}"
            )
        return self


class FileDataset(_DatasetCommon):
    """A Parquet or CSV table read with pyarrow: feature columns plus one target column."""

    source: Literal["parquet", "csv"]
    path: Path = Field(description="File path; relative paths are taken from the config's folder.")
    target: str = Field(min_length=1, description="Name of the label/target column.")
    features: list[str] | None = Field(
        None, min_length=1, description="Feature columns (default: every column but target)."
    )
    kind: TaskKind | None = Field(
        None, description="classification or regression (default: regression for float targets)."
    )


DatasetSpec = Annotated[
    SklearnDataset | SyntheticDataset | FileDataset, Field(discriminator="source")
]


# ---------------------------------------------------------------------------------------------
# Training


class Hyperparameters(StrictModel):
    """Optimizer hyperparameters beyond the learning rate."""

    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD only.")
    nesterov: bool = Field(False, description="SGD only; needs momentum > 0.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW.")
    eps: float = Field(1e-8, gt=0.0)
    grad_clip_norm: float | None = Field(None, gt=0.0, description="Clip the global grad norm.")

    @field_validator("betas")
    @classmethod
    def _betas_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        for b in v:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> Hyperparameters:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov=true needs momentum > 0")
        return self


class EarlyStopping(StrictModel):
    """Stop when the monitored validation metric has not improved for ``patience`` epochs."""

    patience: int = Field(0, ge=0, description="0 disables early stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as better.")


class MonitorSpec(StrictModel):
    """Validation metric that decides the best checkpoint and early stopping."""

    metric: str = Field(
        "auto",
        description="auto (val_accuracy for classification, val_loss for regression) or one "
        "of val_loss, val_accuracy, val_precision, val_recall, val_f1, val_mse, val_r2.",
    )
    mode: Literal["auto", "max", "min"] = "auto"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        allowed = {"auto", *_METRIC_MODES}
        if v not in allowed:
            raise ValueError(f"unknown metric {v!r}; allowed: {sorted(allowed)}")
        return v


_METRIC_MODES: dict[str, Direction] = {
    "val_loss": Direction.MINIMIZE,
    "val_accuracy": Direction.MAXIMIZE,
    "val_precision": Direction.MAXIMIZE,
    "val_recall": Direction.MAXIMIZE,
    "val_f1": Direction.MAXIMIZE,
    "val_mse": Direction.MINIMIZE,
    "val_r2": Direction.MAXIMIZE,
}


class CheckpointPolicy(StrictModel):
    """When to write checkpoints and which to keep.

    A checkpoint is written at the end of an epoch when any rule fires: every ``every_n_epochs``
    epochs, when ``every_minutes`` have passed since the last one, on a new best validation
    metric (``on_best``), and always after the last epoch. The newest ``keep_last`` plus the
    best are kept; older ones are deleted after a newer one is safely on disk.
    """

    every_n_epochs: int = Field(1, ge=0, description="0 disables the epoch interval rule.")
    every_minutes: float = Field(0.0, ge=0.0, description="0 disables the time rule.")
    on_best: bool = True
    keep_last: int = Field(2, ge=1, le=1000)
    keep_best: bool = True
    compression: Compression = Compression.NONE


class TrainingSpec(StrictModel):
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1, le=1_000_000, description="Per-worker batch size.")
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: OptimizerName = OptimizerName.ADAM
    loss: LossName = LossName.AUTO
    validation_split: float = Field(0.2, gt=0.0, lt=1.0)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)


class ResourcesSpec(StrictModel):
    num_workers: int = Field(2, ge=1, le=4096, description="Data-parallel training workers.")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0.0, le=16)
    use_gpu: bool = Field(False, description="Train on GPUs with NCCL (gloo on CPU otherwise).")

    @model_validator(mode="after")
    def _gpu_consistency(self) -> ResourcesSpec:
        if self.gpus_per_worker > 0 and not self.use_gpu:
            raise ValueError(
                f"gpus_per_worker={self.gpus_per_worker} needs use_gpu=true "
                "(or set gpus_per_worker=0)"
            )
        return self


class FailureSpec(StrictModel):
    max_failures: int = Field(
        3, ge=-1, description="Worker-group restarts Ray Train may do; -1 retries forever."
    )


class MigrationStrategy(enum.StrEnum):
    LOAD_BALANCED = "load_balanced"
    ROUND_ROBIN = "round_robin"


class FaultToleranceSpec(StrictModel):
    """Node-level failure handling by the platform's FaultDetector and TaskMigrator actors.

    Workers and a small agent on every node send heartbeats every ``heartbeat_interval_s``. A
    node or worker is WARNING after ``warning_missed_heartbeats`` missed intervals, CRITICAL after
    ``critical_missed_heartbeats``, and FAILED after ``node_failure_timeout_s`` (or at once when
    Ray's node table reports the node dead). With ``enable_auto_recovery`` the TaskMigrator alone
    restarts a failed run (Ray Train's own restarts are turned off, so one failure never causes
    two restarts): it picks healthy nodes by ``migration_strategy`` and resumes from the latest
    good checkpoint, up to ``max_retry_attempts`` times with exponential backoff. With
    ``preempt_on_detection`` the migrator does not wait for Ray to notice a lost node (its own
    health checks take tens of seconds): once the detector declares a node FAILED and a probe of
    the node's agent confirms it does not answer, the task's attempt is stopped at once and
    resumed elsewhere.
    """

    heartbeat_interval_s: float = Field(1.0, gt=0.0, le=600.0)
    node_failure_timeout_s: float = Field(5.0, gt=0.0, le=3600.0)
    warning_missed_heartbeats: int = Field(2, ge=1, le=1000)
    critical_missed_heartbeats: int = Field(3, ge=1, le=1000)
    enable_auto_recovery: bool = True
    max_retry_attempts: int = Field(3, ge=0, le=100)
    retry_backoff_s: float = Field(1.0, ge=0.0, le=600.0, description="Doubles per retry.")
    migration_strategy: MigrationStrategy = MigrationStrategy.LOAD_BALANCED
    preempt_on_detection: bool = Field(
        True, description="Stop and migrate the affected attempt as soon as the detector "
        "declares one of its nodes FAILED, instead of waiting for Ray to notice the node is gone.")

    @model_validator(mode="after")
    def _consistent_thresholds(self) -> FaultToleranceSpec:
        i, t = self.heartbeat_interval_s, self.node_failure_timeout_s
        if t <= i:
            raise ValueError(
                f"node_failure_timeout_s={t:g} must be longer than heartbeat_interval_s={i:g} "
                "(a node would be declared failed before it could send its next heartbeat)"
            )
        if self.critical_missed_heartbeats < self.warning_missed_heartbeats:
            raise ValueError(
                f"critical_missed_heartbeats={self.critical_missed_heartbeats} must be >= "
                f"warning_missed_heartbeats={self.warning_missed_heartbeats}"
            )
        if self.critical_missed_heartbeats * i >= t:
            raise ValueError(
                f"critical_missed_heartbeats x heartbeat_interval_s = "
                f"{self.critical_missed_heartbeats * i:g} s must be shorter than "
                f"node_failure_timeout_s={t:g} (CRITICAL comes before FAILED)"
            )
        return self


class Strategy(enum.StrEnum):
    """How the data-parallel workers combine their gradients."""

    DDP = "ddp"  # Ray Train workers, all-reduce (gloo on CPU, NCCL on GPU)
    PARAMETER_SERVER = "parameter_server"  # worker actors push to sharded server actors


class PSMode(enum.StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class ParameterServerSpec(StrictModel):
    """The parameter-server strategy: ``num_shards`` server actors hold the parameters.

    ``sync``: every step averages all workers' gradients in rank order and applies one
    optimizer step (bit-reproducible; equivalent to DDP's large-batch SGD). ``async``: each
    push is applied on arrival; a push computed on parameters more than ``max_staleness``
    versions old is dropped and the worker continues from the current parameters.
    """

    mode: PSMode = PSMode.SYNC
    num_shards: int = Field(1, ge=1, le=256, description="Server actors; tensors split over them.")
    max_staleness: int = Field(
        4, ge=0, le=10_000, description="async: newest-version lag a pushed gradient may have.")
    cpus_per_shard: float = Field(
        0.0, ge=0.0, le=64, description="CPUs reserved per server actor (0: share the node).")


class TrainingTask(StrictModel):
    """One unit of work: model + dataset + hyperparameters + resources.

    ``task_id`` (``id`` if given, else ``name``) and the dataset's content hash determine the
    random seed, so the same task on the same data and world size gives the same weights.
    """

    name: str = Field(description="Human-readable name; letters, digits, '_', '.', '-'.")
    id: str | None = Field(None, description="Stable task identity (default: name).")
    description: str = ""
    model: ModelSpec
    dataset: DatasetSpec
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    failure: FailureSpec = Field(default_factory=FailureSpec)
    fault_tolerance: FaultToleranceSpec = Field(default_factory=FaultToleranceSpec)
    strategy: Strategy = Field(Strategy.DDP, description="ddp or parameter_server.")
    ps: ParameterServerSpec | None = Field(
        None, description="Parameter-server settings; only with strategy=parameter_server.")
    consistency: ConsistencySpec = Field(
        default_factory=ConsistencySpec,
        description="Seeding, the result cache, sharing through the registry, consensus.")

    @field_validator("name", "id")
    @classmethod
    def _slug(cls, v: str | None) -> str | None:
        if v is not None and not _NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not allowed: use 1-128 letters, digits, '_', '.', '-' "
                "starting with a letter or digit"
            )
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainingTask:
        if isinstance(self.model, CNNModel) and self.dataset.image_shape is None:
            if not (isinstance(self.dataset, SklearnDataset) and self.dataset.name == "digits"):
                raise ValueError(
                    "model.type=cnn needs dataset.image_shape [channels, height, width] "
                    "(only sklearn digits has a built-in 1x8x8 shape)"
                )
        if self.ps is not None and self.strategy is not Strategy.PARAMETER_SERVER:
            raise ValueError(
                f"a ps section is set but strategy={self.strategy.value}; set "
                "strategy: parameter_server or remove the ps section"
            )
        return self

    @property
    def ps_spec(self) -> ParameterServerSpec:
        """The parameter-server settings, defaults filled in."""
        return self.ps or ParameterServerSpec()

    @property
    def task_id(self) -> str:
        return self.id or self.name

    def monitor_metric(self, kind: TaskKind) -> tuple[str, Direction]:
        """The (metric, direction) pair that selects the best epoch, resolving ``auto``."""
        metric = self.training.monitor.metric
        if metric == "auto":
            metric = "val_accuracy" if kind is TaskKind.CLASSIFICATION else "val_loss"
        mode = self.training.monitor.mode
        return metric, _METRIC_MODES[metric] if mode == "auto" else Direction(mode)

    def canonical_dict(self) -> dict[str, Any]:
        """JSON-ready dict with enums as values: the input to hashes and stored copies."""
        return json.loads(self.model_dump_json())


# ---------------------------------------------------------------------------------------------
# Loading


def _format_loc(loc: Sequence[int | str], raw: Any) -> str:
    """Dotted field path, dropping the discriminator tags pydantic inserts for unions."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(node, Mapping) and isinstance(item, str) and item not in node:
            tag = node.get("type", node.get("source"))
            if tag == item:
                continue
        parts.append(f"[{item}]" if isinstance(item, int) else item)
        if isinstance(node, Mapping):
            node = node.get(item)
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            node = node[item]
        else:
            node = None
    return ".".join(parts).replace(".[", "[") or "<root>"


def format_validation_error(err: ValidationError, raw: Any, origin: str, *,
                            model: type[BaseModel] | None = None, field_prefix: str = "",
                            what: str = "task config") -> str:
    """What is wrong, field by field: the dotted path, the value given and what is allowed.

    One problem gives one line (``invalid task config t.yaml: training.epochs: got 0: ...``);
    several give the header and one indented line each. ``model`` (the validated class) lets a
    non-finite number's message say the field's range and meaning; ``field_prefix`` is put
    before every path (``search.`` for a study's search section).
    """
    problems = [_describe_problem(e, raw, model, field_prefix) for e in err.errors()]
    header = f"invalid {what} {origin}"
    if len(problems) == 1:
        return f"{header}: {problems[0]}"
    return "\n".join([f"{header}: {len(problems)} problems:", *(f"  {p}" for p in problems)])


def _describe_problem(e: Any, raw: Any, model: type[BaseModel] | None, prefix: str) -> str:
    where = prefix + _format_loc(e["loc"], raw)
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"{where}: unknown field (remove it or check the spelling)"
    if e["type"] == "missing":
        return f"{where}: required field is missing"
    if not e["loc"]:  # a cross-field check of the whole model
        return msg
    value = e.get("input")
    if isinstance(value, Mapping):  # a check across the fields of a section
        return f"{where}: {msg}"
    if e["type"] == "finite_number":
        field = _field_info(model, e["loc"]) if model is not None else None
        allowed = "a finite number" + (_bounds(field) if field is not None else "")
        if field is not None and field.description:
            allowed += f" ({field.description.rstrip('.')})"
        return f"{where}: got {_show(value)}: NaN and infinity are not allowed; allowed: {allowed}"
    return f"{where}: got {_show(value)}: {msg}"


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf, nan (JSON would say Infinity)
    shown = json.dumps(value, default=str)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _bounds(field: FieldInfo) -> str:
    """`` >= 0 and <= 10`` from a field's ge/gt/le/lt constraints."""
    out = []
    for c in field.metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(c, attr, None)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                out.append(f"{op} {bound:g}")
    return (" " + " and ".join(out)) if out else ""


def _field_info(model: type[BaseModel], loc: Sequence[int | str]) -> FieldInfo | None:
    """The pydantic field an error location points at (through nested models, tagged unions,
    lists and dicts), or None when the path leaves the models."""
    cands: list[Any] = [model]
    field: FieldInfo | None = None
    for item in loc:
        cands = [t for tp in cands for t in _flatten(tp)]
        models = [t for t in cands if isinstance(t, type) and issubclass(t, BaseModel)]
        owner = next((m for m in models if isinstance(item, str) and item in m.model_fields),
                     None)
        if owner is not None:
            field = owner.model_fields[str(item)]
            cands = [field.annotation]
            continue
        tagged = [m for m in models if any(item in _literals(f.annotation)
                                           for f in m.model_fields.values())]
        if tagged:  # a discriminator tag pydantic put in the path
            cands = tagged
            continue
        containers = [tp for tp in cands if get_origin(tp) in (list, tuple, dict)]
        if not containers:
            return None
        field = None
        cands = [a for tp in containers
                 for a in (get_args(tp)[-1:] if get_origin(tp) is dict else get_args(tp))
                 if a is not Ellipsis]
    return field


def _flatten(tp: Any) -> list[Any]:
    """Union members (Optional included) and the type inside Annotated."""
    if get_origin(tp) is Annotated:
        return _flatten(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return [t for a in get_args(tp) for t in _flatten(a)]
    return [tp]


def _literals(tp: Any) -> tuple[Any, ...]:
    return get_args(tp) if get_origin(tp) is Literal else ()


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict."""
    out = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key.sub=value, e.g. training.epochs=5")
        set_dotted(out, key, _parse_value(value), where=f"--set {item!r}")
    return out


def set_dotted(raw: dict[str, Any], path: str, value: Any, where: str) -> None:
    """Set ``a.b.c`` in a raw config dict, creating sections; ``where`` prefixes errors."""
    node = raw
    parts = path.split(".")
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {p!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_task(raw: Any, origin: str = "<dict>", base_dir: Path | None = None) -> TrainingTask:
    """Validate a raw mapping into a TrainingTask, resolving relative file paths."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"invalid task config {origin}: expected a mapping at the top level, "
            f"got {type(raw).__name__}"
        )
    try:
        task = TrainingTask.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, raw, origin, model=TrainingTask)
                          ) from None
    if isinstance(task.dataset, FileDataset) and base_dir is not None:
        if not task.dataset.path.is_absolute():
            path = (base_dir / task.dataset.path).resolve()
            task = task.model_copy(
                update={"dataset": task.dataset.model_copy(update={"path": path})}
            )
    return task


def load_task(path: str | Path, overrides: Iterable[str] = ()) -> TrainingTask:
    """Load a task from a YAML (.yaml/.yml) or JSON (.json) file and apply overrides.

    A ``search`` section (a study config for ``mtp tune``) is not part of the task: it is
    ignored here, so ``mtp run`` on a study config trains its base task.
    """
    p = Path(path)
    raw = load_raw_config(p, overrides)
    if isinstance(raw, dict):
        raw.pop("search", None)
    return parse_task(raw, origin=str(p), base_dir=p.resolve().parent)


def load_raw_config(path: str | Path, overrides: Iterable[str] = ()) -> Any:
    """The parsed YAML/JSON mapping of a config file with overrides applied (not validated)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"task config file {str(p)!r} does not exist (or is not a file)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"task config file {str(p)!r} cannot be read: {err}") from None
    try:
        if p.suffix.lower() == ".json":
            raw = json.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise ConfigError(
                f"task config file {str(p)!r}: unknown extension {p.suffix!r}; "
                "allowed: .yaml, .yml, .json"
            )
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"task config file {str(p)!r} is not valid: {err}") from None
    if raw is None:
        raise ConfigError(f"task config file {str(p)!r} is empty")
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides)
    return raw
