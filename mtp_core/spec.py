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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from mtp_core.base import StrictModel
from mtp_core.config_file import MAX_CONFIG_DEPTH, parse_override_value, read_config_file
from mtp_core.consistency_spec import ConsistencySpec
from mtp_core.direction import Direction
from mtp_core.errors import ConfigError

__all__ = [
    "Activation",
    "CheckpointPolicy",
    "Compression",
    "CustomDataset",
    "CustomModel",
    "DataValidation",
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
    "PreprocessStep",
    "RegistrySpec",
    "SKLEARN_KINDS",
    "SKLEARN_PLATFORM_PARAMS",
    "ResourcesSpec",
    "SchedulingSpec",
    "SklearnDataset",
    "SklearnModel",
    "Strategy",
    "SyntheticDataset",
    "TaskKind",
    "TrackingSpec",
    "TrainingSpec",
    "TrainingTask",
    "apply_overrides",
    "declared_kind",
    "format_validation_error",
    "load_raw_config",
    "load_task",
    "metric_direction",
    "metrics_for_kind",
    "parse_memory",
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
        default_factory=lambda: [128], min_length=1, max_length=64,
        description="Width of each hidden layer."
    )
    activation: Activation = Activation.RELU
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


class CNNModel(StrictModel):
    """Small conv net for image-shaped inputs (``dataset.image_shape`` or digits as 1x8x8)."""

    type: Literal["cnn"]
    channels: list[Annotated[int, Field(gt=0, le=4096)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, max_length=16,
        description="Channels per conv block."
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


_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _import_path(v: str, example: str) -> str:
    if not _FACTORY.match(v):
        raise ValueError(f"expected MODULE:FUNCTION (for example {example})")
    return v


class CustomModel(StrictModel):
    """The user's own ``torch.nn.Module``, built by a factory function of their code.

    The factory is called as ``factory(input_shape=..., num_outputs=..., task=...,
    **params)`` (``task`` is ``"classification"`` or ``"regression"``) and returns an
    ``nn.Module`` mapping a batch of inputs to ``(batch, num_outputs)`` (for regression
    ``num_outputs`` is 1). Its module is looked for in ``code_dir`` (default: the config
    file's folder), then on the Python path; the source files found there are hashed into the
    task's cache key and, unless installed in site-packages, shipped to every worker.
    """

    type: Literal["custom"]
    factory: str = Field(max_length=1024, description="MODULE:FUNCTION, e.g. my_models.nets:build")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Keyword arguments for the factory (JSON values).")
    code_dir: Path | None = Field(
        None, description="Where the factory's module is looked for first; relative paths are "
        "taken from the config's folder (default: the config's folder).")

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, v: str) -> str:
        return _import_path(v, "my_models.nets:build")

    @field_validator("params")
    @classmethod
    def _params_form(cls, v: dict[str, Any]) -> dict[str, Any]:
        taken = sorted({"input_shape", "num_outputs", "task"} & set(v))
        if taken:
            raise ValueError(f"{', '.join(taken)} is given to the factory by the platform; "
                             "remove it from model.params")
        return v


_ESTIMATOR = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
SKLEARN_PLATFORM_PARAMS: dict[str, str] = {
    "n_jobs": "set from resources.cpus_per_worker",
    "random_state": "derived from the task's seed (consistency.deterministic.global_seed fixes "
                    "it)",
}
"""Estimator parameters the platform sets, and from what."""


class SklearnModel(StrictModel):
    """A scikit-learn estimator (or any class with its ``fit``/``predict``/``get_params`` API),
    fitted on one worker of ``resources.cpus_per_worker`` CPUs.

    ``estimator`` is its import path (``sklearn.ensemble.RandomForestClassifier``); ``params``
    are its constructor's keyword arguments. ``n_jobs`` (from ``resources.cpus_per_worker``)
    and ``random_state`` (from the task's seed) are set by the platform where the estimator
    takes them, so reruns are identical. Saved with skops (loading it runs no code).
    """

    type: Literal["sklearn"]
    estimator: str = Field(max_length=1024,
                           description="Import path, e.g. sklearn.ensemble.RandomForestClassifier")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Keyword arguments for the estimator (JSON values).")

    @field_validator("estimator")
    @classmethod
    def _estimator_form(cls, v: str) -> str:
        if not _ESTIMATOR.match(v):
            raise ValueError("expected MODULE.CLASS (for example "
                             "sklearn.ensemble.RandomForestClassifier)")
        return v

    @field_validator("params")
    @classmethod
    def _params_form(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, how in SKLEARN_PLATFORM_PARAMS.items():
            if name in v:
                raise ValueError(f"{name} is {how}; remove it from model.params")
        return v


ModelSpec = Annotated[LinearModel | MLPModel | CNNModel | CustomModel | SklearnModel,
                      Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------
# Datasets


MAX_IMAGE_DIM = 65_536
MAX_SAMPLE_VALUES = 100_000_000
"""Most values one sample may hold (``image_shape``'s product): 400 MB as float32."""
MAX_SYNTHETIC_VALUES = 1_000_000_000
"""Most values a synthetic dataset may generate (n_samples x n_features), all held in memory."""

_ImageDim = Annotated[int, Field(gt=0, le=MAX_IMAGE_DIM)]
_Column = Annotated[str, Field(min_length=1, max_length=1024)]


class _Step(StrictModel):
    columns: list[_Column] | None = Field(
        None, min_length=1, description="The columns the step transforms (default: every "
        "column it applies to: numbers for numeric steps, text for encoders).")


class ImputeStep(_Step):
    """Fill missing values (scikit-learn ``SimpleImputer``)."""

    step: Literal["impute"]
    strategy: Literal["mean", "median", "most_frequent", "constant"] = "median"
    fill_value: float | str | None = Field(None, description="strategy constant: the value.")

    @model_validator(mode="after")
    def _fill(self) -> ImputeStep:
        if (self.strategy == "constant") != (self.fill_value is not None):
            raise ValueError("fill_value goes with strategy constant, and only with it")
        return self


class ClipStep(_Step):
    """Clip each column to quantiles of its training values."""

    step: Literal["clip"]
    quantiles: tuple[float, float] = Field((0.01, 0.99), description="[low, high] in [0, 1].")

    @field_validator("quantiles")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] < v[1] <= 1.0:
            raise ValueError("expected [low, high] with 0 <= low < high <= 1")
        return v


class OneHotStep(_Step):
    """One 0/1 column per category (scikit-learn ``OneHotEncoder``)."""

    step: Literal["one_hot"]
    unknown: Literal["ignore", "error", "infrequent"] = Field(
        "ignore", description="A category not seen in training: all zeros (ignore), an error, "
        "or the infrequent column (infrequent, with min_frequency).")
    min_frequency: int | None = Field(
        None, ge=1, le=10**12,
        description="Categories rarer than this in training are grouped.")


class OrdinalStep(_Step):
    """One integer code per category (scikit-learn ``OrdinalEncoder``)."""

    step: Literal["ordinal"]
    unknown: Literal["code", "error"] = Field(
        "code", description="A category not seen in training: code -1, or an error.")


class ScaleStep(_Step):
    """Standard (mean 0, std 1), min-max ([0, 1]) or robust (median, IQR) scaling."""

    step: Literal["scale"]
    method: Literal["standard", "minmax", "robust"] = "standard"


class LogStep(_Step):
    """``log(1 + x)``; every value must be above -1."""

    step: Literal["log"]


class SelectKBestStep(_Step):
    """Keep the k columns with the best univariate score against the target (ANOVA F)."""

    step: Literal["select_k_best"]
    k: int = Field(ge=1, le=1_000_000)


class PCAStep(_Step):
    """Principal components (seeded by the task's seed)."""

    step: Literal["pca"]
    n_components: int | float = Field(
        description="A count, or a fraction in (0, 1) of the variance to keep.")

    @field_validator("n_components")
    @classmethod
    def _count_or_fraction(cls, v: int | float) -> int | float:
        if (isinstance(v, float) and not 0.0 < v < 1.0
                or isinstance(v, int) and not 1 <= v <= 1_000_000):
            raise ValueError("expected a count in [1, 1000000] or a fraction in (0, 1)")
        return v


PreprocessStep = Annotated[
    ImputeStep | ClipStep | OneHotStep | OrdinalStep | ScaleStep | LogStep | SelectKBestStep
    | PCAStep, Field(discriminator="step")]


class DataValidation(StrictModel):
    """Rules the loaded data must meet before anything trains (each failure names the column,
    the count and the limit)."""

    min_rows: int | None = Field(None, ge=1, le=10**12,
                                 description="Fewest rows the data may have.")
    max_missing_fraction: float | None = Field(
        None, ge=0.0, le=1.0, description="Most missing values a feature column may have, as a "
        "fraction of the rows (missing values need dataset.preprocess to impute them).")
    allow_infinite: bool = Field(False, description="Infinite feature values are an error "
                                 "unless allowed (then a preprocessing step must handle them).")
    columns: dict[_Column, Literal["number", "integer", "text", "bool"]] | None = Field(
        None, description="Columns that must be there, with their types.")
    min_class_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="Classification: the rarest class's least share.")


class _DatasetCommon(StrictModel):
    standardize: bool = Field(
        True,
        description="Scale features to zero mean, unit variance using train-split statistics; "
        "the statistics are stored in the model so the exported model takes raw inputs.",
    )
    image_shape: tuple[_ImageDim, _ImageDim, _ImageDim] | None = Field(
        None, description="(channels, height, width) of each sample, needed by model.type=cnn."
    )
    preprocess: list[PreprocessStep] = Field(
        default_factory=list, max_length=100,
        description="Steps fitted on the training split, applied in order to every split and "
        "stored with the model (scikit-learn transformers).")
    validation: DataValidation | None = Field(
        None, description="Rules the data must meet (checked when it is loaded).")
    max_samples: int | None = Field(
        None, gt=0, le=10**12,
        description="Use only the first N rows (after loading, before splitting)."
    )

    @field_validator("image_shape", mode="before")
    @classmethod
    def _three_dims(cls, v: Any) -> Any:
        if isinstance(v, list | tuple) and len(v) != 3:
            raise ValueError(f"expected 3 dimensions [channels, height, width], got {len(v)}")
        return v

    @field_validator("image_shape")
    @classmethod
    def _sample_size(cls, v: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if v is not None and math.prod(v) > MAX_SAMPLE_VALUES:
            raise ValueError(
                f"channels x height x width = {math.prod(v):,} values per sample; the limit is "
                f"{MAX_SAMPLE_VALUES:,}")
        return v


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
    n_informative: int | None = Field(
        None, gt=0, le=100_000, description="Default: half of n_features.")
    noise: float = Field(
        0.1, ge=0.0, le=1e6, description="Regression: std of the Gaussian noise.")
    seed: int = Field(0, ge=0, lt=2**32, description="Generator seed (part of the data).")

    @model_validator(mode="after")
    def _check_informative(self) -> SyntheticDataset:
        if self.n_informative is not None and self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative={self.n_informative} exceeds n_features={self.n_features}"
            )
        if self.n_samples * self.n_features > MAX_SYNTHETIC_VALUES:
            raise ValueError(
                f"n_samples x n_features = {self.n_samples:,} x {self.n_features:,} = "
                f"{self.n_samples * self.n_features:,} values; the limit is "
                f"{MAX_SYNTHETIC_VALUES:,} (the generated data is held in memory)")
        return self


class FileDataset(_DatasetCommon):
    """A Parquet or CSV table read with pyarrow: feature columns plus one target column."""

    source: Literal["parquet", "csv"]
    path: Path = Field(description="File path; relative paths are taken from the config's folder.")
    target: str = Field(min_length=1, max_length=1024,
                        description="Name of the label/target column.")
    features: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(
        None, min_length=1, max_length=100_000,
        description="Feature columns (default: every column but target)."
    )
    kind: TaskKind | None = Field(
        None, description="classification or regression (default: regression for float targets)."
    )
    order_by: str | None = Field(
        None, min_length=1, max_length=1024,
        description="A column giving the rows' time order (numbers, dates, timestamps or "
        "text): the rows are sorted by it and split in that order, the past for training, the "
        "future for validation and test. Not a feature unless listed in features.")

    @field_validator("path", mode="before")
    @classmethod
    def _usable_path(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("the path is empty; allowed: a .parquet or .csv file path")
            if "\0" in v:
                raise ValueError("the path contains a NUL character")
            if len(v) > 4096:
                raise ValueError(f"the path is {len(v):,} characters long; the limit is 4,096")
        return v

    @model_validator(mode="after")
    def _distinct_features(self) -> FileDataset:
        if self.features is None:
            return self
        twice = sorted(f for f, n in Counter(self.features).items() if n > 1)
        if twice:
            raise ValueError(f"features lists {twice} more than once; each feature column may "
                             "be named once")
        if self.target in self.features:
            raise ValueError(f"features includes the target column {self.target!r}; a model "
                             "cannot be given the value it predicts")
        return self

    @model_validator(mode="after")
    def _order_column(self) -> FileDataset:
        if self.order_by is not None and self.order_by == self.target:
            raise ValueError(f"order_by is the target column {self.target!r}; name the column "
                             "that gives the rows' time order")
        return self


class CustomDataset(_DatasetCommon):
    """The user's own loading code: ``loader(**params)`` returns ``(features, targets)``
    (array-likes: features ``(rows, ...)``, targets ``(rows,)``) or ``(table, target)`` (a
    pyarrow Table and the name of its target column; the other columns are the features).
    The loader runs in the driver; its arrays are content-hashed like any other data and
    reach the workers through the object store."""

    source: Literal["custom"]
    loader: str = Field(max_length=1024, description="MODULE:FUNCTION, e.g. my_data.load:load")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Keyword arguments for the loader (JSON values).")
    code_dir: Path | None = Field(
        None, description="Where the loader's module is looked for first; relative paths are "
        "taken from the config's folder (default: the config's folder).")
    kind: TaskKind | None = Field(
        None, description="classification or regression (default: regression for float "
        "targets, classification for integer, boolean or text ones).")
    order_by: str | None = Field(
        None, min_length=1, max_length=1024,
        description="A column of the loader's table giving the rows' time order (as for a "
        "file); the loader must return a pyarrow Table.")

    @field_validator("loader")
    @classmethod
    def _loader_form(cls, v: str) -> str:
        return _import_path(v, "my_data.load:load")


DatasetSpec = Annotated[
    SklearnDataset | SyntheticDataset | FileDataset | CustomDataset,
    Field(discriminator="source")
]


# ---------------------------------------------------------------------------------------------
# Training


class Hyperparameters(StrictModel):
    """Optimizer hyperparameters beyond the learning rate."""

    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD only.")
    nesterov: bool = Field(False, description="SGD only; needs momentum > 0.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW.")
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    grad_clip_norm: float | None = Field(
        None, gt=0.0, le=1e6, description="Clip the global grad norm.")

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

    patience: int = Field(0, ge=0, le=100_000, description="0 disables early stopping.")
    min_delta: float = Field(
        0.0, ge=0.0, le=1e6, description="Smallest change that counts as better.")


class MonitorSpec(StrictModel):
    """Validation metric that decides the best checkpoint and early stopping."""

    metric: str = Field(
        "auto",
        description="auto (val_accuracy for classification, val_loss for regression) or one "
        "of val_loss, val_accuracy, val_precision, val_recall, val_f1, val_mse, val_r2.",
    )
    mode: Literal["auto", "max", "min"] = Field(
        "auto", description="auto (the metric's own direction) or that direction spelled out: "
        "min for val_loss and val_mse, max for the others.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        allowed = {"auto", *_METRIC_MODES}
        if v not in allowed:
            raise ValueError(f"unknown metric {v!r}; allowed: {sorted(allowed)}")
        return v

    @model_validator(mode="after")
    def _mode_fits_metric(self) -> MonitorSpec:
        if self.metric != "auto":
            problem = _mode_problem(self.metric, self.mode, prefix="")
            if problem:
                raise ValueError(problem)
        return self

    def resolve(self, kind: TaskKind) -> tuple[str, Direction]:
        """The (metric, direction) pair for a task of ``kind``, ``auto`` resolved."""
        metric = self.metric
        if metric == "auto":
            metric = "val_accuracy" if kind is TaskKind.CLASSIFICATION else "val_loss"
        return metric, _METRIC_MODES[metric] if self.mode == "auto" else Direction(self.mode)


_METRIC_MODES: dict[str, Direction] = {
    "val_loss": Direction.MINIMIZE,
    "val_accuracy": Direction.MAXIMIZE,
    "val_precision": Direction.MAXIMIZE,
    "val_recall": Direction.MAXIMIZE,
    "val_f1": Direction.MAXIMIZE,
    "val_mse": Direction.MINIMIZE,
    "val_r2": Direction.MAXIMIZE,
}
# the validation metrics each kind of task reports every epoch (trainer/loop.py _evaluate)
_KIND_METRICS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.CLASSIFICATION: ("val_loss", "val_accuracy", "val_precision", "val_recall",
                              "val_f1"),
    TaskKind.REGRESSION: ("val_loss", "val_mse", "val_r2"),
}
_TRAIN_METRICS = {"train_loss": Direction.MINIMIZE}


def metrics_for_kind(kind: TaskKind) -> tuple[str, ...]:
    """Every metric an epoch of a ``kind`` task reports: ``train_loss`` and the validation
    metrics (what a study's ``search.metric`` may name; ``training.monitor.metric`` may name
    the validation ones)."""
    return (*_TRAIN_METRICS, *_KIND_METRICS[TaskKind(kind)])


def metric_direction(metric: str) -> Direction:
    """Which way ``metric`` improves (min for losses and errors, max for the others)."""
    if metric in _TRAIN_METRICS:
        return _TRAIN_METRICS[metric]
    if metric not in _METRIC_MODES:
        raise ConfigError(f"unknown metric {metric!r}; allowed: "
                          f"{sorted({*_TRAIN_METRICS, *_METRIC_MODES})}")
    return _METRIC_MODES[metric]


def _mode_problem(metric: str, mode: str, *, prefix: str, auto_for: str = "") -> str | None:
    """Why ``mode`` contradicts ``metric``, or None when it fits; ``prefix`` goes before the
    field names, ``auto_for`` names the task kind when the config says ``metric: auto``."""
    natural = _METRIC_MODES[metric]
    if mode == "auto" or Direction(mode) is natural:
        return None
    better = "lower" if natural is Direction.MINIMIZE else "higher"
    shown = f"auto (that is {metric} for a {auto_for} task)" if auto_for else metric
    return (f"{prefix}mode={mode} contradicts {prefix}metric={shown}: {metric} is better when "
            f"{better}; allowed: mode auto or {natural.value}")


class CheckpointPolicy(StrictModel):
    """When to write checkpoints and which to keep.

    A checkpoint is written at the end of an epoch when any rule fires: every ``every_n_epochs``
    epochs, when ``every_minutes`` have passed since the last one, on a new best validation
    metric (``on_best``), and always after the last epoch. The newest ``keep_last`` plus the
    best are kept; older ones are deleted after a newer one is safely on disk.
    """

    every_n_epochs: int = Field(
        1, ge=0, le=100_000, description="0 disables the epoch interval rule.")
    every_minutes: float = Field(0.0, ge=0.0, le=1e6, description="0 disables the time rule.")
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
    validation_split: float = Field(0.2, gt=0.0, lt=1.0,
                                    description="Fraction of the rows held out for validation.")
    test_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of the rows held out for the test "
        "evaluation of the best model after training (0: no test split).")
    stratify: bool = Field(
        True, description="Classification: every split keeps each class's share of the rows.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    init_from: str | None = Field(
        None, min_length=1, max_length=4096,
        description="Start from another model's weights instead of a random initialization: "
        "models:/NAME/VERSION, models:/NAME@ALIAS or a run directory. The model must have "
        "the same architecture; `mtp models branch` sets it.")
    max_runtime_s: float | None = Field(
        None, gt=0.0, le=365 * 86400.0,
        description="A task run by the scheduler (`mtp submit`) that has trained longer than "
        "this, over all its attempts, is stopped and FAILED (its checkpoints are kept). "
        "It also bounds the task's run for backfilling ahead of a larger waiting task.")

    @model_validator(mode="after")
    def _room_to_train(self) -> TrainingSpec:
        held = self.validation_split + self.test_split
        if held >= 1.0:
            raise ValueError(f"validation_split + test_split = {held:g} leaves no rows to "
                             "train on; allowed: a sum below 1 (e.g. 0.2 and 0.1)")
        return self


class TrackingSpec(StrictModel):
    """Where and whether a run is recorded on MLflow (never part of the result)."""

    enabled: bool = Field(True, description="Record the run on MLflow.")
    experiment: str | None = Field(
        None, min_length=1, max_length=256,
        description="MLflow experiment (default: the task's name).")
    uri: str | None = Field(
        None, min_length=1, max_length=4096,
        description="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else the platform "
        "database under the storage path).")


class RegistrySpec(StrictModel):
    """What the model registry does with a successful run."""

    register_as: str | None = Field(
        None, description="Register the trained model as a new version of this model name.")

    @field_validator("register_as")
    @classmethod
    def _model_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not allowed: use 1-128 letters, digits, '_', '.', '-' "
                             "starting with a letter or digit")
        return v


_MEMORY_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
                 "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12, "ki": 2**10, "kib": 2**10,
                 "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40,
                 "tib": 2**40}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_memory(value: Any) -> int:
    """Bytes from a whole number of bytes or a size with a unit: ``512MiB``, ``4GB``, ``2Gi``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not float(value).is_integer() or value > 2**62:
            raise ValueError(f"{value!r} is not a whole number of bytes; allowed: bytes (e.g. "
                             "2147483648) or a number with a unit (512MiB, 4GiB, 8GB)")
        return int(value)
    if isinstance(value, str):
        m = _MEMORY_RE.match(value)
        if m and m.group(2).lower() in _MEMORY_UNITS:
            return int(float(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()])
    raise ValueError(f"{value!r} is not a size; allowed: bytes (e.g. 2147483648) or a number "
                     "with a unit (512MiB, 4GiB, 8GB)")


class ResourcesSpec(StrictModel):
    num_workers: int = Field(2, ge=1, le=4096, description="Data-parallel training workers.")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0.0, le=16)
    use_gpu: bool = Field(False, description="Train on GPUs with NCCL (gloo on CPU otherwise).")
    memory_per_worker: int | None = Field(
        None, ge=1, le=2**50,
        description="Memory each worker reserves from Ray's `memory` resource, in bytes or "
        "with a unit (`4GiB`); the scheduler admits a task only when it is free.")

    @field_validator("memory_per_worker", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        return None if v is None else parse_memory(v)

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
        3, ge=-1, le=10_000,
        description="Worker-group restarts Ray Train may do; -1 retries forever."
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


class SchedulingSpec(StrictModel):
    """How the platform's scheduler (`mtp submit`) queues the task; never part of the result.

    Higher ``priority`` runs first (first come, first served within a priority); a waiting
    task may stop running ``preemptible`` tasks of lower priority at their next checkpoint,
    which later resume from it with bit-identical results.
    """

    priority: int = Field(50, ge=1, le=99, description="1 (lowest) to 99 (highest).")
    preemptible: bool = Field(
        True, description="Whether a higher-priority task may stop this one at a checkpoint "
        "(it is queued again and resumes from that checkpoint).")
    max_attempts: int = Field(
        3, ge=1, le=100, description="How many times the task may start counting the starts "
        "after its driver died (a lost node, a killed process); preemptions do not count, and "
        "a training that fails with an error is not retried.")


class TrainingTask(StrictModel):
    """One unit of work: model + dataset + hyperparameters + resources.

    ``task_id`` (``id`` if given, else ``name``) and the dataset's content hash determine the
    random seed, so the same task on the same data and world size gives the same weights.
    """

    name: str = Field(description="Human-readable name; letters, digits, '_', '.', '-'.")
    id: str | None = Field(None, description="Stable task identity (default: name).")
    description: str = Field("", max_length=10_000)
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
    tracking: TrackingSpec = Field(
        default_factory=TrackingSpec, description="Experiment tracking on MLflow.")
    registry: RegistrySpec = Field(
        default_factory=RegistrySpec, description="The model registry (MLflow).")
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec,
        description="Priority, preemption and retries under the scheduler (`mtp submit`).")

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
        if self.dataset.preprocess and (isinstance(self.model, CNNModel)
                                        or self.dataset.image_shape is not None):
            raise ValueError("dataset.preprocess works on table columns; image-shaped data "
                             "(model.type=cnn, dataset.image_shape) is not preprocessed: remove "
                             "the steps or use a model of flat features")
        if isinstance(self.model, SklearnModel):
            problem = self._sklearn_problem()
            if problem:
                raise ValueError(problem)
        if self.ps is not None and self.strategy is not Strategy.PARAMETER_SERVER:
            raise ValueError(
                f"a ps section is set but strategy={self.strategy.value}; set "
                "strategy: parameter_server or remove the ps section"
            )
        return self

    def _sklearn_problem(self) -> str | None:
        """Data-parallel settings that an estimator fitted on one worker cannot honour."""
        what = "model.type=sklearn (one worker fits the estimator)"
        res = self.resources
        if res.num_workers != 1:
            return (f"resources.num_workers={res.num_workers} does not apply to {what}; "
                    "allowed: 1 (size the worker with resources.cpus_per_worker)")
        if self.strategy is not Strategy.DDP:
            return (f"strategy={self.strategy.value} does not apply to {what}; remove it "
                    "(allowed: ddp, the default)")
        if res.use_gpu or res.gpus_per_worker:
            return (f"resources.use_gpu / gpus_per_worker do not apply to {what}: "
                    "scikit-learn estimators run on CPUs")
        return None

    @model_validator(mode="before")
    @classmethod
    def _one_worker_for_estimators(cls, data: Any) -> Any:
        # resources.num_workers defaults to 2 (data parallel); an estimator has one worker
        if (isinstance(data, Mapping) and isinstance(data.get("model"), Mapping)
                and data["model"].get("type") == "sklearn"):
            resources = data.get("resources", {})
            if isinstance(resources, Mapping) and "num_workers" not in resources:
                return {**data, "resources": {**resources, "num_workers": 1}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        # pydantic's lax mode reads true as 1 for a number field: `epochs: true` would train one
        # epoch and `learning_rate: yes` at 1.0
        if isinstance(data, Mapping):
            problems = _bools_for_numbers(cls, data, "")
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise ValueError(problems[0] + more)
        return data

    @model_validator(mode="after")
    def _kind_checks(self) -> TrainingTask:
        kind = declared_kind(self.dataset)
        if kind is not None:
            problem = self._kind_problem(kind, _kind_source(self.dataset))
            if problem:
                raise ValueError(problem)
        return self

    def check_kind(self, kind: TaskKind) -> None:
        """Refuse settings that a ``kind`` task cannot honour: a monitor metric it never
        reports, a monitor mode against the metric's direction, a loss for the other kind.

        The spec checks this itself when the config fixes the kind (sklearn and synthetic
        datasets, a file dataset with ``kind`` set); for a file dataset without ``kind`` the
        caller checks once the data is loaded and the kind is known. Raises ConfigError.
        """
        problem = self._kind_problem(TaskKind(kind), "the dataset's target column makes it one;"
                                     " dataset.kind is not set")
        if problem:
            raise ConfigError(f"invalid task config for task {self.task_id}: {problem}")

    def _kind_problem(self, kind: TaskKind, source: str) -> str | None:
        what = f"a {kind.value} task ({source})"
        monitor = self.training.monitor
        reported = _KIND_METRICS[kind]
        if monitor.metric != "auto" and monitor.metric not in reported:
            return (f"training.monitor.metric={monitor.metric} is never reported by {what}; "
                    f"allowed: {', '.join(['auto', *reported])}")
        if monitor.metric == "auto":
            metric, _ = monitor.resolve(kind)
            problem = _mode_problem(metric, monitor.mode, prefix="training.monitor.",
                                    auto_for=kind.value)
            if problem:
                return problem
        loss = self.training.loss
        if kind is TaskKind.CLASSIFICATION and loss not in (LossName.AUTO,
                                                             LossName.CROSS_ENTROPY):
            return (f"training.loss={loss.value} does not fit {what}; allowed: cross_entropy "
                    "or auto")
        if kind is TaskKind.REGRESSION and loss is LossName.CROSS_ENTROPY:
            return (f"training.loss=cross_entropy does not fit {what}; allowed: mse, l1, huber "
                    "or auto")
        return None

    @property
    def ps_spec(self) -> ParameterServerSpec:
        """The parameter-server settings, defaults filled in."""
        return self.ps or ParameterServerSpec()

    @property
    def task_id(self) -> str:
        return self.id or self.name

    def monitor_metric(self, kind: TaskKind) -> tuple[str, Direction]:
        """The (metric, direction) pair that selects the best epoch, resolving ``auto``."""
        return self.training.monitor.resolve(kind)

    def canonical_dict(self) -> dict[str, Any]:
        """JSON-ready dict with enums as values: the input to hashes and stored copies."""
        return json.loads(self.model_dump_json())


SKLEARN_KINDS: dict[str, TaskKind] = {
    "digits": TaskKind.CLASSIFICATION,
    "breast_cancer": TaskKind.CLASSIFICATION,
    "wine": TaskKind.CLASSIFICATION,
    "iris": TaskKind.CLASSIFICATION,
    "diabetes": TaskKind.REGRESSION,
}
"""What each bundled scikit-learn dataset's target is."""


def declared_kind(dataset: SklearnDataset | SyntheticDataset | FileDataset | CustomDataset
                  ) -> TaskKind | None:
    """The task kind the config fixes, or None for a file dataset without ``kind`` (its
    target column decides once loaded)."""
    if isinstance(dataset, SklearnDataset):
        return SKLEARN_KINDS[dataset.name]
    return dataset.kind


def _kind_source(dataset: SklearnDataset | SyntheticDataset | FileDataset | CustomDataset
                 ) -> str:
    if isinstance(dataset, SklearnDataset):
        return f"sklearn dataset {dataset.name}"
    return f"dataset.kind={dataset.kind.value if dataset.kind else None}"


def _bools_for_numbers(model: type[BaseModel], raw: Mapping[Any, Any], prefix: str
                       ) -> list[str]:
    """``where: got true: ...`` for each boolean given to an int or float field, through
    nested models (tagged unions by their tag), lists and tuples."""
    problems: list[str] = []
    for key, value in raw.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is not None:
            _walk_bools(field.annotation, value, f"{prefix}{key}", field, problems)
    return problems


def _walk_bools(tp: Any, value: Any, where: str, field: FieldInfo | None,
                problems: list[str]) -> None:
    members = _flatten(tp)
    if isinstance(value, bool):
        numbers = [t for t in members if t in (int, float)]
        if numbers and bool not in members:
            noun = "an integer" if numbers == [int] else "a number"
            bounds = _bounds(field) if field is not None else ""
            problems.append(f"{where}: got {str(value).lower()}: a boolean is not a number; "
                            f"allowed: {noun}{bounds}")
        return
    if isinstance(value, Mapping):
        models = [t for t in members if isinstance(t, type) and issubclass(t, BaseModel)]
        tagged = [m for m in models
                  if any(value.get(name) in _literals(f.annotation)
                         for name, f in m.model_fields.items())]
        chosen = tagged if len(models) > 1 else models
        if len(chosen) == 1:
            problems.extend(_bools_for_numbers(chosen[0], value, f"{where}."))
        return
    if isinstance(value, list | tuple):
        for container in (t for t in members if get_origin(t) in (list, tuple)):
            args = [a for a in get_args(container) if a is not Ellipsis]
            for i, item in enumerate(value):
                if not args:
                    break
                arg = args[min(i, len(args) - 1)]
                _walk_bools(arg, item, f"{where}[{i}]", _annotated_field(arg), problems)
            return


def _annotated_field(tp: Any) -> FieldInfo | None:
    """The constraints of ``Annotated[int, Field(...)]`` (list items, tuple members)."""
    if get_origin(tp) is Annotated:
        return next((m for m in get_args(tp)[1:] if isinstance(m, FieldInfo)), None)
    return None


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

    One line, whatever the number of problems (``invalid task config t.yaml: training.epochs:
    got 0: ...``; several are counted and joined by ``; ``). ``model`` (the validated class) lets a
    non-finite number's message say the field's range and meaning; ``field_prefix`` is put
    before every path (``search.`` for a study's search section).
    """
    problems = [_describe_problem(e, raw, model, field_prefix) for e in err.errors()]
    header = f"invalid {what} {origin}"
    if len(problems) == 1:
        return f"{header}: {problems[0]}"
    return f"{header}: {len(problems)} problems: " + "; ".join(problems)


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
    if e["type"] == "int_parsing_size" or (e["type"] == "float_type" and isinstance(value, int)):
        field = _field_info(model, e["loc"]) if model is not None else None
        noun = "a whole number" if e["type"] == "int_parsing_size" else "a number"
        bounds = _bounds(field) if field is not None else ""
        return f"{where}: got {_show(value)}: too large; allowed: {noun}{bounds}"
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
                shown = str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 \
                    else f"{bound:g}"
                out.append(f"{op} {shown}")
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


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML, with a config file's bounds)
    to a raw config dict of plain data."""
    try:
        out: dict[str, Any] = json.loads(json.dumps(raw))  # deep copy of plain data
    except (TypeError, ValueError, RecursionError) as err:
        raise ConfigError(f"the config holds a value that is not plain data: {err}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        where = f"--set {item!r}"
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"{where}: expected key.sub=value, e.g. training.epochs=5")
        if key.count(".") >= MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where}: the key has {key.count('.') + 1} parts; the limit is "
                              f"{MAX_CONFIG_DEPTH}")
        set_dotted(out, key, parse_override_value(value, where), where=where)
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
    if base_dir is not None:
        for part in ("model", "dataset"):
            section = getattr(task, part)
            if isinstance(section, CustomModel | CustomDataset):
                code_dir = section.code_dir
                code_dir = base_dir if code_dir is None else (
                    code_dir if code_dir.is_absolute() else base_dir / code_dir)
                task = task.model_copy(
                    update={part: section.model_copy(update={"code_dir": code_dir.resolve()})})
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
    """The parsed YAML/JSON data of a config file with overrides applied (not validated).

    The file is read by :func:`mtp_core.config_file.read_config_file`: bounded in size and
    expansion, duplicate keys refused, plain data only; every problem is one ConfigError line
    naming the file.
    """
    raw = read_config_file(path)
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides)
    return raw
