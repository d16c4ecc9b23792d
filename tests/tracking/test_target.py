"""Where runs are tracked: the task's URI, then MLFLOW_TRACKING_URI, then the platform
database; a bad scheme is an input error naming where it came from; MTP_TRACKING=off."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mtp_core.errors import exit_code_for
from mtp_core.spec import TrackingSpec
from tracking import TrackingConfigError, resolve_target, tracking_enabled
from tracking.target import prepare_store


def test_the_default_store_is_the_platform_database_with_artifacts_under_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MTP_DATABASE_URL", raising=False)
    t = resolve_target(None, tmp_path)
    db = (tmp_path / "_db" / "mtp.db").resolve()
    assert t.uri == f"sqlite:///{db}" and t.sqlite_path == db and not t.is_server
    assert t.artifact_location == (tmp_path.resolve() / "_mlflow" / "artifacts").as_uri()


def test_the_task_uri_wins_over_the_environment_which_wins_over_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_target(None, tmp_path).uri == "http://127.0.0.1:5999"
    t = resolve_target("https://mlflow.example:443", tmp_path)
    assert t.uri == "https://mlflow.example:443" and t.is_server
    assert t.artifact_location is None  # the server keeps its artifacts
    t = resolve_target("postgresql+psycopg://u:secret@db:5432/mlflow", tmp_path)
    assert "secret" in t.uri and "secret" not in t.shown


@pytest.mark.parametrize(("uri", "source", "words"), [
    ("foo://x", "tracking.uri", "scheme 'foo' is not a tracking store"),
    ("/just/a/path", "tracking.uri", "scheme '(none)'"),
    ("sqlite://", "--tracking-uri", "must be a file"),
])
def test_a_bad_uri_is_an_input_error_naming_its_source(tmp_path: Path, uri: str, source: str,
                                                       words: str) -> None:
    with pytest.raises(TrackingConfigError) as err:
        resolve_target(uri, tmp_path, source=source)
    assert str(err.value).startswith(f"{source}={uri!r}") and words in str(err.value)
    assert exit_code_for(err.value) == 2


def test_a_bad_environment_uri_names_the_variable(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://nope")
    with pytest.raises(TrackingConfigError, match="^MLFLOW_TRACKING_URI='ftp://nope'"):
        resolve_target(None, tmp_path)


@pytest.mark.parametrize("value", ["off", "0", "false", "NO"])
def test_mtp_tracking_off_turns_tracking_off(monkeypatch: pytest.MonkeyPatch,
                                             value: str) -> None:
    monkeypatch.setenv("MTP_TRACKING", value)
    assert not tracking_enabled(TrackingSpec())
    monkeypatch.setenv("MTP_TRACKING", "on")
    assert tracking_enabled(TrackingSpec())
    assert not tracking_enabled(TrackingSpec(enabled=False))


def test_a_local_store_is_created_in_wal_mode_with_mlflows_tables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MTP_DATABASE_URL", raising=False)
    t = resolve_target(None, tmp_path / "storage")
    prepare_store(t)
    assert t.sqlite_path is not None
    con = sqlite3.connect(t.sqlite_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    finally:
        con.close()
    assert {"experiments", "runs", "metrics", "params", "tags", "datasets"} <= tables
