"""Registering a finished run's model in the model registry (:mod:`tracking.models`).

``registry.register_as`` in a task registers the run on success (:func:`register_on_success`);
``mtp models register`` and branches call :func:`register_run`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tracking.models import LineageRelation, ModelRegistry, ModelRegistryError, ModelVersion
from trainer.result import TrainingResult, load_result

__all__ = ["mark_versions_verified", "open_model_registry", "register_on_success",
           "register_run", "version_tags"]

logger = logging.getLogger(__name__)


def open_model_registry(storage: str | Path, tracking_uri: str | None = None) -> ModelRegistry:
    """The registry of ``storage``'s platform database and tracking store (``tracking_uri``,
    else ``MLFLOW_TRACKING_URI``, else the platform database)."""
    from database import open_database
    from tracking.target import resolve_target

    root = Path(storage).expanduser().resolve()
    return ModelRegistry(resolve_target(tracking_uri, root, source="--tracking-uri"),
                         open_database(root))


def version_tags(result: TrainingResult) -> dict[str, str]:
    """The tags a version carries: what the run's MLflow run is tagged with, plus
    ``verified`` (false until ``mtp verify`` says otherwise) and the monitored value."""
    from tracking.tags import Tag

    best = result.best_metrics.get(result.monitor_metric)
    tags = {
        Tag.TASK_ID.value: result.task_id,
        Tag.TASK_NAME.value: result.task_name,
        Tag.DATA_HASH.value: result.data_hash,
        Tag.SEED.value: str(result.seed),
        Tag.CACHE_KEY.value: result.cache_key or "",
        Tag.WEIGHTS_HASH.value: result.weights_hash,
        Tag.WORLD_SIZE.value: str(result.world_size),
        Tag.STRATEGY.value: result.strategy,
        Tag.MONITOR_METRIC.value: result.monitor_metric,
        Tag.MONITOR_MODE.value: result.monitor_mode,
        "mtp.monitor_value": "" if best is None else f"{result.monitor_metric}={best:.6g}",
        "verified": "false",
    }
    tags.update({f"mtp.version.{k}": v for k, v in sorted(result.versions.items())})
    return {k: v for k, v in tags.items() if v != ""}


def register_run(run_dir: str | Path, name: str, *, storage: str | Path,
                 tracking_uri: str | None = None, parent: int | None = None,
                 relation: LineageRelation = LineageRelation.ROOT,
                 changes: Mapping[str, Sequence[Any]] | None = None) -> ModelVersion:
    """Register the model of the finished run in ``run_dir`` as a new version of ``name``."""
    result = load_result(run_dir)
    if result.diverged is not None:
        raise ModelRegistryError(f"{run_dir}: training diverged ({result.diverged.describe()}); "
                                 "a diverged run is never registered")
    registry = open_model_registry(storage, tracking_uri)
    tracked = result.tracking
    same_store = tracked is not None and tracked.uri in (registry.target.uri,
                                                         registry.target.shown)
    return registry.register(
        name, Path(result.run_dir).resolve(),
        run_id=tracked.run_id if tracked is not None and same_store else None,
        tags=version_tags(result), cache_key=result.cache_key, parent=parent,
        relation=relation, changes=changes,
        description=f"task {result.task_name} ({result.task_kind}), {result.epochs_completed} "
                    f"epochs, {result.monitor_metric} "
                    f"{result.best_metrics.get(result.monitor_metric, float('nan')):.6g}")


def register_on_success(result: TrainingResult, name: str, storage: Path,
                        tracking_uri: str | None) -> ModelVersion:
    """``registry.register_as``: a new version of ``name`` for a finished run, once per run
    directory (a rerun served from the cache finds the version it registered before)."""
    registry = open_model_registry(storage, tracking_uri)
    run_dir = str(Path(result.run_dir).resolve())
    try:
        existing = [v for v in registry.versions(name) if v.run_dir == run_dir]
    except ModelRegistryError:  # no such model yet
        existing = []
    if existing:
        return existing[-1]
    version = register_run(result.run_dir, name, storage=storage, tracking_uri=tracking_uri)
    logger.info("registered %s as %s", result.run_dir, version.ref)
    return version


def mark_versions_verified(storage: Path, cache_key: str, verified: bool,
                           tracking_uri: str | None) -> list[str]:
    """``mtp verify``'s verdict on every registered version trained as ``cache_key``: their
    ``verified`` tag (true / false). MLflow is opened only when such versions exist."""
    from sqlalchemy import func, select

    from database import open_database
    from database.schema import MODEL_VERSIONS

    db = open_database(storage)
    n = db.read(lambda conn: conn.execute(select(func.count()).select_from(MODEL_VERSIONS)
                                          .where(MODEL_VERSIONS.c.cache_key == cache_key))
                .scalar_one(), "versions of a result")
    if not n:
        return []
    marked = open_model_registry(storage, tracking_uri).mark_verified(cache_key, verified)
    logger.info("verify: %s tagged verified=%s", ", ".join(marked), str(verified).lower())
    return marked
