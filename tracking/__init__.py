"""Experiment tracking on MLflow: every training run, cache hit and study as MLflow runs.

A run is logged from the driver only (:class:`RunTracker`): the task's flattened parameters,
per-epoch metrics with ``step=epoch``, tags (:class:`Tag`), the dataset as an MLflow dataset
input whose digest is the data's content hash, the run directory's files as artifacts, and its
end state. The store is ``tracking.uri``, ``MLFLOW_TRACKING_URI`` or the platform database
(:func:`resolve_target`); ``MTP_TRACKING=off`` turns tracking off. Importing this package does
not import MLflow.
"""

from tracking.errors import ExperimentNotFoundError, TrackingConfigError, TrackingError
from tracking.experiments import (
    ExperimentInfo,
    ExperimentSummary,
    MetricSummary,
    RunRow,
    list_experiments,
    show_experiment,
    summarize,
)
from tracking.params import flatten_params
from tracking.ref import TrackedRun
from tracking.run import DatasetRecord, RunStart, RunTracker, find_original_run, record_cache_hit
from tracking.study import StudyRun
from tracking.tags import PARENT_RUN_TAG, RunKind, RunOutcome, Tag
from tracking.target import (
    MLFLOW_URI_ENV,
    TRACKING_ENV,
    TrackingTarget,
    resolve_target,
    tracking_enabled,
    tracking_off_by_env,
)

__all__ = [
    "MLFLOW_URI_ENV",
    "PARENT_RUN_TAG",
    "TRACKING_ENV",
    "DatasetRecord",
    "ExperimentInfo",
    "ExperimentNotFoundError",
    "ExperimentSummary",
    "MetricSummary",
    "RunKind",
    "RunOutcome",
    "RunRow",
    "RunStart",
    "RunTracker",
    "StudyRun",
    "Tag",
    "TrackedRun",
    "TrackingConfigError",
    "TrackingError",
    "TrackingTarget",
    "find_original_run",
    "flatten_params",
    "list_experiments",
    "record_cache_hit",
    "resolve_target",
    "show_experiment",
    "summarize",
    "tracking_enabled",
    "tracking_off_by_env",
]
