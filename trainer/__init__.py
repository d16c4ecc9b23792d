"""Data-parallel training of a :class:`TrainingTask` on Ray Train.

Driver scripts use ``train``::

    from trainer import load_task, train
    result = train(load_task("examples/digits_mlp.yaml"))
    print(result.final_metrics, result.weights_hash)
"""

from mtp_core.ray_env import connect
from mtp_core.spec import TrainingTask, load_task, parse_task
from mtp_core.version import __version__
from trainer.api import DEFAULT_STORAGE_PATH, PreparedTask, prepare, train, train_local
from trainer.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainerError,
    TrainingFailedError,
)
from trainer.export import load_model
from trainer.result import EpochRecord, TrainingResult, load_result

__all__ = [
    "DEFAULT_STORAGE_PATH",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EpochRecord",
    "PreparedTask",
    "TrainerError",
    "TrainingFailedError",
    "TrainingResult",
    "TrainingTask",
    "__version__",
    "connect",
    "load_model",
    "load_result",
    "load_task",
    "parse_task",
    "prepare",
    "train",
    "train_local",
]
