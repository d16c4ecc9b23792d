"""An open platform database: its engine, its schema migrated, and transactions that retry.

SQLite (the default, one file under the storage path) runs in WAL mode, so readers never wait
for the writer; every write transaction starts with ``BEGIN IMMEDIATE``, so two writers queue
on SQLite's busy timeout instead of failing when one of them upgrades a read lock. PostgreSQL
(``MTP_DATABASE_URL`` on clusters) runs at READ COMMITTED; the platform's writes rely on primary
keys and ``INSERT ... ON CONFLICT`` rather than on isolation. Both retry a transaction that
failed for a transient reason (busy, lock timeout, serialization failure, deadlock, a dropped
connection) a bounded number of times with backoff; the transaction body must therefore be
safe to run again (it is: each is a function of the connection only).

Lifecycle: :func:`open_database` (one :class:`Database` per URL and process, migrated on first
open) → :meth:`Database.write` / :meth:`Database.read` → :meth:`Database.close` (tests).
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import QueuePool

from database.errors import DatabaseCorruptError, DatabaseError, DatabaseVersionError
from database.schema import META, METADATA, SCHEMA_HEAD, VERSION_TABLE
from database.url import database_url, redacted
from mtp_core.version import __version__

__all__ = ["Database", "close_all", "open_database"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# SQLite waits this long for a lock before a statement fails with "database is locked"
SQLITE_BUSY_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 8
_READ_ONLY = "mtp_read_only"
# one number every mtp process takes (pg_advisory_xact_lock) while it migrates PostgreSQL
_PG_MIGRATION_LOCK = 0x6D7470  # "mtp"
_SQLITE_CORRUPT = ("file is not a database", "malformed", "disk image", "not a database")
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "busy")
# serialization_failure, deadlock_detected, lock_not_available, admin/crash shutdown, cannot
# connect now, connection failures
_TRANSIENT_PG = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "08000", "08003",
                 "08006", "08001", "08004"}


class Database:
    """One database, opened by URL; see the module docstring for the lifecycle."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.is_sqlite = url.get_backend_name() == "sqlite"
        self.path = Path(url.database) if self.is_sqlite and url.database else None
        self.engine = self._engine()
        self._migrate()

    def __repr__(self) -> str:
        return f"Database({redacted(self.url)})"

    @property
    def where(self) -> str:
        """What to name in messages: the SQLite file, or the URL without its password."""
        return str(self.path) if self.path is not None else redacted(self.url)

    # -- transactions --------------------------------------------------------------------------

    def write(self, fn: Callable[[Connection], T], what: str = "write") -> T:
        """Run ``fn(connection)`` in one write transaction, committed on return; retried from
        the start after a transient failure."""
        return self._run(fn, what, read_only=False)

    def read(self, fn: Callable[[Connection], T], what: str = "read") -> T:
        """Run ``fn(connection)`` for reading, in autocommit: each statement sees the latest
        committed state (no lock, no BEGIN/COMMIT round trips); use one statement where two
        must agree."""
        return self._run(fn, what, read_only=True)

    def close(self) -> None:
        self.engine.dispose()

    def _run(self, fn: Callable[[Connection], T], what: str, *, read_only: bool) -> T:
        delay = 0.02
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.engine.connect() as conn:
                    if read_only:
                        # SQLite: no BEGIN (see _engine); PostgreSQL: autocommit, so a lookup
                        # is one round trip instead of BEGIN, SELECT, COMMIT
                        options: dict[str, Any] = {_READ_ONLY: True}
                        if not self.is_sqlite:
                            options["isolation_level"] = "AUTOCOMMIT"
                        conn = conn.execution_options(**options)
                    with conn.begin():
                        return fn(conn)
            except DBAPIError as err:
                self._raise_if_corrupt(err)
                if not self._transient(err) or attempt == MAX_ATTEMPTS:
                    raise DatabaseError(
                        f"database {self.where}: {what} failed"
                        f"{f' after {attempt} attempts' if attempt > 1 else ''}: "
                        f"{_first_line(err)}") from None
                logger.info("database %s: %s hit a transient error (%s); retry %d of %d in "
                            "%.2f s", self.where, what, _first_line(err), attempt,
                            MAX_ATTEMPTS - 1, delay)
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _transient(self, err: DBAPIError) -> bool:
        if self.is_sqlite:
            return isinstance(err, OperationalError) and any(
                s in str(err.orig).lower() for s in _TRANSIENT_SQLITE)
        code = getattr(err.orig, "sqlstate", None)
        return code in _TRANSIENT_PG or bool(err.connection_invalidated)

    def _raise_if_corrupt(self, err: BaseException) -> None:
        orig = getattr(err, "orig", err)
        if (self.is_sqlite and isinstance(orig, sqlite3.DatabaseError)
                and not isinstance(orig, sqlite3.OperationalError | sqlite3.IntegrityError)
                and any(s in str(orig).lower() for s in _SQLITE_CORRUPT)):
            raise DatabaseCorruptError(_corrupt_message(self.path, orig)) from None

    # -- engine and schema ---------------------------------------------------------------------

    def _engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True, pool_size=4, max_overflow=8)
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # pooled connections: opening one (and its PRAGMAs) costs more than a lookup. A
        # forked child never reuses them: open_database keys its Database by process id
        engine = create_engine(self.url, poolclass=QueuePool, pool_size=4, max_overflow=16,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S,
                                             "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below, not by sqlite3
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.execute("PRAGMA foreign_keys = ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # a read is its statements in autocommit (WAL: each sees a committed state, no
            # lock, no BEGIN/COMMIT round trips); a write takes the write lock up front
            if not conn.get_execution_options().get(_READ_ONLY, False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_HEAD` (created on first use), in one transaction
        that other processes opening the same database wait for."""
        try:
            current = self.read(_revision, "schema check")
            if current == SCHEMA_HEAD:
                return
            self.write(self._upgrade, "schema migration")
        except DatabaseError:
            raise
        except DBAPIError as err:  # raised outside _run (e.g. by alembic)
            self._raise_if_corrupt(err)
            raise DatabaseError(f"database {self.where}: {_first_line(err)}") from None

    def _upgrade(self, conn: Connection) -> None:
        if not self.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        current = _revision(conn)  # again: another process may have migrated meanwhile
        if current == SCHEMA_HEAD:
            return
        if current is None and not any(t.startswith("mtp_") for t in
                                       inspect(conn).get_table_names()):
            # a new database: the newest tables at once, stamped with their revision (what
            # running every migration gives; tests/database checks that the two agree)
            logger.info("database %s: creating schema %s", self.where, SCHEMA_HEAD)
            METADATA.create_all(conn)
            _VERSION.create(conn)
            conn.execute(_VERSION.insert().values(version_num=SCHEMA_HEAD))
            _set_meta(conn, "mtp_version", __version__)
            return
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("version_table", VERSION_TABLE)
        script = ScriptDirectory.from_config(cfg)
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            by = _stored_mtp_version(conn)
            raise DatabaseVersionError(
                f"database {self.where} has schema revision {current}, written by mtp "
                f"{by or '(unknown version)'}; this mtp {__version__} knows revisions up to "
                f"{SCHEMA_HEAD}: run the newer mtp (every driver and node of a cluster must "
                "run the same mtp version)")
        cfg.attributes["connection"] = conn
        logger.info("database %s: migrating schema %s -> %s", self.where,
                    current or "(empty)", SCHEMA_HEAD)
        command.upgrade(cfg, "head")
        _set_meta(conn, "mtp_version", __version__)


# Alembic's version table, as Alembic creates it (read and stamped here without importing it)
_VERSION = Table(VERSION_TABLE, MetaData(),
                 Column("version_num", String(32), nullable=False),
                 PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))


def _revision(conn: Connection) -> str | None:
    """The schema revision stored in the database (None: no platform schema yet)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    heads = conn.execute(select(_VERSION.c.version_num)).scalars().all()
    if len(heads) > 1:
        raise DatabaseError(f"schema version table {VERSION_TABLE} holds several revisions "
                            f"({', '.join(heads)}); this mtp keeps one")
    return heads[0] if heads else None


def _stored_mtp_version(conn: Connection) -> str | None:
    try:
        row = conn.execute(select(META.c.value).where(META.c.name == "mtp_version")).first()
    except DBAPIError:
        return None
    return None if row is None else str(row[0])


def _set_meta(conn: Connection, name: str, value: str) -> None:
    if conn.execute(select(META.c.name).where(META.c.name == name)).first() is None:
        conn.execute(META.insert().values(name=name, value=value))
    else:
        conn.execute(META.update().where(META.c.name == name).values(value=value))


def _corrupt_message(path: Path | None, err: BaseException) -> str:
    return (f"platform database {path} is not a readable SQLite database ({err}): move it "
            f"aside (mv {path} {path}.corrupt) and the next command starts an empty one; run "
            "directories, checkpoints, models and the local result cache are kept, the result "
            "registry's entries, lineage, alias history and MLflow runs stored in it are not "
            f"(`sqlite3 {path}.corrupt .recover` may salvage rows)")


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


_OPEN: dict[tuple[str, int], Database] = {}
_OPEN_LOCK = threading.Lock()


def open_database(where: str | Path | URL | None = None, *,
                  override: str | None = None) -> Database:
    """The platform database of a storage path (or a URL), opened once per process.

    ``where`` is a storage path (its default SQLite file, unless ``override`` or
    ``MTP_DATABASE_URL`` names another database) or a URL. Raises
    :class:`DatabaseCorruptError`, :class:`DatabaseVersionError`, :class:`DatabaseError`.
    """
    url = where if isinstance(where, URL) else database_url(where, override)
    key = (url.render_as_string(hide_password=False), os.getpid())
    with _OPEN_LOCK:
        db = _OPEN.get(key)
        if db is None:
            db = _OPEN[key] = Database(url)
        return db


def _forget_in_child() -> None:
    """A forked child opens its own connections: the parent's pooled ones are left to the
    parent (not closed from here, which would break the parent's open transactions)."""
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()  # another thread of the parent may have held it
    for db in _OPEN.values():
        db.engine.dispose(close=False)
    _OPEN.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def close_all() -> None:
    """Close every database this process opened (tests; a forked child)."""
    with _OPEN_LOCK:
        for db in _OPEN.values():
            db.close()
        _OPEN.clear()
