"""Data-parallel training of a :class:`TrainingTask` on Ray Train.

Driver scripts use ``train``::

    from trainer import load_task, train
    result = train(load_task("examples/digits_mlp.yaml"))
    print(result.final_metrics, result.weights_hash)

Importing the package loads neither torch nor Ray (a cached rerun needs neither): ``train``
imports them when it trains, ``load_model`` (loaded on first use) when it builds a module.
"""

import importlib
from typing import TYPE_CHECKING, Any

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
from trainer.result import EpochRecord, TrainingResult, load_result

if TYPE_CHECKING:
    from trainer.export import load_model

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


def __getattr__(name: str) -> Any:
    if name == "load_model":
        value = importlib.import_module("trainer.export").load_model
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
