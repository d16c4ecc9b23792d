"""The outcome of a training run, stored as ``result.json`` in the run directory."""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtp_core.atomic import atomic_write_text
from mtp_core.layout import RunLayout
from mtp_core.spec import format_validation_error
from tracking.ref import TrackedRun
from trainer.errors import ResultFileError

__all__ = ["PHASES", "CacheHit", "Divergence", "EpochRecord", "Inference", "PhaseClock",
           "TestEvaluation", "Timings", "TrainingResult", "load_result"]

RESULT_FILE = RunLayout.of(".").result.name


class CacheHit(enum.StrEnum):
    """Where a reused result came from (``TrainingResult.cache_hit``; None: trained)."""

    LOCAL = "local"  # this node's result cache under <storage>/_cache
    REGISTRY = "registry"  # the cluster's result registry actor
    WAITED = "waited"  # another driver was training the same task; its result was awaited

    @property
    def source(self) -> str:
        """Where the result came from, in words."""
        return {CacheHit.LOCAL: "the local result cache",
                CacheHit.REGISTRY: "the cluster's result registry",
                CacheHit.WAITED: "another driver's run of the same task (waited for it)"}[self]


# NaN and infinity are written as the strings "NaN" / "Infinity" (JSON has no such numbers,
# and pydantic's default, null, would not read back as a float)
_RESULT_CONFIG = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class EpochRecord(BaseModel):
    """Metrics of one epoch; validation metrics are in ``metrics`` (val_loss, val_accuracy...)."""

    model_config = _RESULT_CONFIG

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


class Divergence(BaseModel):
    """Where a diverged run stopped: the first loss or metric that was NaN or infinite."""

    model_config = _RESULT_CONFIG

    epoch: int = Field(description="The epoch (1-based) whose numbers were not finite.")
    metric: str = Field(description="train_loss or the validation metric that was not finite.")
    value: float

    def describe(self) -> str:
        return f"{self.metric} is {self.value} at epoch {self.epoch}"


#: The phases of ``train()`` a result's timings break the wall time into (those a run went
#: through): importing what training needs, loading and hashing the data (and checking the
#: model), looking the result up in the cache and registry, starting or joining Ray, the
#: platform's control-plane actors (fault detector, task migrator) and the data put in the
#: object store, starting the workers (Ray Train's controller and worker group, the process
#: group; to the first epoch's start), the first epoch, the other epochs, teardown (last
#: epoch's end to the workers' exit) and writing the result.
PHASES = ("imports", "data", "cache", "ray", "control_plane", "worker_start", "first_epoch",
          "epochs", "teardown", "result")


class PhaseClock:
    """Splits one ``train()`` call's wall time into :data:`PHASES`.

    ``mark(phase)`` charges the time since the previous mark (or the start) to ``phase``;
    ``add`` charges a span measured elsewhere (the workers' epochs). A phase marked twice adds
    up (the data is read before the cache lookup and the model checked after it).
    """

    def __init__(self, start: float | None = None) -> None:
        self.start = time.time() if start is None else start
        self._last = self.start
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> float:
        now = time.time()
        self.add(phase, now - self._last)
        self._last = now
        return now

    def add(self, phase: str, seconds: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        self.phases[phase] = self.phases.get(phase, 0.0) + max(0.0, seconds)

    def restart_at(self, when: float) -> None:
        """The next ``mark`` measures from ``when`` (after spans charged with ``add``)."""
        self._last = when

    def ordered(self) -> dict[str, float]:
        return {p: round(self.phases[p], 4) for p in PHASES if p in self.phases}


class Timings(BaseModel):
    model_config = _RESULT_CONFIG

    wall_time_s: float = Field(description="Driver wall time of train(), start-up included.")
    startup_s: float = Field(description="From train() being called to the first epoch start.")
    train_time_s: float = Field(description="Time spent in training steps, all epochs.")
    samples_per_s: float = Field(description="Training samples per second over all epochs.")
    steady_samples_per_s: float = Field(
        description="Median per-epoch throughput excluding the first epoch (warm-up)."
    )
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="Where the wall time went, in order, seconds: " + ", ".join(PHASES) + ".")


class Inference(BaseModel):
    """How fast the evaluated model predicts, measured on the test split where it was trained
    (rank 0's worker: its device and thread count)."""

    model_config = _RESULT_CONFIG

    device: str
    threads: int = Field(description="CPU threads the model ran with (torch / BLAS pools).")
    batch_size: int = Field(description="Rows per call for the throughput figure.")
    throughput_samples_per_s: float = Field(description="Test rows per second in batches.")
    latency_ms_per_sample: float = Field(
        description="Median time of one call with one row, in milliseconds.")
    latency_samples: int = Field(description="Single-row calls the median is over.")


class TestEvaluation(BaseModel):
    """What the held-out test split was evaluated on, once, after training (the metrics are
    the result's ``test_metrics``)."""

    __test__ = False  # not a pytest class
    model_config = _RESULT_CONFIG

    epoch: int = Field(description="The epoch whose weights were evaluated.")
    weights: str = Field(description="best (the monitored metric's best epoch) or final (the "
                         "best epoch's checkpoint was not kept).")
    rows: int
    inference: Inference


class TrainingResult(BaseModel):
    """Everything needed to compare, share and reload a finished run."""

    model_config = _RESULT_CONFIG

    task_id: str
    task_name: str
    run_name: str
    run_dir: str
    strategy: str = "ddp"
    data_hash: str
    task_kind: str = Field(description="classification or regression")
    num_classes: int = Field(description="0 for regression")
    sample_shape: list[int] = Field(description="Shape of one input sample")
    feature_columns: list[str] = Field(
        default_factory=list, description="The input columns a prediction needs (before "
        "dataset.preprocess), in order.")
    feature_types: list[str] = Field(
        default_factory=list, description="Each input column's type as loaded: number, "
        "integer, bool or text.")
    class_names: list[str] = Field(
        default_factory=list, description="Classification with text labels: the label of "
        "each class id (empty: the ids are the labels).")
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
    initial_metrics: dict[str, float] | None = Field(
        None, description="training.init_from: the starting weights' validation metrics, "
        "before the first epoch (None: trained from a random initialization).")
    resumed_from_epoch: int | None = Field(
        None, description="Epoch the final attempt resumed from (None: started fresh)."
    )
    attempts: int = Field(1, description="Worker-group starts, Ray Train restarts included.")
    cache_key: str | None = Field(
        None, description="Result-cache key: task identity, parameters, data hash, versions.")
    cache_hit: CacheHit | None = Field(
        None, description="None: trained by this call; local, registry or waited: reused.")
    test_metrics: dict[str, float] = Field(
        default_factory=dict, description="The best model on the held-out test split "
        "(test_loss, test_accuracy, ... or test_mse, test_r2); empty without a test split.")
    test: TestEvaluation | None = Field(
        None, description="Which weights the test split evaluated, its rows, inference speed.")
    diverged: Divergence | None = Field(
        None, description="Set when training stopped because a loss or metric became NaN or "
        "infinite; such a result is stored but never cached or shared.")
    tracking: TrackedRun | None = Field(
        None, description="The MLflow run this result was logged as (None: not tracked); "
        "for a cache hit, the cache-hit run (its mtp.original_run_id tag names the original).")
    timings: Timings
    versions: dict[str, str]
    created_at: str
    task: dict[str, Any]

    def save(self, run_dir: str | Path | None = None) -> Path:
        path = Path(run_dir or self.run_dir) / RESULT_FILE
        atomic_write_text(path, self.model_dump_json(indent=1))
        return path


def load_result(run_dir: str | Path) -> TrainingResult:
    """Read ``result.json`` from a run directory (or the file itself).

    Raises :class:`ResultFileError` (an input error) naming the file when it is missing,
    unreadable, not JSON, or not a training result.
    """
    p = Path(run_dir)
    path = p if p.is_file() else p / RESULT_FILE
    if not path.is_file():
        raise ResultFileError(f"no {RESULT_FILE} in {str(p)!r}: not a finished run directory "
                              "(give the run directory `mtp run` printed, or its result.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ResultFileError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
    except ValueError as err:  # not UTF-8, or not JSON
        raise ResultFileError(f"{str(path)!r} is not a training result: not valid JSON "
                              f"({err})") from None
    if not isinstance(raw, dict):
        raise ResultFileError(f"{str(path)!r} is not a training result: expected a JSON object, "
                              f"got {type(raw).__name__ if raw is not None else 'null'}")
    try:
        return TrainingResult.model_validate(raw)
    except ValidationError as err:
        if err.error_count() == 1:
            raise ResultFileError(format_validation_error(
                err, raw, repr(str(path)), model=TrainingResult, what="training result")
            ) from None
        fields = sorted({".".join(str(x) for x in e["loc"]) or "<root>" for e in err.errors()})
        shown = ", ".join(fields[:5]) + (", ..." if len(fields) > 5 else "")
        raise ResultFileError(f"{str(path)!r} is not a training result: {err.error_count()} "
                              f"fields are missing or invalid ({shown})") from None
