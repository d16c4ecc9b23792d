"""What an ``mtp`` run is called on MLflow: its tag names, kinds and end states.

Tags are the MLflow side of a run's identity: the registry finds the run that trained a model
by ``mtp.cache_key`` / ``mtp.run_dir``, a cache hit points at it with ``mtp.original_run_id``,
and ``mtp experiments show`` tells training runs from cache hits and studies by
``mtp.run_kind``.
"""

from __future__ import annotations

import enum

__all__ = ["PARENT_RUN_TAG", "RunKind", "RunOutcome", "Tag"]

#: MLflow's own tag that nests a run under another (the UI shows children under the parent)
PARENT_RUN_TAG = "mlflow.parentRunId"


class Tag(enum.StrEnum):
    """Tag names the platform sets on its MLflow runs."""

    RUN_KIND = "mtp.run_kind"
    TASK_ID = "mtp.task_id"
    TASK_NAME = "mtp.task_name"
    RUN_DIR = "mtp.run_dir"
    STORAGE = "mtp.storage"
    DATA_HASH = "mtp.data_hash"
    SEED = "mtp.seed"
    CACHE_KEY = "mtp.cache_key"
    CACHE_HIT = "mtp.cache_hit"
    CACHE_SOURCE = "mtp.cache_source"
    ORIGINAL_RUN_ID = "mtp.original_run_id"
    WEIGHTS_HASH = "mtp.weights_hash"
    WORLD_SIZE = "mtp.world_size"
    STRATEGY = "mtp.strategy"
    CODE_VERSION = "mtp.code_version"
    MODEL_CODE_VERSION = "mtp.model_code_version"
    MODEL_CODE_SHA256 = "mtp.model_code_sha256"
    MONITOR_METRIC = "mtp.monitor_metric"
    MONITOR_MODE = "mtp.monitor_mode"
    ERROR = "mtp.error"
    STUDY = "mtp.study"
    SEARCHER = "mtp.searcher"
    METRIC = "mtp.metric"
    MODE = "mtp.mode"
    BEST_TRIAL = "mtp.best_trial"


class RunKind(enum.StrEnum):
    """What an MLflow run of the platform records (tag ``mtp.run_kind``)."""

    TRAINING = "training"  # a run that trained (or tried to)
    CACHE_HIT = "cache_hit"  # a result served without training; points at the original
    STUDY = "study"  # an ``mtp tune`` study: the parent of its trials' training runs


class RunOutcome(enum.StrEnum):
    """How a run ended (MLflow's terminal run statuses)."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"  # interrupted (Ctrl-C, SIGTERM)
