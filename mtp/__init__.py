"""``mtp``: the public facade driver scripts import.

::

    import mtp

    task = mtp.load_task("examples/digits_mlp.yaml", overrides=["training.epochs=5"])
    result = mtp.train(task)                      # a TrainingResult
    model = mtp.load_model(result.run_dir)        # a Predictor (.predict, .module), verified
    report = mtp.verify(task, replicas=2)         # a ConsistencyReport
    study = mtp.tune("examples/digits_mlp_tune.yaml")  # a StudyResult

The names are loaded on first use (PEP 562), so ``import mtp`` and the CLI's start stay light:
torch, Ray and Tune are imported only by the call that needs them. Every error the platform
raises derives from :class:`MtpError`; :class:`InputError` marks the ones caused by the input.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mtp_core.errors import ConfigError, DataError, InputError, MtpError
from mtp_core.spec import TrainingTask, load_task, parse_task
from mtp_core.version import __version__

if TYPE_CHECKING:
    from consistency.consensus import ConsistencyReport
    from hpo.study import StudyResult
    from hpo.study import tune_task as tune
    from trainer.api import train
    from trainer.export import load_model
    from trainer.result import TrainingResult, load_result
    from trainer.verify import verify

__all__ = [
    "ConfigError",
    "ConsistencyReport",
    "DataError",
    "InputError",
    "MtpError",
    "StudyResult",
    "TrainingResult",
    "TrainingTask",
    "__version__",
    "load_model",
    "load_result",
    "load_task",
    "parse_task",
    "train",
    "tune",
    "verify",
]

# name -> (module, attribute): imported on first access
_LAZY: dict[str, tuple[str, str]] = {
    "train": ("trainer.api", "train"),
    "load_model": ("trainer.export", "load_model"),
    "load_result": ("trainer.result", "load_result"),
    "TrainingResult": ("trainer.result", "TrainingResult"),
    "verify": ("trainer.verify", "verify"),
    "ConsistencyReport": ("consistency.consensus", "ConsistencyReport"),
    "tune": ("hpo.study", "tune_task"),
    "StudyResult": ("hpo.study", "StudyResult"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mtp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
