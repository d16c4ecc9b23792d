"""Exceptions of the tracking package, under the platform's error root.

Plain ``Exception`` subclasses with one message argument, so they pickle across Ray actor and
Tune trial boundaries. A tracking *failure* (a server down, a busy database past its retries)
never fails a training run: :class:`tracking.run.RunTracker` logs it once and carries on. Only
a tracking *configuration* that cannot work fails, at the start, as an input error.
"""

from __future__ import annotations

from mtp_core.errors import InputError, MtpError

__all__ = ["ExperimentNotFoundError", "TrackingConfigError", "TrackingError"]


class TrackingError(MtpError):
    """Root of the tracking package's errors: the tracking store failed (exit code 1)."""


class TrackingConfigError(TrackingError, InputError):
    """A tracking URI that cannot be used (``tracking.uri``, ``MLFLOW_TRACKING_URI`` or
    ``--tracking-uri``); the message names where it came from and what is allowed (exit 2)."""


class ExperimentNotFoundError(TrackingError, InputError):
    """``mtp experiments show NAME`` for an experiment the store does not hold (exit 2)."""
