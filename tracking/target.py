"""Where runs are tracked: the URI, the artifact folder, and whether tracking is on at all.

Resolution, first match wins: ``tracking.uri`` in the task (or ``--tracking-uri``), then
``MLFLOW_TRACKING_URI``, then the platform database (:func:`database.url.database_url`: the
SQLite file ``<storage>/_db/mtp.db`` unless ``MTP_DATABASE_URL`` names another). MLflow's
tables live in that database next to the platform's own (all prefixed ``mtp_``), and the
artifacts of a database-backed store go to ``<storage>/_mlflow/artifacts``. An MLflow server
(``http(s)://``) keeps its own artifacts.

``MTP_TRACKING=off`` (or ``0``/``false``/``no``) turns tracking off for every run of the
process, whatever the tasks say; the test suite runs that way.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mtp_core.spec import TrackingSpec
from tracking.errors import TrackingConfigError

__all__ = ["ARTIFACTS_DIR", "MLFLOW_URI_ENV", "SCHEMES", "TRACKING_ENV", "TrackingTarget",
           "prepare_store", "resolve_target", "tracking_enabled", "tracking_off_by_env"]

logger = logging.getLogger(__name__)

TRACKING_ENV = "MTP_TRACKING"
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
#: the artifact folder of a database-backed store, under the storage path
ARTIFACTS_DIR = Path("_mlflow") / "artifacts"
#: URI schemes the platform hands to MLflow (a ``+driver`` suffix is allowed on databases)
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file")
_SERVER_SCHEMES = ("http", "https")
_OFF = ("off", "0", "false", "no")
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def tracking_off_by_env() -> bool:
    """``MTP_TRACKING`` says off for this process."""
    return os.environ.get(TRACKING_ENV, "").strip().lower() in _OFF


def tracking_enabled(spec: TrackingSpec) -> bool:
    """The task asks for tracking and the process does not turn it off."""
    return spec.enabled and not tracking_off_by_env()


@dataclass(frozen=True)
class TrackingTarget:
    """A resolved tracking store. ``uri`` may hold a database password: show ``shown``."""

    uri: str
    shown: str
    source: str  # where the URI came from, for messages
    artifact_location: str | None  # the experiments' artifact root; None: the server decides
    sqlite_path: Path | None  # a local SQLite store's file

    @property
    def is_server(self) -> bool:
        return urllib.parse.urlsplit(self.uri).scheme in _SERVER_SCHEMES


def resolve_target(uri: str | None, storage: Path | None, *,
                   source: str = "tracking.uri") -> TrackingTarget:
    """The store for ``uri`` (a task's ``tracking.uri`` or ``--tracking-uri``, named by
    ``source``), else ``MLFLOW_TRACKING_URI``, else the platform database under ``storage``.
    Raises :class:`TrackingConfigError` naming the source of a URI whose scheme MLflow cannot
    use, and the database's own config error for a bad ``MTP_DATABASE_URL``."""
    env = os.environ.get(MLFLOW_URI_ENV) or None
    if uri is not None:
        text, where = uri.strip(), source
    elif env is not None:
        text, where = env.strip(), MLFLOW_URI_ENV
    else:
        return _database_target(storage)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme.split("+")[0] not in SCHEMES or scheme.count("+") > 1:
        raise TrackingConfigError(
            f"{where}={text!r}: scheme {scheme or '(none)'!r} is not a tracking store; "
            f"allowed: {', '.join(s + '://' for s in SCHEMES)} (an MLflow server or a "
            "database URL)")
    sqlite_path = _sqlite_file(text) if scheme.startswith("sqlite") else None
    if scheme.startswith("sqlite") and sqlite_path is None:
        raise TrackingConfigError(f"{where}={text!r}: an SQLite tracking store must be a "
                                  "file (sqlite:///PATH)")
    server = scheme in _SERVER_SCHEMES
    artifacts = None if server or storage is None else _artifacts(storage)
    return TrackingTarget(uri=text, shown=_hide_password(text), source=where,
                          artifact_location=artifacts, sqlite_path=sqlite_path)


def _database_target(storage: Path | None) -> TrackingTarget:
    # SQLAlchemy loads only when tracking resolves its store, never with `import tracking`
    from database.url import database_url, redacted

    url = database_url(storage)
    if url.drivername.startswith("sqlite"):
        # MLflow's own URL form for a file: sqlite:////abs/path
        path = Path(str(url.database)).resolve()
        text = f"sqlite:///{path}"
        return TrackingTarget(uri=text, shown=text, source="the platform database",
                              artifact_location=_artifacts(storage) if storage else None,
                              sqlite_path=path)
    return TrackingTarget(uri=url.render_as_string(hide_password=False), shown=redacted(url),
                          source="the platform database (MTP_DATABASE_URL)",
                          artifact_location=_artifacts(storage) if storage else None,
                          sqlite_path=None)


def _artifacts(storage: Path) -> str:
    return (Path(storage).expanduser().resolve() / ARTIFACTS_DIR).as_uri()


def _sqlite_file(uri: str) -> Path | None:
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:]).expanduser().resolve()


def _hide_password(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


_prepared: set[str] = set()
_prepared_lock = threading.Lock()


def prepare_store(target: TrackingTarget) -> None:
    """Before this process first opens ``target`` with MLflow: a local SQLite file gets its
    folder and WAL mode (concurrent readers while one writes: trials of a study log at once),
    and MLflow's tables are created under a file lock (MLflow creates them on first open
    without one, and two processes opening a fresh file at once collide); an MLflow server's
    HTTP calls get bounded retries unless the user set their own (MLflow's default retries a
    dead server for minutes)."""
    with _prepared_lock:
        if target.uri in _prepared:
            return
        if target.is_server:
            for key, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        if target.sqlite_path is not None:
            _prepare_sqlite(target)
        _prepared.add(target.uri)


def _prepare_sqlite(target: TrackingTarget) -> None:
    path = target.sqlite_path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    # "Creating initial MLflow database tables..." on stderr is not news for a run's output
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    with open(path.with_name(path.name + ".mlflow-init.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            con = sqlite3.connect(path, timeout=30)
            try:
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            finally:
                con.close()
            if str(mode).lower() != "wal":
                logger.warning("tracking store %s stays in journal mode %s (WAL refused): "
                               "concurrent runs may wait on each other", path, mode)
            from mlflow.tracking import MlflowClient

            # opening the store creates (or checks) MLflow's tables, once, under the lock
            MlflowClient(target.uri)._tracking_client.store  # noqa: B018
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
