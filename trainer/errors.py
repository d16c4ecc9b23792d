"""Exceptions of the trainer package.

Every error the trainer raises derives from :class:`TrainerError`. Errors about the user's input
(:class:`ConfigError`, :class:`DataError`) say which field or file is wrong, the value that was
given and what is allowed; the CLI turns them into exit code 2. They are plain ``Exception``
subclasses with a single message argument, so they pickle across Ray actor boundaries.
"""

from __future__ import annotations

__all__ = ["TrainerError", "ConfigError", "DataError", "CheckpointError", "TrainingFailedError"]


class TrainerError(Exception):
    """Root of every error raised by the trainer package."""


class ConfigError(TrainerError):
    """The task configuration is invalid: names the field, the bad value and what is allowed."""


class DataError(TrainerError):
    """The dataset cannot be used: missing file, empty table, absent column, wrong shape."""


class CheckpointError(TrainerError):
    """A checkpoint directory cannot be used for this task (for example another task's run)."""


class TrainingFailedError(TrainerError):
    """Training started but did not finish; the message says why and where checkpoints are."""
