"""The error root of the platform.

Every error the platform raises derives from :class:`MtpError`. Errors that mean "your input is
wrong" (a config field, a data file, a command-line argument, a run directory that belongs to
another task) also derive from :class:`InputError`; the CLI exits with code 2 for them and with
code 1 for every other :class:`MtpError` (a platform or training failure). Each package has its
own root (``TrainerError``, ``ClusterError``, ``ConsistencyError``, ``HpoError``) under
``MtpError``. A class may set its own ``exit_code`` (a diverged training run exits 3).

All of them are plain ``Exception`` subclasses whose only argument is the message, so they
pickle across Ray actor and task boundaries unchanged.
"""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EXIT_DIVERGED", "EXIT_FAILED", "ConfigError", "DataError",
           "InputError", "MtpError", "exit_code_for", "raised_error"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


class MtpError(Exception):
    """Root of every error the platform raises; a platform failure (exit code 1)."""

    exit_code = EXIT_FAILED


class InputError(MtpError):
    """The user's input is wrong; the message names the field or file, the value and what is
    allowed (exit code 2). Mixed into the input errors of every package."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(InputError):
    """The task configuration is invalid: names the field, the bad value and what is allowed."""


class DataError(InputError):
    """The dataset cannot be used: missing file, empty table, absent column, wrong shape."""


def exit_code_for(err: MtpError) -> int:
    """2 for input errors, 3 for a diverged training run, 1 for every other platform error
    (an input error is an input error whatever else it is)."""
    return EXIT_BAD_INPUT if isinstance(err, InputError) else err.exit_code


def raised_error(err: BaseException) -> BaseException:
    """The exception that was raised where the work ran: Ray wraps an error raised in a task or
    actor (and Tune a trial's) in its own error, whose text is the remote traceback, and keeps
    the original as ``.cause``, possibly several layers deep."""
    seen: set[int] = set()
    while isinstance(getattr(err, "cause", None), BaseException) and id(err) not in seen:
        seen.add(id(err))
        err = err.cause  # type: ignore[attr-defined]
    return err

