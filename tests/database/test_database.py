"""The platform database: created on first use, migrated in place, refused when newer, a
corrupt file named with its recovery, and many processes writing at once without loss; on
SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import URL, make_url

from database import (
    Database,
    DatabaseConfigError,
    DatabaseCorruptError,
    DatabaseVersionError,
    database_url,
    default_sqlite_path,
    open_database,
)
from database.engine import MIGRATIONS
from database.schema import META, RESULTS, SCHEMA_HEAD, VERSION_TABLE
from mtp_core.errors import exit_code_for
from mtp_core.version import __version__
from tests.conftest import REPO


def _url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> URL:
    if backend == "sqlite":
        return make_url(f"sqlite:///{default_sqlite_path(tmp_path)}")
    return make_url(request.getfixturevalue("postgres_url"))


def _alembic_upgrade(url: URL, revision: str) -> None:
    """Build the schema as an older mtp left it: migrations up to ``revision`` only."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    if url.get_backend_name() == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def _revision(db: Database) -> str | None:
    return db.read(lambda c: c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                   .scalar_one_or_none())


def test_the_default_database_is_one_sqlite_file_in_wal_mode_created_on_first_use(
        tmp_path: Path) -> None:
    path = default_sqlite_path(tmp_path)
    assert path == tmp_path.resolve() / "_db" / "mtp.db" and not path.exists()
    db = Database(database_url(tmp_path))
    try:
        assert path.is_file()
        assert db.read(lambda c: c.exec_driver_sql("PRAGMA journal_mode").scalar()) == "wal"
        assert _revision(db) == SCHEMA_HEAD
        assert db.read(lambda c: c.execute(select(META.c.value).where(
            META.c.name == "mtp_version")).scalar_one()) == __version__
        tables = set(inspect(db.engine).get_table_names())
        assert {"mtp_results", "mtp_claims", "mtp_verifications", "mtp_model_versions",
                "mtp_alias_moves", "mtp_meta", VERSION_TABLE} <= tables
        assert all(t.startswith("mtp_") for t in tables)  # MLflow's tables may sit beside
    finally:
        db.close()


def test_schema_head_is_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_of_the_previous_schema_is_migrated_in_place(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = _url(backend, tmp_path, request)
    _alembic_upgrade(url, "0001")  # what mtp with the registry-only schema created
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(RESULTS.insert().values(
            key="a" * 64, task_id="t", node_id="n", run_dir="/r", model_path="/r/m",
            shared_at=1.0, expires_at=None, verified=False, entry="{}", checksum="0" * 64))
        assert "mtp_model_versions" not in inspect(conn).get_table_names()
    engine.dispose()
    db = Database(url)
    try:
        assert _revision(db) == SCHEMA_HEAD
        assert db.read(lambda c: c.execute(select(RESULTS.c.task_id)).scalars().all()) == ["t"]
        assert "mtp_alias_moves" in inspect(db.engine).get_table_names()
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_from_a_newer_mtp_is_refused_naming_both_versions(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = _url(backend, tmp_path, request)
    Database(url).close()

    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0042'"))
        conn.execute(META.update().values(value="9.1.0"))
    engine.dispose()
    with pytest.raises(DatabaseVersionError) as info:
        Database(url)
    msg = str(info.value)
    assert "schema revision 0042, written by mtp 9.1.0" in msg
    assert f"this mtp {__version__} knows revisions up to {SCHEMA_HEAD}" in msg
    assert "\n" not in msg and str(pickle.loads(pickle.dumps(info.value))) == msg


@pytest.mark.parametrize("data", [b"this is not a database" * 50, b"SQLite format 3\x00" +
                                  b"\xff" * 4000], ids=["text", "bad-header"])
def test_a_corrupt_sqlite_file_is_named_with_its_recovery_and_left_alone(
        tmp_path: Path, data: bytes) -> None:
    path = default_sqlite_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    (path.parent / "other-file").write_text("kept")
    with pytest.raises(DatabaseCorruptError) as info:
        open_database(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"platform database {path} is not a readable SQLite database")
    assert f"mv {path} {path}.corrupt" in msg and "\n" not in msg
    assert "run directories, checkpoints, models and the local result cache are kept" in msg
    assert exit_code_for(info.value) == 2
    assert path.read_bytes() == data  # nothing overwritten
    assert (path.parent / "other-file").read_text() == "kept"
    path.rename(path.with_name("mtp.db.corrupt"))
    db = open_database(tmp_path)  # the recovery the message names works
    assert _revision(db) == SCHEMA_HEAD
    db.close()


@pytest.mark.parametrize(("text_", "words"), [
    ("mysql://u@h/db", "database driver 'mysql' is not supported"),
    ("sqlite://", "an SQLite database must be a file"),
    ("not a url", "is not a database URL"),
])
def test_a_bad_database_url_is_one_line_naming_its_source(
        monkeypatch: pytest.MonkeyPatch, text_: str, words: str) -> None:
    monkeypatch.setenv("MTP_DATABASE_URL", text_)
    with pytest.raises(DatabaseConfigError) as info:
        database_url("/tmp")
    assert words in str(info.value) and "MTP_DATABASE_URL" in str(info.value)
    assert info.value.exit_code == 2
    with pytest.raises(DatabaseConfigError, match="--database-url"):
        database_url("/tmp", override=text_)


def test_postgresql_urls_mean_psycopg_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTP_DATABASE_URL", "postgresql://u:secret@db.example:5432/mtp")
    url = database_url(None)
    assert url.drivername == "postgresql+psycopg"
    from database import redacted

    assert "secret" not in redacted(url)


_WRITER = """
import sys
from sqlalchemy.engine import make_url
from consistency.store import RegistryStore
from database import open_database

url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = RegistryStore(open_database(make_url(url)))
for i in range(n):
    key = f"{worker:032x}{i:032x}"
    store.register(key, {"task_id": f"w{worker}", "result": {"i": i}, "model_path": "/m",
                         "run_dir": "/r", "node_id": f"node-{worker}"})
    store.claim(f"{i:064x}", f"w{worker}")
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_processes_create_and_write_one_database_without_losing_a_row(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Six processes open a database nobody created yet (they race to migrate it), then
    each registers 40 results and claims 40 shared keys at once."""
    url = _url(backend, tmp_path, request)
    rendered = url.render_as_string(hide_password=False)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, rendered, str(w), "40"],
                              cwd=REPO, stderr=subprocess.PIPE, text=True)
             for w in range(6)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    db = Database(url)
    try:
        from consistency.store import RegistryStore

        store = RegistryStore(db)
        assert len(store) == 240
        owners = {k: c.owner for k, c in store.in_flight().items()}
        assert len(owners) == 40  # each shared key claimed once, by one of the six
        got: Any = store.lookup(f"{5:032x}{39:032x}")
        assert got is not None and got["result"] == {"i": 39}
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_new_database_gets_exactly_the_schema_the_migrations_build(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A new database is created from ``database.schema`` at once and stamped; an old one
    runs the migrations: both must give the same tables, columns and indexes."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from database.schema import METADATA

    url = _url(backend, tmp_path, request)
    _alembic_upgrade(url, "head")  # every migration, in order
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), METADATA)
    finally:
        engine.dispose()
    assert [d for d in diffs if "alembic_version" not in str(d)] == []
    fresh = Database(make_url(f"sqlite:///{tmp_path / 'fresh' / 'mtp.db'}"))
    try:
        assert _revision(fresh) == SCHEMA_HEAD
        tables = set(inspect(fresh.engine).get_table_names())
        assert tables == set(METADATA.tables) | {VERSION_TABLE}
    finally:
        fresh.close()
