"""Between the platform's records and the ``mtp.v1`` messages (no logic of their own)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cluster.queue import Progress, QueueState, StopRequest, TaskRecord
from mtp.v1 import registry_pb2, training_pb2
from mtp_core.resources import Resources, TaskResources

__all__ = ["comparison_pb", "progress_of", "progress_pb", "record_of", "resources_of",
           "resources_pb", "state_of", "state_pb", "task_pb", "version_pb"]

_STATES = {s: getattr(training_pb2, f"TASK_STATE_{s.value}") for s in QueueState}
_FROM_PB = {v: k for k, v in _STATES.items()}


def state_pb(state: QueueState) -> Any:
    """The ``TaskState`` value (an int the stubs type as their enum)."""
    return _STATES[state]


def state_of(value: int) -> QueueState:
    try:
        return _FROM_PB[value]
    except KeyError:
        raise ValueError(f"states: {value} is not a task state; allowed: "
                         + ", ".join(f"{int(v)} ({k.value})" for k, v in _STATES.items())
                         ) from None


def _finite(values: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (values or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def resources_pb(r: Resources, workers: int = 0) -> training_pb2.Resources:
    return training_pb2.Resources(cpu=r.cpu, gpu=r.gpu, memory_bytes=r.memory, workers=workers)


def resources_of(msg: training_pb2.Resources) -> Resources:
    return Resources(msg.cpu, msg.gpu, msg.memory_bytes)


def progress_of(msg: training_pb2.Progress) -> Progress:
    return Progress(msg.epoch, msg.epochs or None, dict(msg.metrics),
                    msg.checkpoint_epoch or None, msg.at)


def record_of(msg: training_pb2.Task) -> TaskRecord:
    """A task as a remote server sent it, as the CLI's formatters take it (per-worker
    resources are the totals split evenly; ``ran_s`` is the server's, up to its ``now``)."""
    n = max(msg.resources.workers, 1)
    r = msg.resources
    result = None
    if msg.HasField("result"):
        result = {"weights_hash": msg.result.weights_hash,
                  "best_metrics": dict(msg.result.best_metrics),
                  "test_metrics": dict(msg.result.test_metrics),
                  "epochs_completed": msg.result.epochs_completed,
                  "run_dir": msg.result.run_dir, "data_hash": msg.result.data_hash,
                  "seed": msg.result.seed, "cache_hit": msg.result.cache_hit}
    run_dir = Path(msg.run_dir)
    return TaskRecord(
        id=msg.id, name=msg.name, task_id=msg.task_id, priority=msg.priority,
        resources=TaskResources(n, r.cpu / n, r.gpu / n, 0.0, r.memory_bytes / n), config="",
        config_path="", storage=str(run_dir.parent), run_name=run_dir.name,
        submitter=msg.submitter, submitted_at=msg.submitted_at, state=state_of(msg.state),
        preemptible=msg.preemptible, max_attempts=msg.max_attempts,
        max_runtime_s=msg.max_runtime_s or None, request_id=msg.request_id or None,
        started_at=msg.started_at or None, ended_at=msg.ended_at or None,
        attempts=msg.attempts, ran_s=msg.ran_s, preemptions=msg.preemptions,
        reason=msg.reason, request=StopRequest(msg.stop_request) if msg.stop_request else None,
        job_id=msg.job_id or None,
        progress=progress_of(msg.progress) if msg.HasField("progress") else None,
        result=result, error=msg.error or None)


def progress_pb(p: Progress) -> training_pb2.Progress:
    return training_pb2.Progress(epoch=p.epoch, epochs=p.epochs or 0, percent=p.percent,
                                 metrics=_finite(p.metrics),
                                 checkpoint_epoch=p.checkpoint_epoch or 0, at=p.at)


def task_pb(rec: TaskRecord, now: float) -> training_pb2.Task:
    d = rec.demand
    msg = training_pb2.Task(
        id=rec.id, name=rec.name, task_id=rec.task_id, priority=rec.priority,
        state=state_pb(rec.state), reason=rec.reason, submitter=rec.submitter,
        submitted_at=rec.submitted_at, started_at=rec.started_at or 0.0,
        ended_at=rec.ended_at or 0.0, attempts=rec.attempts, max_attempts=rec.max_attempts,
        preemptions=rec.preemptions, waited_s=rec.waited_at(now), ran_s=rec.ran_at(now),
        resources=training_pb2.Resources(cpu=d.cpu, gpu=d.gpu, memory_bytes=d.memory,
                                         workers=rec.resources.num_workers),
        job_id=rec.job_id or "", run_dir=str(Path(rec.storage) / rec.run_name),
        error=rec.error or "", stop_request=rec.request.value if rec.request else "",
        preemptible=rec.preemptible, max_runtime_s=rec.max_runtime_s or 0.0,
        request_id=rec.request_id or "")
    if rec.progress is not None:
        msg.progress.CopyFrom(progress_pb(rec.progress))
    if rec.result:
        r = rec.result
        msg.result.CopyFrom(training_pb2.TaskResult(
            weights_hash=str(r.get("weights_hash", "")), best_metrics=_finite(r.get(
                "best_metrics")), test_metrics=_finite(r.get("test_metrics")),
            epochs_completed=int(r.get("epochs_completed") or 0),
            run_dir=str(r.get("run_dir", "")), data_hash=str(r.get("data_hash", "")),
            seed=str(r.get("seed", "")), cache_hit=bool(r.get("cache_hit"))))
    return msg


def _run_metrics(run_dir: str) -> dict[str, float]:
    """A version's numbers: its run's best validation metrics and test metrics."""
    try:
        result = json.loads((Path(run_dir) / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    return {**_finite(result.get("best_metrics")),
            **{k if k.startswith("test_") else f"test_{k}": v
               for k, v in _finite(result.get("test_metrics")).items()}}


def version_pb(v: Any) -> registry_pb2.ModelVersion:
    """A ``tracking.models.ModelVersion``."""
    return registry_pb2.ModelVersion(
        name=v.name, version=v.version, run_dir=v.run_dir, run_id=v.run_id or "",
        tags=dict(v.tags), metrics=_run_metrics(v.run_dir), aliases=list(v.aliases),
        parent_version=v.parent_version or 0, relation=str(v.relation.value),
        changes={k: json.dumps(list(pair), default=str) for k, pair in v.changes.items()},
        verified=v.tags.get("verified") == "true", created_at=v.created_at,
        created_by=v.created_by)


def comparison_pb(c: Any, a: Any, b: Any) -> registry_pb2.Comparison:
    """A ``trainer.compare.Comparison`` of versions ``a`` and ``b``."""
    t = c.test
    return registry_pb2.Comparison(
        a=version_pb(a), b=version_pb(b), rows=c.rows, data_source=c.data_source,
        metrics=[registry_pb2.MetricComparison(metric=str(m.metric.value), a=m.a, b=m.b,
                                               difference=m.difference) for m in c.metrics],
        test=str(t.method.value), statistic=float(t.statistic),
        p_value=float(t.p_value or 0.0),
        interval_low=float(t.interval[0]) if t.interval else 0.0,
        interval_high=float(t.interval[1]) if t.interval else 0.0,
        significant=bool(t.significant), summary=t.describe(c.labels), notes=list(c.notes))
