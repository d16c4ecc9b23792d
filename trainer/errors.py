"""Exceptions of the trainer package.

Every error the trainer raises derives from :class:`TrainerError`, under the platform's root
:class:`mtp_core.errors.MtpError`. Input errors (:class:`mtp_core.errors.ConfigError`,
:class:`mtp_core.errors.DataError`, and here :class:`CheckpointError` and
:class:`ResultFileError`) derive from :class:`mtp_core.errors.InputError` and exit with code 2.
They are plain ``Exception`` subclasses with a single message argument, so they pickle across
Ray actor boundaries.
"""

from __future__ import annotations

from mtp_core.errors import EXIT_DIVERGED, ConfigError, DataError, InputError, MtpError

__all__ = ["CheckpointError", "ConfigError", "DataError", "ResultFileError", "TrainerError",
           "TrainingDivergedError", "TrainingFailedError"]


class TrainerError(MtpError):
    """Root of every error raised by the trainer package."""


class CheckpointError(TrainerError, InputError):
    """A run directory cannot be used for this task (for example another task's run)."""


class ResultFileError(TrainerError, InputError):
    """A path given as a run directory holds no readable ``result.json`` (missing, unreadable,
    or not a training result); names the file."""


class TrainingFailedError(TrainerError):
    """Training started but did not finish; the message says why and where checkpoints are."""


class TrainingDivergedError(TrainerError):
    """A loss or validation metric became NaN or infinite: training stopped at that epoch, the
    run is stored (``result.json`` says ``diverged``) and is never cached or shared (exit 3)."""

    exit_code = EXIT_DIVERGED
