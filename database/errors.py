"""Exceptions of the database package, under the platform's error root.

Plain ``Exception`` subclasses with one message argument, so they pickle across Ray actor
boundaries (the registry and the scheduler actors use the database).
"""

from __future__ import annotations

from mtp_core.errors import InputError, MtpError

__all__ = ["DatabaseConfigError", "DatabaseCorruptError", "DatabaseError",
           "DatabaseVersionError"]


class DatabaseError(MtpError):
    """Root of the database package's errors; a database that failed (exit code 1)."""


class DatabaseConfigError(DatabaseError, InputError):
    """A database URL (flag, config or ``MTP_DATABASE_URL``) that cannot be used (exit 2)."""


class DatabaseCorruptError(DatabaseError, InputError):
    """The SQLite file is not a readable database; the message names the file and how to
    recover (exit 2: the user must act on the file)."""


class DatabaseVersionError(DatabaseError, InputError):
    """The database was written by a newer ``mtp`` (its schema revision is unknown here); the
    message names both versions (exit 2)."""
