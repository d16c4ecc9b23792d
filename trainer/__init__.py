"""Data-parallel training of a :class:`TrainingTask` on Ray Train.

Driver scripts use ``train``::

    from trainer import load_task, train
    result = train(load_task("examples/digits_mlp.yaml"))
    print(result.final_metrics, result.weights_hash)
"""

from trainer.api import DEFAULT_STORAGE_PATH, PreparedTask, connect, prepare, train, train_local
from trainer.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainerError,
    TrainingFailedError,
)
from trainer.export import load_model
from trainer.result import EpochRecord, TrainingResult, load_result
from trainer.spec import TrainingTask, load_task, parse_task

__version__ = "0.1.0"

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
