"""The MLflow store as the platform uses it: MLflow's client behind busy-retries and limits.

:class:`TrackingClient` opens the store of a :class:`tracking.target.TrackingTarget` (a local
SQLite file is prepared first: folder, WAL, tables), finds or creates experiments with their
artifact root under the storage path, and writes in batches within MLflow's per-call limits.
Every write is retried on a busy SQLite database (:func:`tracking._retry.retry_busy`).
Importing this module does not import MLflow; constructing a client does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracking._retry import retry_busy
from tracking.tags import RunOutcome
from tracking.target import TrackingTarget, prepare_store

__all__ = ["TrackingClient", "now_ms"]

_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
_MAX_TAG_VALUE = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH


def now_ms() -> int:
    return int(time.time() * 1000)


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class TrackingClient:
    """One process's handle on a tracking store (MLflow caches the store per URI)."""

    def __init__(self, target: TrackingTarget) -> None:
        from mlflow.tracking import MlflowClient

        prepare_store(target)
        self.target = target
        self.mlflow = MlflowClient(target.uri)

    # -- experiments ---------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (artifacts under the storage path for a
        database store) when missing; a concurrent creation by another process is found."""
        from mlflow.exceptions import MlflowException

        found = retry_busy(lambda: self.mlflow.get_experiment_by_name(name), "experiment lookup")
        if found is not None:
            if found.lifecycle_stage == "deleted":  # a deleted name stays taken: bring it back
                retry_busy(lambda: self.mlflow.restore_experiment(found.experiment_id),
                           "experiment restore")
            return str(found.experiment_id)
        try:
            return str(retry_busy(lambda: self.mlflow.create_experiment(
                name, artifact_location=self.target.artifact_location), "experiment creation"))
        except MlflowException:
            again = self.mlflow.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    # -- writes --------------------------------------------------------------------------------

    def create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str],
                   start_ms: int | None = None) -> str:
        run = retry_busy(lambda: self.mlflow.create_run(
            experiment_id, run_name=run_name, tags=dict(tags), start_time=start_ms),
            "run creation")
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        for chunk in _chunks(sorted(params.items()), _PER_BATCH):
            retry_busy(lambda c=chunk: self.mlflow.log_batch(  # type: ignore[misc]
                run_id, params=[Param(k, v) for k, v in c]), "params")

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [(k, str(v)[:_MAX_TAG_VALUE]) for k, v in sorted(tags.items())]
        for chunk in _chunks(items, _PER_BATCH):
            retry_busy(lambda c=chunk: self.mlflow.log_batch(  # type: ignore[misc]
                run_id, tags=[RunTag(k, v) for k, v in c]), "tags")

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int,
                    timestamp_ms: int | None = None) -> None:
        from mlflow.entities import Metric

        if not metrics:
            return
        ts = now_ms() if timestamp_ms is None else timestamp_ms
        batch = [Metric(k, float(v), ts, step) for k, v in sorted(metrics.items())]
        retry_busy(lambda: self.mlflow.log_batch(run_id, metrics=batch), "metrics")

    def log_dataset(self, run_id: str, *, name: str, digest: str, source: Mapping[str, Any],
                    context: str = "train") -> None:
        """The run's dataset as an MLflow dataset input: a metadata-only dataset whose digest
        is ``digest`` (MLflow keeps 36 characters: the content hash's first 36 hex digits;
        the whole hash is in the source and the ``mtp.data_hash`` tag)."""
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = MetaDataset(CodeDatasetSource(dict(source)), name=name, digest=digest[:36])
        entry = DatasetInput(dataset._to_mlflow_entity(),
                             tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        retry_busy(lambda: self.mlflow.log_inputs(run_id, datasets=[entry]), "dataset input")

    def log_artifacts(self, run_id: str, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_file():
                self.mlflow.log_artifact(run_id, str(path))

    def end_run(self, run_id: str, outcome: RunOutcome) -> None:
        retry_busy(lambda: self.mlflow.set_terminated(run_id, status=outcome.value),
                   "run end")

    def reopen_run(self, run_id: str) -> None:
        retry_busy(lambda: self.mlflow.update_run(run_id, status="RUNNING"), "run reopen")

    # -- reads ---------------------------------------------------------------------------------

    def search_runs(self, experiment_ids: list[str], filter_string: str = "",
                    order_by: list[str] | None = None, max_results: int | None = None,
                    ) -> list[Any]:
        """Every matching run (all pages), or the first ``max_results``."""
        out: list[Any] = []
        token: str | None = None
        page = min(max_results or 1000, 1000)
        while True:
            found = retry_busy(lambda t=token: self.mlflow.search_runs(  # type: ignore[misc]
                experiment_ids, filter_string=filter_string, order_by=order_by,
                max_results=page, page_token=t), "run search")
            out.extend(found)
            token = found.token
            if not token or (max_results is not None and len(out) >= max_results):
                return out[:max_results] if max_results is not None else out

    def experiment_ids(self) -> list[str]:
        return [str(e.experiment_id) for e in self.experiments()]

    def experiments(self) -> list[Any]:
        out: list[Any] = []
        token: str | None = None
        while True:
            page = retry_busy(lambda t=token: self.mlflow.search_experiments(  # type: ignore[misc]
                max_results=1000, page_token=t), "experiment search")
            out.extend(page)
            token = page.token
            if not token:
                return out
