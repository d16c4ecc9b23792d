"""What a training trial reports, so a study's ``search.metric`` is checked before any trial.

Every epoch of a training run reports ``train_loss`` and the validation metrics of the task's
kind (``trainer.loop.TrainLoop._evaluate``: ``val_loss`` plus ``trainer.metrics``'
classification or regression metrics); a metric outside that set would never reach the
searcher, and Tune would only notice at the first report, deep inside the study. The kind comes
from the config where it says it (sklearn and synthetic datasets, a file dataset with
``dataset.kind``), else from the data (loaded, not trained on).
"""

from __future__ import annotations

from hpo.errors import SearchConfigError
from mtp_core.direction import Direction
from mtp_core.spec import TaskKind, TrainingTask, declared_kind, metrics_for_kind
from mtp_core.spec import metric_direction as _platform_direction

__all__ = ["TRIAL_METRICS", "check_trial_metric", "metric_direction", "task_kind"]

# what an epoch of each kind of task reports (mtp_core.spec, after trainer/loop.py)
TRIAL_METRICS: dict[TaskKind, tuple[str, ...]] = {kind: metrics_for_kind(kind)
                                                  for kind in TaskKind}
_PLATFORM_METRICS = frozenset(m for names in TRIAL_METRICS.values() for m in names)


def metric_direction(metric: str) -> Direction | None:
    """Which way a platform metric improves; None for a name the platform does not report (a
    plain objective's own metric)."""
    return _platform_direction(metric) if metric in _PLATFORM_METRICS else None


def task_kind(task: TrainingTask) -> TaskKind:
    """The task's kind from its config, else from its data (raises DataError on bad data)."""
    kind = declared_kind(task.dataset)
    if kind is not None:
        return kind
    # a file without dataset.kind is decided by its target column, as training decides it
    from trainer.data import load_dataset

    return load_dataset(task.dataset).kind


def check_trial_metric(metric: str, kind: TaskKind) -> None:
    """SearchConfigError unless the trials of a ``kind`` task report ``metric``."""
    allowed = TRIAL_METRICS[kind]
    if metric not in allowed:
        raise SearchConfigError(
            f"search.metric {metric!r} is never reported by the trials of this {kind.value} "
            f"task; allowed: {', '.join(allowed)}")
