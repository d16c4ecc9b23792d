"""``mtp experiments``: the experiments of a tracking store and the summary of one.

:func:`summarize` is the plain computation (runs in, summary out) that tests drive with
hand-made rows; :func:`list_experiments` and :func:`show_experiment` read the store.

The summary is over the experiment's training runs (tag ``mtp.run_kind``): how many, the share
that FINISHED, their mean duration, and for each metric (each run's latest value) min, max,
mean, median and the sample standard deviation (0 for one run). The best run is by the task's
monitor metric and direction (tags ``mtp.monitor_metric`` / ``mtp.monitor_mode``; the run's
``best_<metric>`` when it logged one, else the metric's latest value). Cache-hit runs repeat
another run's numbers and study runs hold none: both are listed and counted apart.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtp_core.direction import Direction
from tracking.client import TrackingClient
from tracking.errors import ExperimentNotFoundError
from tracking.tags import RunKind, Tag
from tracking.target import TrackingTarget

__all__ = ["ExperimentInfo", "ExperimentSummary", "MetricSummary", "RunRow",
           "list_experiments", "show_experiment", "summarize"]


@dataclass(frozen=True)
class ExperimentInfo:
    name: str
    experiment_id: str
    runs: int
    training_runs: int
    last_start_ms: int | None


@dataclass(frozen=True)
class RunRow:
    """One run as ``mtp experiments show`` lists it."""

    run_id: str
    name: str
    kind: RunKind
    status: str
    start_ms: int
    duration_s: float | None  # None: still running
    metrics: dict[str, float]
    monitor_metric: str | None = None
    monitor_mode: str | None = None
    original_run_id: str | None = None

    def monitored_value(self, metric: str) -> float | None:
        for key in (f"best_{metric}", metric):
            v = self.metrics.get(key)
            if v is not None and not math.isnan(v):
                return v
        return None


@dataclass(frozen=True)
class MetricSummary:
    name: str
    count: int
    min: float
    max: float
    mean: float
    median: float
    std: float


@dataclass(frozen=True)
class ExperimentSummary:
    name: str
    experiment_id: str
    runs: list[RunRow]
    count: int  # training runs
    finished: int
    success_rate: float  # finished / count (0 with no training run)
    mean_duration_s: float | None  # over ended training runs
    metrics: list[MetricSummary]
    monitor_metric: str | None
    monitor_mode: str | None
    best_run_id: str | None
    best_value: float | None
    cache_hits: int = 0
    studies: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def summarize(name: str, experiment_id: str, runs: Sequence[RunRow]) -> ExperimentSummary:
    """The across-run summary of an experiment's runs (see the module's docstring)."""
    training = [r for r in runs if r.kind is RunKind.TRAINING]
    finished = [r for r in training if r.status == "FINISHED"]
    durations = [r.duration_s for r in training if r.duration_s is not None]
    values: dict[str, list[float]] = {}
    for r in training:
        for k, v in r.metrics.items():
            if not math.isnan(v):
                values.setdefault(k, []).append(v)
    metrics = [MetricSummary(name=k, count=len(vs), min=min(vs), max=max(vs),
                             mean=statistics.fmean(vs), median=statistics.median(vs),
                             std=statistics.stdev(vs) if len(vs) > 1 else 0.0)
               for k, vs in sorted(values.items())]
    monitors = Counter((r.monitor_metric, r.monitor_mode) for r in training
                       if r.monitor_metric and r.monitor_mode)
    monitor, mode = monitors.most_common(1)[0][0] if monitors else (None, None)
    best: RunRow | None = None
    best_value: float | None = None
    if monitor is not None and mode is not None:
        direction = Direction(mode)
        for r in finished or training:
            value = r.monitored_value(monitor)
            if value is not None and direction.improves(value, best_value):
                best, best_value = r, value
    kinds = Counter(r.kind.value for r in runs)
    return ExperimentSummary(
        name=name, experiment_id=experiment_id, runs=list(runs), count=len(training),
        finished=len(finished),
        success_rate=len(finished) / len(training) if training else 0.0,
        mean_duration_s=statistics.fmean(durations) if durations else None,
        metrics=metrics, monitor_metric=monitor, monitor_mode=mode,
        best_run_id=best.run_id if best else None, best_value=best_value,
        cache_hits=kinds.get(RunKind.CACHE_HIT.value, 0),
        studies=kinds.get(RunKind.STUDY.value, 0), kinds=dict(kinds))


def _kind(tags: dict[str, str]) -> RunKind:
    try:
        return RunKind(tags.get(Tag.RUN_KIND.value, RunKind.TRAINING.value))
    except ValueError:  # a run logged by something else than mtp: counted as training
        return RunKind.TRAINING


def _row(run: Any) -> RunRow:
    info, data = run.info, run.data
    tags = dict(data.tags)
    end = info.end_time
    return RunRow(
        run_id=str(info.run_id), name=str(info.run_name or info.run_id), kind=_kind(tags),
        status=str(info.status), start_ms=int(info.start_time or 0),
        duration_s=(end - info.start_time) / 1000.0 if end and info.start_time else None,
        metrics={k: float(v) for k, v in data.metrics.items()},
        monitor_metric=tags.get(Tag.MONITOR_METRIC.value),
        monitor_mode=tags.get(Tag.MONITOR_MODE.value),
        original_run_id=tags.get(Tag.ORIGINAL_RUN_ID.value))


def _absent(target: TrackingTarget) -> bool:
    """A local store that was never written: reading it must not create it."""
    return target.sqlite_path is not None and not Path(target.sqlite_path).is_file()


def list_experiments(target: TrackingTarget) -> list[ExperimentInfo]:
    """Every active experiment with its run counts, by name; MLflow's empty ``Default``
    experiment is left out."""
    if _absent(target):
        return []
    client = TrackingClient(target)
    out: list[ExperimentInfo] = []
    for exp in client.experiments():
        runs = client.search_runs([str(exp.experiment_id)])
        if exp.name == "Default" and not runs:
            continue
        rows = [_row(r) for r in runs]
        out.append(ExperimentInfo(
            name=str(exp.name), experiment_id=str(exp.experiment_id), runs=len(rows),
            training_runs=sum(r.kind is RunKind.TRAINING for r in rows),
            last_start_ms=max((r.start_ms for r in rows), default=None)))
    return sorted(out, key=lambda e: e.name)


def show_experiment(target: TrackingTarget, name: str) -> ExperimentSummary:
    """The runs of experiment ``name``, oldest first, and their summary;
    :class:`ExperimentNotFoundError` naming it (and the store) when there is none."""
    exp = None if _absent(target) else TrackingClient(target).mlflow.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        raise ExperimentNotFoundError(
            f"experiment {name!r} not found in {target.shown}; `mtp experiments list` shows "
            "the experiments there")
    client = TrackingClient(target)
    runs = client.search_runs([str(exp.experiment_id)],
                              order_by=["attributes.start_time ASC"])
    return summarize(name, str(exp.experiment_id), [_row(r) for r in runs])
