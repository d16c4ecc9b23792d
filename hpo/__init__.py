"""Hyperparameter search with Ray Tune over training tasks.

``tune_task(path)`` runs the study a config's ``search`` section describes; ``run_study``
takes a :class:`SearchSpec` and either a base task (each trial trains it) or a plain objective.
Import from ``hpo.study`` for the full API.
"""

from hpo.errors import HpoError, MetricNotReportedError, SearchConfigError, StudyFailedError
from hpo.spec import SchedulerName, SearcherName, SearchSpec
from hpo.study import StudyResult, TrialRecord, TrialStatus, run_study, tune_task

__all__ = [
    "HpoError",
    "MetricNotReportedError",
    "SchedulerName",
    "SearchConfigError",
    "SearchSpec",
    "SearcherName",
    "StudyFailedError",
    "StudyResult",
    "TrialRecord",
    "TrialStatus",
    "run_study",
    "tune_task",
]
