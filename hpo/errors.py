"""Errors of hyperparameter search (under the platform's root ``MtpError``)."""

from __future__ import annotations

from mtp_core.errors import ConfigError, MtpError

__all__ = ["HpoError", "MetricNotReportedError", "SearchConfigError", "StudyFailedError"]


class HpoError(MtpError):
    """Root of the hpo package's errors."""


class SearchConfigError(HpoError, ConfigError):
    """A bad ``search`` section: exits with code 2 like every config error."""


class MetricNotReportedError(SearchConfigError):
    """A trial's report lacks ``search.metric`` (raised in the trial; the study stops at once)."""


class StudyFailedError(HpoError):
    """The study ran but produced no usable trial (every trial failed), or could not start
    any trial within ``search.trial_start_timeout_s``: exit code 1."""
