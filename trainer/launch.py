"""What the driver hands every worker of an attempt: one frozen value, for both strategies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtp_core.layout import RunLayout
from mtp_core.spec import TrainingTask
from trainer.data import DatasetMeta
from trainer.user_code import UserCode

__all__ = ["WorkerLaunch"]


@dataclass(frozen=True)
class WorkerLaunch:
    """Everything a rank needs to run its share of one attempt.

    ``data`` is an object-store reference to ``(features, targets)``; ``progress`` says
    whether rank 0 appends each epoch's record to the run's ``progress.jsonl`` (the driver
    prints from it); ``detector`` and ``migrator`` are Ray handles (the fault detector and the
    task migrator), each optional. A new attempt is ``dataclasses.replace``
    of the previous launch with the next ``attempt`` (and, after a migration, fresh ``data``).
    """

    task: TrainingTask
    data: Any
    meta: DatasetMeta
    seed: int
    run_dir: str
    fingerprint: str
    task_key: str  # unique per run directory: the detector's and migrator's name for the run
    progress: bool = False
    detector: Any = None
    migrator: Any = None
    ray_train_log_level: str = "WARNING"
    attempt: int = 0
    user_code: UserCode | None = None  # a custom model's source, installed by every rank

    def install_code(self) -> None:
        """Import a custom model's factory from the shipped source (before the model is
        built)."""
        if self.user_code is not None:
            from trainer.user_code import install

            install(self.user_code)

    @property
    def layout(self) -> RunLayout:
        return RunLayout.of(self.run_dir)
