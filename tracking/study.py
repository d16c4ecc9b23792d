"""A study (``mtp tune``) on MLflow: one parent run, under which every trial's training run
nests (``mlflow.parentRunId``).

The study's driver opens the parent run before any trial starts, which also creates the
store's tables and the experiment once, before the trials' processes write to it at once. Each
trial's process is the driver of its own training run and logs it as a child
(:class:`tracking.run.RunTracker` with ``RunStart.parent``). A resumed study reopens its
parent run (found by the ``mtp.study`` tag) instead of starting a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracking.client import TrackingClient
from tracking.params import flatten_params
from tracking.ref import TrackedRun
from tracking.tags import RunKind, RunOutcome, Tag
from tracking.target import TrackingTarget

__all__ = ["StudyRun"]

logger = logging.getLogger(__name__)


class StudyRun:
    """The parent run of one study: :meth:`open`, hand :attr:`run` to the trials, :meth:`end`.

    Tracking failures are logged once and end the tracking, never the study.
    """

    def __init__(self, client: TrackingClient, run: TrackedRun, name: str) -> None:
        self.client = client
        self.run = run
        self.name = name

    @classmethod
    def open(cls, target: TrackingTarget, *, experiment: str, study: str,
             tags: Mapping[str, str], params: Mapping[str, Any],
             resume: bool = False) -> StudyRun | None:
        try:
            client = TrackingClient(target)
            exp = client.experiment_id(experiment)
            run_id = _stored_parent(client, exp, study) if resume else None
            if run_id is not None:
                client.reopen_run(run_id)
            else:
                run_id = client.create_run(exp, study, {
                    **tags, Tag.RUN_KIND.value: RunKind.STUDY.value, Tag.STUDY.value: study,
                    Tag.CACHE_HIT.value: "false"})
                client.log_params(run_id, flatten_params(params))
            return cls(client, TrackedRun(uri=target.uri, experiment_id=exp, run_id=run_id),
                       study)
        except Exception as err:  # noqa: BLE001 - tracking never fails a study
            logger.warning("tracking: study %s is not logged to %s: %s: %s", study,
                           target.shown, type(err).__name__,
                           str(err).splitlines()[0] if str(err) else "")
            return None

    def end(self, outcome: RunOutcome, *, metrics: Mapping[str, float] | None = None,
            tags: Mapping[str, str] | None = None, artifacts: Iterable[Path] = (),
            error: str | None = None) -> None:
        run_id = self.run.run_id
        try:
            if metrics:
                self.client.log_metrics(run_id, metrics, step=0)
            all_tags = {**(tags or {}), **({Tag.ERROR.value: error} if error else {})}
            if all_tags:
                self.client.set_tags(run_id, all_tags)
            try:
                self.client.log_artifacts(run_id, artifacts)
            finally:
                self.client.end_run(run_id, outcome)
        except Exception as err:  # noqa: BLE001 - tracking never fails a study
            logger.warning("tracking: the end of study %s is not logged to %s: %s: %s",
                           self.name, self.client.target.shown, type(err).__name__,
                           str(err).splitlines()[0] if str(err) else "")


def _stored_parent(client: TrackingClient, experiment_id: str, study: str) -> str | None:
    found = client.search_runs(
        [experiment_id], filter_string=(f"tags.`{Tag.STUDY.value}` = '{study}' and "
                                        f"tags.`{Tag.RUN_KIND.value}` = "
                                        f"'{RunKind.STUDY.value}'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    return str(found[0].info.run_id) if found else None
