"""The outcome of a training run, stored as ``result.json`` in the run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtp_core.atomic import atomic_write_text
from mtp_core.layout import RunLayout
from trainer.errors import TrainerError

__all__ = ["EpochRecord", "Timings", "TrainingResult", "load_result"]

RESULT_FILE = RunLayout.of(".").result.name


class EpochRecord(BaseModel):
    """Metrics of one epoch; validation metrics are in ``metrics`` (val_loss, val_accuracy...)."""

    model_config = ConfigDict(extra="forbid")

    epoch: int
    train_loss: float
    metrics: dict[str, float]
    train_samples: int
    train_time_s: float
    samples_per_s: float
    epoch_time_s: float
    is_best: bool

    @classmethod
    def from_loop(cls, rec: dict[str, Any]) -> EpochRecord:
        metrics = {k: float(v) for k, v in rec.items() if k.startswith("val_")}
        return cls(epoch=rec["epoch"], train_loss=rec["train_loss"], metrics=metrics,
                   train_samples=rec["train_samples"], train_time_s=rec["train_time_s"],
                   samples_per_s=rec["samples_per_s"], epoch_time_s=rec["epoch_time_s"],
                   is_best=rec["is_best"])


class Timings(BaseModel):
    wall_time_s: float = Field(description="Driver wall time of train(), start-up included.")
    startup_s: float = Field(description="From train() being called to the first epoch start.")
    train_time_s: float = Field(description="Time spent in training steps, all epochs.")
    samples_per_s: float = Field(description="Training samples per second over all epochs.")
    steady_samples_per_s: float = Field(
        description="Median per-epoch throughput excluding the first epoch (warm-up)."
    )


class TrainingResult(BaseModel):
    """Everything needed to compare, share and reload a finished run."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    task_name: str
    run_name: str
    run_dir: str
    strategy: str = "ddp"
    data_hash: str
    task_kind: str = Field(description="classification or regression")
    num_classes: int = Field(description="0 for regression")
    sample_shape: list[int] = Field(description="Shape of one input sample")
    seed: int
    world_size: int
    num_parameters: int
    epochs_completed: int
    stopped_early: bool
    monitor_metric: str
    monitor_mode: str
    best_epoch: int
    best_metrics: dict[str, float]
    final_metrics: dict[str, float]
    history: list[EpochRecord]
    weights_hash: str
    model_path: str
    checkpoint_dir: str
    best_checkpoint: str | None
    latest_checkpoint: str | None
    resumed_from_epoch: int | None = Field(
        None, description="Epoch the final attempt resumed from (None: started fresh)."
    )
    attempts: int = Field(1, description="Worker-group starts, Ray Train restarts included.")
    cache_key: str | None = Field(
        None, description="Result-cache key: task identity, parameters, data hash, versions.")
    cache_hit: str | None = Field(
        None, description="None: trained by this call; local, registry or waited: reused.")
    timings: Timings
    versions: dict[str, str]
    created_at: str
    task: dict[str, Any]

    def save(self, run_dir: str | Path | None = None) -> Path:
        path = Path(run_dir or self.run_dir) / RESULT_FILE
        atomic_write_text(path, self.model_dump_json(indent=1))
        return path


def load_result(run_dir: str | Path) -> TrainingResult:
    """Read ``result.json`` from a run directory (or the file itself)."""
    p = Path(run_dir)
    path = p if p.is_file() else p / RESULT_FILE
    if not path.is_file():
        raise TrainerError(f"no {RESULT_FILE} in {str(p)!r}: not a finished run directory")
    try:
        return TrainingResult.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as err:
        raise TrainerError(f"{str(path)!r} is not a valid training result: {err}") from None
