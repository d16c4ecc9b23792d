"""What a training run tells the tracking store, built from the task and its result.

:func:`tracking_target` decides at the start whether the run is tracked and where (a bad
``tracking.uri`` is a config error before anything runs); :func:`start_tracker` opens the
MLflow run (parameters, tags, dataset input) in the background; :func:`end_tracker` ends it
with the result's final metrics, the weights hash and the run directory's files;
:func:`track_cache_hit` records a result served without training. MLflow loads only when a run
is tracked (see :mod:`tracking`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtp_core.layout import RunLayout
from mtp_core.spec import TrainingTask
from tracking import (
    DatasetRecord,
    RunOutcome,
    RunStart,
    RunTracker,
    Tag,
    TrackedRun,
    TrackingTarget,
    record_cache_hit,
    resolve_target,
    tracking_enabled,
)
from trainer.prepare import PreparedTask
from trainer.result import TrainingResult
from trainer.versions import MODEL_CODE_VERSION, code_version

__all__ = ["end_tracker", "final_metrics", "run_artifacts", "start_tracker",
           "track_cache_hit", "tracking_target"]


def tracking_target(task: TrainingTask, storage: Path,
                    parent: TrackedRun | None = None) -> TrackingTarget | None:
    """Where the run is tracked; None when it is not (``tracking.enabled: false`` or
    ``MTP_TRACKING=off``). A study's trial (``parent`` given) logs to its study's store:
    the study's driver decided, whatever this process's environment says."""
    if parent is not None:
        return resolve_target(parent.uri, storage, source="the study's tracking store")
    if not tracking_enabled(task.tracking):
        return None
    return resolve_target(task.tracking.uri, storage)


def _run_start(task: TrainingTask, prepared: PreparedTask, storage: Path, run_name: str,
               parent: TrackedRun | None, extra: dict[str, str] | None = None) -> RunStart:
    monitor, direction = task.training.monitor.resolve(prepared.dataset.kind)
    tags = {
        Tag.TASK_ID.value: task.task_id, Tag.TASK_NAME.value: task.name,
        Tag.RUN_DIR.value: str(storage / run_name), Tag.STORAGE.value: str(storage),
        Tag.DATA_HASH.value: prepared.data_hash, Tag.SEED.value: str(prepared.seed),
        Tag.CACHE_KEY.value: prepared.cache_key,
        Tag.WORLD_SIZE.value: str(task.resources.num_workers),
        Tag.STRATEGY.value: task.strategy.value, Tag.CODE_VERSION.value: code_version(),
        Tag.MODEL_CODE_VERSION.value: MODEL_CODE_VERSION,
        Tag.MONITOR_METRIC.value: monitor, Tag.MONITOR_MODE.value: direction.value,
        **({Tag.MODEL_CODE_SHA256.value: prepared.model_code_sha256}
           if prepared.model_code_sha256 else {}),
        **(extra or {}),
    }
    ds = task.dataset
    dataset = DatasetRecord(name=str(getattr(ds, "name", None) or getattr(ds, "path", None)
                                     or ds.source)[:500],
                            content_hash=prepared.data_hash,
                            source=ds.model_dump(mode="json", exclude_defaults=True))
    return RunStart(experiment=task.tracking.experiment or task.name, run_name=run_name,
                    params=task.canonical_dict(), tags=tags, dataset=dataset, parent=parent)


def start_tracker(target: TrackingTarget, task: TrainingTask, prepared: PreparedTask,
                  storage: Path, run_name: str, parent: TrackedRun | None = None,
                  extra_tags: dict[str, str] | None = None) -> RunTracker:
    return RunTracker(target, _run_start(task, prepared, storage, run_name, parent,
                                         extra_tags))


def final_metrics(result: TrainingResult) -> dict[str, float]:
    """The numbers a finished run ends with: the best epoch's validation metrics as
    ``best_<metric>``, the test metrics, the best epoch and the wall time."""
    return {**{f"best_{k}": v for k, v in result.best_metrics.items()},
            **result.test_metrics, "best_epoch": float(result.best_epoch),
            "epochs_completed": float(result.epochs_completed),
            "wall_time_s": result.timings.wall_time_s}


def run_artifacts(run_dir: Path) -> list[Path]:
    """The run directory's files worth keeping with the MLflow run (those present)."""
    layout = RunLayout.of(run_dir)
    files = [layout.result, layout.task, layout.data_report, layout.model, layout.estimator,
             layout.preprocess]
    files += sorted(run_dir.glob("*.png"))  # plots a run made
    return [f for f in files if f.is_file()]


def end_tracker(tracker: RunTracker, result: TrainingResult | None, *,
                outcome: RunOutcome, error: str | None = None,
                run_dir: Path | None = None, timeout_s: float = 120.0) -> TrackedRun | None:
    """End the run; with a result, its final metrics, tags and files go with it."""
    if result is None:
        return tracker.end(outcome, error=error, timeout_s=timeout_s,
                           artifacts=run_artifacts(run_dir) if run_dir else ())
    tags = {Tag.WEIGHTS_HASH.value: result.weights_hash,
            Tag.WORLD_SIZE.value: str(result.world_size)}
    return tracker.end(outcome, metrics=final_metrics(result), step=result.epochs_completed,
                       tags=tags, artifacts=run_artifacts(Path(result.run_dir)), error=error,
                       timeout_s=timeout_s)


def track_cache_hit(target: TrackingTarget, task: TrainingTask, prepared: PreparedTask,
                    storage: Path, run_name: str, hit: TrainingResult,
                    parent: TrackedRun | None = None) -> TrainingResult:
    """Record ``hit`` (served from the cache or registry) as a cache-hit run; the returned
    result says where (``tracking``), or is ``hit`` unchanged when it could not be logged."""
    extra: dict[str, Any] = {Tag.WEIGHTS_HASH.value: hit.weights_hash,
                             Tag.RUN_DIR.value: hit.run_dir}
    start = _run_start(task, prepared, storage, run_name, parent, extra)
    run = record_cache_hit(target, start, cache_key=prepared.cache_key,
                           metrics=final_metrics(hit), step=hit.epochs_completed,
                           source=hit.cache_hit.value if hit.cache_hit else "cache",
                           stored=hit.tracking)
    return hit if run is None else hit.model_copy(update={"tracking": run.without_password()})
