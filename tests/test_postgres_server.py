"""The real PostgreSQL the ``postgres_server`` / ``postgres_url`` fixtures start."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.support.postgres import PostgresServer, PostgresUnavailable, find_binaries


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("runs", metadata,
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(64), nullable=False, unique=True))


def test_transactions_commit_and_roll_back(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        runs = _table(sa.MetaData())
        runs.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(runs.insert(), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(runs.insert(), [{"id": 3, "name": "c"}, {"id": 4, "name": "a"}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(runs.c.id, runs.c.name).order_by(runs.c.id)).all()
        # the failed transaction's first row went with it
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
    finally:
        engine.dispose()


def test_each_database_is_fresh_and_independent(postgres_url: str,
                                                postgres_server: PostgresServer) -> None:
    other_url = postgres_server.create_database()
    assert other_url != postgres_url
    first, second = sa.create_engine(postgres_url), sa.create_engine(other_url)
    try:
        assert sa.inspect(first).get_table_names() == []
        runs = _table(sa.MetaData())
        runs.metadata.create_all(first)
        with first.begin() as conn:
            conn.execute(runs.insert(), [{"id": 1, "name": "only-in-first"}])
        assert sa.inspect(second).get_table_names() == []
        runs.metadata.create_all(second)
        with second.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar() == 0
        with first.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar() == 1
    finally:
        first.dispose()
        second.dispose()


def test_server_listens_on_loopback_only(postgres_url: str,
                                         postgres_server: PostgresServer) -> None:
    url = urlsplit(postgres_url)
    assert url.scheme == "postgresql+psycopg"
    assert (url.hostname, url.port) == ("127.0.0.1", postgres_server.port)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
            assert conn.execute(sa.text("SELECT host(inet_server_addr())")).scalar() \
                == "127.0.0.1"
            socket_dir = conn.execute(sa.text("SHOW unix_socket_directories")).scalar()
            assert socket_dir == str(postgres_server.socket_dir)
            assert int(conn.execute(sa.text("SHOW max_connections")).scalar() or 0) >= 100
            assert conn.execute(sa.text("SHOW fsync")).scalar() == "off"
    finally:
        engine.dispose()


def test_missing_binaries_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)  # no pgserver wheel
    with pytest.raises(PostgresUnavailable, match=r"apt-get install -y postgresql"):
        find_binaries()


def test_without_a_system_install_the_pgserver_wheels_binaries_serve(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README's test command meets on a machine with only Python and pip."""
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(glob, "glob", lambda _pattern: [])
    found = find_binaries()
    assert found.bin_dir.parts[-3:] == ("pgserver", "pginstall", "bin")
    assert Path(found.pg_ctl).is_file()
