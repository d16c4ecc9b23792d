"""One training run on MLflow, logged from the driver, and the run a cache hit leaves.

The driver is the one process that sees every epoch of a run (rank 0 reports them to it; Ray
Train V2 refuses Tune's MLflow callback), so it alone writes to the tracking store; workers
never do. :class:`RunTracker` does the writing on a thread of its own, so neither opening the
store (importing MLflow, creating its tables) nor a slow write holds up the training loop.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracking.client import TrackingClient, now_ms
from tracking.params import flatten_params
from tracking.ref import TrackedRun
from tracking.tags import PARENT_RUN_TAG, RunKind, RunOutcome, Tag
from tracking.target import TrackingTarget

__all__ = ["DatasetRecord", "RunStart", "RunTracker", "epoch_metrics", "find_original_run",
           "record_cache_hit"]

logger = logging.getLogger(__name__)

_NOT_METRICS = ("epoch", "start_unix")
_END_TIMEOUT_S = 120.0
_MAX_ERROR = 4000


@dataclass(frozen=True)
class DatasetRecord:
    """The data a run trained on: recorded as the run's MLflow dataset input."""

    name: str
    content_hash: str  # sha256 of the data's content (``mtp.data_hash``)
    source: Mapping[str, Any]  # the task's dataset section, as given


@dataclass(frozen=True)
class RunStart:
    """What is known of a run when it starts: its place, parameters, tags and data."""

    experiment: str
    run_name: str
    params: Mapping[str, Any]  # nested (a task's canonical dict); logged flattened
    tags: Mapping[str, str]
    dataset: DatasetRecord | None = None
    parent: TrackedRun | None = None  # a study's parent run
    kind: RunKind = RunKind.TRAINING
    extra_tags: Mapping[str, str] = field(default_factory=dict)

    def all_tags(self) -> dict[str, str]:
        tags = {**self.tags, **self.extra_tags, Tag.RUN_KIND.value: self.kind.value,
                Tag.CACHE_HIT.value: str(self.kind is RunKind.CACHE_HIT).lower()}
        if self.parent is not None:
            tags[PARENT_RUN_TAG] = self.parent.run_id
        return tags


def epoch_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """An epoch record's numbers as metrics (flags and the epoch itself left out)."""
    return {k: float(v) for k, v in record.items()
            if k not in _NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)}


def _open_run(client: TrackingClient, start: RunStart,
              start_ms: int | None = None) -> TrackedRun:
    exp = client.experiment_id(start.experiment)
    run_id = client.create_run(exp, start.run_name, start.all_tags(), start_ms)
    client.log_params(run_id, flatten_params(start.params))
    if start.dataset is not None:
        client.log_dataset(run_id, name=start.dataset.name, digest=start.dataset.content_hash,
                           source={**start.dataset.source,
                                   "content_hash": start.dataset.content_hash})
    return TrackedRun(uri=client.target.uri, experiment_id=exp, run_id=run_id)


class RunTracker:
    """One MLflow run of a training run, written in the background.

    Lifecycle: constructing it starts a thread that opens the store and creates the run
    (parameters, tags, dataset input); :meth:`log_epoch` queues an epoch's metrics with
    ``step=epoch`` (an epoch seen again after a worker restart is skipped); :meth:`end`
    queues the final metrics, tags and artifacts, ends the run as FINISHED, FAILED (with the
    error as the ``mtp.error`` tag) or KILLED, and waits, bounded, for the writes. The first
    failure of a write is logged once as a warning and nothing more of this run is written:
    a tracking store that is down never fails the training.
    """

    def __init__(self, target: TrackingTarget, start: RunStart, *,
                 client_factory: Callable[[TrackingTarget], TrackingClient] = TrackingClient,
                 ) -> None:
        self.target = target
        self.start = start
        self.run: TrackedRun | None = None
        self._start_ms = now_ms()  # the run's start, not when the store was open
        self._client: TrackingClient | None = None
        self._failed = False
        self._last_epoch = 0
        self._ended = False
        self._started = threading.Event()
        self._ops: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._ops.put(lambda: self._begin(client_factory))
        self._thread = threading.Thread(target=self._work, name="mtp-tracking", daemon=True)
        self._thread.start()

    # -- the driver's side ---------------------------------------------------------------------

    def wait_started(self, timeout_s: float = _END_TIMEOUT_S) -> TrackedRun | None:
        """Where the run is logged, once it is created (None: it could not be, or not within
        ``timeout_s``)."""
        self._started.wait(timeout_s)
        return self.run

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        epoch = int(record.get("epoch", 0))
        if epoch <= self._last_epoch or self._ended:
            return
        self._last_epoch = epoch
        metrics = epoch_metrics(record)
        self._ops.put(lambda: self._log(metrics, epoch))

    def end(self, outcome: RunOutcome, *, metrics: Mapping[str, float] | None = None,
            step: int = 0, tags: Mapping[str, str] | None = None,
            artifacts: Iterable[Path] = (), error: str | None = None,
            timeout_s: float = _END_TIMEOUT_S) -> TrackedRun | None:
        """End the run; returns where it was logged (None: it could not be)."""
        if self._ended:
            return self.run
        self._ended = True
        final_tags = dict(tags or {})
        if error:
            final_tags[Tag.ERROR.value] = error[:_MAX_ERROR]
        files = list(artifacts)
        finite = {k: float(v) for k, v in (metrics or {}).items() if not math.isnan(float(v))}
        self._ops.put(lambda: self._finish(outcome, finite, step, final_tags, files))
        self._ops.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("tracking: run %s not fully written to %s within %.0f s; the "
                           "rest is written in the background while this process lives",
                           self.start.run_name, self.target.shown, timeout_s)
        return self.run

    # -- the tracking thread -------------------------------------------------------------------

    def _work(self) -> None:
        while (op := self._ops.get()) is not None:
            if self._failed:
                continue
            try:
                op()
            except Exception as err:  # noqa: BLE001 - tracking never fails training
                self._failed = True
                logger.warning("tracking: run %s is not logged to %s from here on: %s: %s",
                               self.start.run_name, self.target.shown, type(err).__name__,
                               str(err).splitlines()[0] if str(err) else "")
                logger.debug("tracking failure", exc_info=True)

    def _begin(self, client_factory: Callable[[TrackingTarget], TrackingClient]) -> None:
        try:
            self._client = client_factory(self.target)
            self.run = _open_run(self._client, self.start, self._start_ms)
        finally:
            self._started.set()

    def _log(self, metrics: Mapping[str, float], epoch: int) -> None:
        assert self._client is not None and self.run is not None
        self._client.log_metrics(self.run.run_id, metrics, step=epoch)

    def _finish(self, outcome: RunOutcome, metrics: Mapping[str, float], step: int,
                tags: Mapping[str, str], files: list[Path]) -> None:
        assert self._client is not None and self.run is not None
        run_id = self.run.run_id
        self._client.log_metrics(run_id, metrics, step=step)
        self._client.set_tags(run_id, tags)
        try:
            self._client.log_artifacts(run_id, files)
        finally:  # the run ends with its outcome even when an artifact could not be copied
            self._client.end_run(run_id, outcome)


def find_original_run(client: TrackingClient, cache_key: str) -> str | None:
    """The newest finished run that trained the result of ``cache_key`` (any experiment)."""
    ids = client.experiment_ids()
    if not ids:
        return None
    found = client.search_runs(
        ids, filter_string=(f"tags.`{Tag.CACHE_KEY.value}` = '{cache_key}' and "
                            f"tags.`{Tag.RUN_KIND.value}` = '{RunKind.TRAINING.value}' and "
                            "attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    return str(found[0].info.run_id) if found else None


def record_cache_hit(target: TrackingTarget, start: RunStart, *, cache_key: str,
                     metrics: Mapping[str, float], step: int, source: str,
                     stored: TrackedRun | None = None,
                     client_factory: Callable[[TrackingTarget], TrackingClient] = TrackingClient,
                     ) -> TrackedRun | None:
    """A finished run for a result served without training: tagged ``mtp.cache_hit=true`` and
    ``mtp.original_run_id`` (the run found by its cache-key tag, else ``stored``, the run the
    cached result says trained it, when it is in the same store), with the result's final
    metrics. None (and one warning) when the store cannot be written."""
    try:
        client = client_factory(target)
        original = find_original_run(client, cache_key)
        if original is None and stored is not None and stored.uri in (target.uri, target.shown):
            original = stored.run_id
        extra = {Tag.CACHE_SOURCE.value: source,
                 **({Tag.ORIGINAL_RUN_ID.value: original} if original else {})}
        hit = RunStart(experiment=start.experiment, run_name=start.run_name,
                       params=start.params, tags=start.tags, dataset=start.dataset,
                       parent=start.parent, kind=RunKind.CACHE_HIT,
                       extra_tags={**start.extra_tags, **extra})
        run = _open_run(client, hit)
        client.log_metrics(run.run_id, {k: v for k, v in metrics.items()
                                        if not math.isnan(float(v))}, step=step)
        client.end_run(run.run_id, RunOutcome.FINISHED)
        if original is None:
            logger.info("tracking: no run in %s trained cache key %s; the cache-hit run %s "
                        "points at none", target.shown, cache_key[:16], run.run_id)
        return run
    except Exception as err:  # noqa: BLE001 - tracking never fails a run
        logger.warning("tracking: the cache hit of %s is not logged to %s: %s: %s",
                       start.run_name, target.shown, type(err).__name__,
                       str(err).splitlines()[0] if str(err) else "")
        return None
