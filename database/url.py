"""Which database the platform uses: an explicit URL, ``MTP_DATABASE_URL``, or one SQLite file
under the storage path (created on first use; nothing to install or start)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from database.errors import DatabaseConfigError

__all__ = ["DATABASE_ENV", "SUPPORTED_DRIVERS", "database_url", "default_sqlite_path",
           "redacted"]

DATABASE_ENV = "MTP_DATABASE_URL"
#: SQLAlchemy drivers the platform is tested with.
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def default_sqlite_path(storage: str | Path) -> Path:
    """The default database file: ``<storage>/_db/mtp.db``."""
    return Path(storage).expanduser().resolve() / "_db" / "mtp.db"


def database_url(storage: str | Path | None, override: str | None = None) -> URL:
    """The platform database's URL: ``override`` (a CLI flag or a config field), else
    ``MTP_DATABASE_URL``, else SQLite under ``storage``. ``postgresql://`` means psycopg 3.
    Raises :class:`DatabaseConfigError` naming where a bad URL came from."""
    for source, text in (("--database-url", override),
                         (DATABASE_ENV, os.environ.get(DATABASE_ENV) or None)):
        if text is not None:
            return _parse(text, source)
    if storage is None:
        raise DatabaseConfigError(
            f"no database: give a storage path (its _db/mtp.db is the default) or set "
            f"{DATABASE_ENV}")
    return URL.create("sqlite", database=str(default_sqlite_path(storage)))


def redacted(url: URL) -> str:
    """The URL as it may be shown or logged: the password hidden."""
    return url.render_as_string(hide_password=True)


def _parse(text: str, source: str) -> URL:
    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise DatabaseConfigError(
            f"{source}={text!r} is not a database URL; allowed: sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in SUPPORTED_DRIVERS:
        raise DatabaseConfigError(
            f"{source}: database driver {url.drivername!r} is not supported; allowed: "
            "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE (psycopg 3)")
    if url.drivername.startswith("sqlite") and url.database in (None, "", ":memory:"):
        raise DatabaseConfigError(
            f"{source}={redacted(url)!r}: an SQLite database must be a file "
            "(sqlite:///PATH); an in-memory database is not shared between processes")
    return url
