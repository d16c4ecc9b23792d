"""Exceptions of the consistency package.

Every error the package raises derives from :class:`ConsistencyError`. They are plain
``Exception`` subclasses with a single message argument, so they pickle across Ray actor
boundaries (the result registry runs inside an actor). Messages say what happened, which file or
field is involved, and what to do about it.
"""

from __future__ import annotations

from mtp_core.errors import InputError, MtpError

__all__ = ["ConsistencyError", "EntryNotFoundError", "RegistryCorruptError"]


class ConsistencyError(MtpError):
    """Root of every error raised by the consistency package."""


class RegistryCorruptError(ConsistencyError, InputError):
    """The registry file (and its ``.bak`` backup) cannot be read; one line naming the files
    and how to recover (exit code 2: the user must act on the file). Raised in the driver
    before it starts the registry actor, and by the actor's calls when it restarted over such
    a file (Ray hands it to the caller as its ``cause``)."""


class EntryNotFoundError(ConsistencyError):
    """An operation named a cache key that the registry does not hold (or that has expired)."""
