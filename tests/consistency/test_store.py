"""The result registry's contract, run against every database the platform supports (SQLite
and a real PostgreSQL server), plus the import of the JSON file earlier versions kept."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest

from consistency.errors import ConsistencyError, EntryNotFoundError, RegistryCorruptError
from consistency.store import ClaimOutcome, RegistryStore
from database import Database
from mtp_core.hashing import json_checksum

K1, K2, K3 = ("a" * 64, "b" * 64, "c" * 64)
T0 = 1_000_000.0


def _entry(i: int, **extra: Any) -> dict[str, Any]:
    return {"task_id": f"task-{i}", "result": {"final_metrics": {"val_loss": 0.1 * i}},
            "model_path": f"/shared/run{i}/model.pt", "run_dir": f"/shared/run{i}",
            "node_id": f"node-{i}", **extra}


def _store(db: Database, **kw: Any) -> RegistryStore:
    return RegistryStore(db, clock=lambda: T0, **kw)


def test_register_and_lookup_fill_defaults_and_count(platform_db: Database) -> None:
    store = _store(platform_db, ttl_s=100)
    stored = store.register(K1, _entry(1))
    assert stored["key"] == K1 and stored["shared_at"] == T0 and stored["expires_at"] == T0 + 100
    assert stored["verified"] is False and stored["verifications"] == []
    got = store.lookup(K1)
    assert got is not None and got["result"] == {"final_metrics": {"val_loss": 0.1}}
    assert got == stored
    assert store.lookup(K2) is None
    s = store.stats()
    assert (s.entries, s.lookups, s.hits, s.shared, s.verified) == (1, 2, 1, 1, 0)


def test_a_second_store_on_the_same_database_sees_every_entry(platform_db: Database) -> None:
    _store(platform_db).register(K1, _entry(1))
    other = RegistryStore(platform_db)  # another driver or a restarted actor
    got = other.lookup(K1)
    assert got is not None and got["task_id"] == "task-1"
    assert other.keys() == [K1] and len(other) == 1


def test_re_registration_replaces_the_entry_and_its_reports(platform_db: Database) -> None:
    store = _store(platform_db)
    store.register(K1, _entry(1))
    store.mark_verified(K1, {"is_consistent": True, "confidence": 1.0})
    store.register(K1, _entry(2))
    got = store.lookup(K1)
    assert got is not None and got["node_id"] == "node-2"
    assert got["verified"] is False and got["verifications"] == []
    assert len(store) == 1


def test_expired_entries_are_not_served(platform_db: Database) -> None:
    store = _store(platform_db, ttl_s=100)
    store.register(K1, _entry(1))
    store.register(K2, _entry(2, expires_at=None))  # never expires
    assert store.lookup(K1, now=T0 + 99) is not None
    assert store.lookup(K1, now=T0 + 100) is None
    assert store.lookup(K2, now=T0 + 10**9) is not None
    assert store.stats().expired == 1 and store.keys() == [K2]


def test_purge_expired_removes_only_expired_entries(platform_db: Database) -> None:
    store = _store(platform_db, ttl_s=10)
    store.register(K1, _entry(1))
    store.mark_verified(K1, {"is_consistent": True})
    store.register(K2, _entry(2), now=T0 + 5)
    store.register(K3, _entry(3, expires_at=None))
    assert store.purge_expired(now=T0 + 12) == 1
    assert store.keys() == [K2, K3]


def test_register_rejects_bad_entries_with_clear_errors(platform_db: Database) -> None:
    store = _store(platform_db)
    with pytest.raises(ConsistencyError, match="does not match key"):
        store.register(K1, _entry(1, key=K2))
    with pytest.raises(ConsistencyError, match="model_path"):
        store.register(K1, {k: v for k, v in _entry(1).items() if k != "model_path"})
    with pytest.raises(ConsistencyError, match="invalid cache key"):
        store.register("../../etc", _entry(1))
    assert len(store) == 0


def test_mark_verified_follows_latest_report(platform_db: Database) -> None:
    store = _store(platform_db, max_verifications=2)
    store.register(K1, _entry(1))
    out = store.mark_verified(K1, {"is_consistent": True, "confidence": 1.0})
    assert out["verified"] is True and store.stats().verified == 1
    store.mark_verified(K1, {"is_consistent": True, "confidence": 0.9})
    out = store.mark_verified(K1, {"is_consistent": False, "confidence": 0.3})
    assert out["verified"] is False
    assert [r["confidence"] for r in out["verifications"]] == [0.9, 0.3]  # newest 2 kept
    got = store.lookup(K1)
    assert got is not None and got == out
    with pytest.raises(EntryNotFoundError, match=f"no live registry entry for key {K2}"):
        store.mark_verified(K2, {"is_consistent": True})
    with pytest.raises(ConsistencyError, match="bool 'is_consistent'"):
        store.mark_verified(K1, {"confidence": 1.0})


def test_claims_first_wins_renew_release_and_stale_takeover(platform_db: Database) -> None:
    store = _store(platform_db, claim_timeout_s=60)
    assert store.try_claim(K1, "driver-a", now=T0) is ClaimOutcome.GRANTED
    assert store.claim(K1, "driver-b", now=T0 + 1) is False
    assert store.try_claim(K1, "driver-a", now=T0 + 50) is ClaimOutcome.RENEWED
    assert store.claim(K1, "driver-b", now=T0 + 100) is False  # renewed at +50: still fresh
    assert store.release(K1, "driver-b") is False  # not the owner
    assert store.in_flight()[K1].owner == "driver-a"
    assert store.try_claim(K1, "driver-b", now=T0 + 111) is ClaimOutcome.TAKEN_OVER
    assert store.in_flight()[K1].owner == "driver-b"
    assert store.release(K1, "driver-b") is True
    assert store.claim(K1, "driver-c", now=T0 + 112) is True


def test_a_waiter_sees_a_dead_drivers_claim_go_stale(platform_db: Database) -> None:
    store = _store(platform_db, claim_timeout_s=60)
    assert store.claim(K1, "driver-a", now=T0)
    assert store.is_claimed(K1, now=T0 + 59)
    assert not store.is_claimed(K1, now=T0 + 61)  # never renewed: its driver is gone
    assert not store.is_claimed(K2, now=T0)
    assert store.try_claim(K1, "driver-b", now=T0 + 61) is ClaimOutcome.TAKEN_OVER


def test_claims_survive_a_restart_of_the_store(platform_db: Database) -> None:
    assert _store(platform_db).claim(K1, "driver-a")
    assert _store(platform_db).claim(K1, "driver-b") is False  # a restarted registry


def test_register_ends_the_claim(platform_db: Database) -> None:
    store = _store(platform_db)
    assert store.claim(K1, "driver-a")
    store.register(K1, _entry(1))
    assert store.in_flight() == {}
    assert store.stats().in_flight == 0


def test_concurrent_drivers_train_each_key_exactly_once(platform_db: Database) -> None:
    """16 threads, each with its own store (as separate drivers), race for 20 keys with the
    drivers' protocol (trainer.reuse): claim, then look up again, then train and register."""
    import threading

    keys = [f"{i:064x}" for i in range(20)]
    granted: list[tuple[str, str]] = []
    lock = threading.Lock()

    errors: list[BaseException] = []

    def driver(name: str) -> None:
        try:
            train_all(name)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)

    def train_all(name: str) -> None:
        store = RegistryStore(platform_db)
        for key in keys:
            if store.try_claim(key, name) is ClaimOutcome.GRANTED:
                if store.lookup(key) is not None:  # registered between lookup and claim
                    store.release(key, name)
                    continue
                with lock:
                    granted.append((key, name))
                store.register(key, _entry(int(key, 16), task_id=name))

    threads = [threading.Thread(target=driver, args=(f"driver-{i}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(k for k, _ in granted) == keys  # every key granted once, none twice
    store = RegistryStore(platform_db)
    assert len(store) == 20
    for key, owner in granted:
        got = store.lookup(key)
        assert got is not None and got["task_id"] == owner  # the one who trained it


def test_a_row_failing_its_checksum_is_a_miss_not_a_wrong_result(
        platform_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy import update

    from database.schema import RESULTS

    store = _store(platform_db)
    store.register(K1, _entry(1))
    store.register(K2, _entry(2))
    doc = json.loads(platform_db.read(lambda c: c.execute(
        RESULTS.select().where(RESULTS.c.key == K1)).one().entry))
    doc["model_path"] = "/evil/model.pt"
    platform_db.write(lambda c: c.execute(
        update(RESULTS).where(RESULTS.c.key == K1).values(entry=json.dumps(doc))))
    with caplog.at_level(logging.ERROR, logger="consistency.store"):
        assert store.lookup(K1) is None
    assert f"entry {K1}" in caplog.text and "fails its checksum" in caplog.text
    assert store.lookup(K2) is not None
    store.register(K1, _entry(1))  # a new registration replaces it
    assert store.lookup(K1) is not None


# -- the JSON file of earlier versions, imported once -----------------------------------------


def _legacy_file(path: Path, entries: list[dict[str, Any]], **doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [{"entry": e, "checksum": json_checksum(e)} for e in entries]
    path.write_text(json.dumps({"format": 1, "entries": items, **doc}))
    return path


def _full(key: str, i: int, **extra: Any) -> dict[str, Any]:
    return {"key": key, **_entry(i), "shared_at": T0, "expires_at": None, "verified": False,
            "verifications": [], **extra}


def test_import_of_the_legacy_file_keeps_entries_reports_and_renames_it(
        platform_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _legacy_file(tmp_path / "_registry" / "registry.json", [
        _full(K1, 1), _full(K2, 2, verified=True,
                            verifications=[{"is_consistent": True, "confidence": 1.0}]),
        _full(K3, 3, expires_at=T0 - 1)])  # expired: dropped
    doc = json.loads(path.read_text())
    doc["entries"][0]["entry"]["model_path"] = "/evil/model.pt"  # tampered: skipped
    path.write_text(json.dumps(doc))
    store = _store(platform_db)
    with caplog.at_level(logging.WARNING, logger="consistency.store"):
        assert store.import_file(path) == 1
    assert f"checksum mismatch for key '{K1}'" in caplog.text
    assert store.keys() == [K2]
    got = store.lookup(K2)
    assert got is not None and got["verified"] is True
    assert got["verifications"] == [{"is_consistent": True, "confidence": 1.0}]
    assert not path.exists() and path.with_name("registry.json.imported").exists()
    assert store.import_file(path) == 0  # once


def test_import_keeps_entries_already_in_the_database(platform_db: Database,
                                                      tmp_path: Path) -> None:
    store = _store(platform_db)
    store.register(K1, _entry(7))
    path = _legacy_file(tmp_path / "registry.json", [_full(K1, 1), _full(K2, 2)])
    assert store.import_file(path) == 1
    got = store.lookup(K1)
    assert got is not None and got["node_id"] == "node-7"


def test_import_falls_back_to_the_backup(platform_db: Database, tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    _legacy_file(path.with_name("registry.json.bak"), [_full(K1, 1)])
    path.write_text('{"format": 1, "entr')
    assert _store(platform_db).import_file(path) == 1
    assert not path.exists() and (tmp_path / "registry.json.bak.imported").exists()


# (id, bytes of a main file that cannot be used, words the error must contain)
UNUSABLE: list[tuple[str, bytes, str]] = [
    ("null", b"null", "expected a JSON object, got null"),
    ("array", b"[]", "expected a JSON object, got array"),
    ("empty-file", b"", "not valid JSON"),
    ("truncated", b'{"format": 1, "entr', "not valid JSON"),
    ("not-utf8", b"\xff\xfe{}", "not valid JSON"),
    ("future-format", b'{"format": 2, "entries": []}', "unsupported format 2"),
    ("entries-not-a-list", b'{"format": 1, "entries": {}}', "'entries' is missing or not a list"),
]


@pytest.mark.parametrize(("data", "words"), [c[1:] for c in UNUSABLE],
                         ids=[c[0] for c in UNUSABLE])
def test_unusable_legacy_file_is_one_line_naming_file_and_recovery(
        tmp_path: Path, data: bytes, words: str) -> None:
    from sqlalchemy.engine import make_url

    path = tmp_path / "_registry" / "registry.json"
    path.parent.mkdir()
    path.write_bytes(data)
    db = Database(make_url(f"sqlite:///{tmp_path / 'mtp.db'}"))
    try:
        with pytest.raises(RegistryCorruptError) as info:
            _store(db).import_file(path)
    finally:
        db.close()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"result registry {path} is corrupt and has no good backup ("), msg
    assert f"registry.json: {words}" in msg and "registry.json.bak does not exist" in msg
    assert "move registry.json and registry.json.bak out of" in msg
    assert str(pickle.loads(pickle.dumps(info.value))) == msg  # crosses actor boundaries
    with pytest.raises(RegistryCorruptError, match="is corrupt and has no good backup"):
        RegistryStore.check_file(path)
    assert path.read_bytes() == data  # left for the user to inspect


# -- a corrupt database: one line naming the file and how to recover, at every boundary -------


def _corrupt_database(storage: Path) -> Path:
    from database import default_sqlite_path

    path = default_sqlite_path(storage)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not an SQLite database" * 100)
    return path


def test_actor_over_a_corrupt_database_answers_with_the_error_then_heals(
        tmp_path: Path) -> None:
    """The actor class, without Ray: a restart over a corrupt file must not fail the
    constructor (Ray would show a dead actor and a traceback); every call raises the error
    instead, until the file is moved aside."""
    from consistency.actors import ResultRegistryActor
    from database import DatabaseCorruptError

    path = _corrupt_database(tmp_path)
    data = path.read_bytes()
    actor = ResultRegistryActor(f"sqlite:///{path}")
    for call in (actor.stats, lambda: actor.lookup(K1), lambda: actor.claim(K1, "d"),
                 lambda: actor.claimed(K1), lambda: actor.register(K1, _entry(1)),
                 lambda: actor.mark_verified(K1, {"is_consistent": True})):
        with pytest.raises(DatabaseCorruptError, match="is not a readable SQLite database"):
            call()
    assert path.read_bytes() == data  # never overwritten
    actor.note_cache(False)  # counting needs no database
    path.rename(path.with_name("mtp.db.corrupt"))  # what the message says to do
    assert actor.stats()["entries"] == 0
    actor.register(K1, _entry(1))
    assert actor.lookup(K1) is not None


# -- the same through the CLI, on a real Ray -----------------------------------------------


def _no_registry_actor() -> None:
    """Stop the shared session's registry actor (an earlier test's, with its own storage):
    the CLI must meet the actor this test sets up, or none."""
    from consistency.actors import REGISTRY_NAME
    from tests.support.actors import stop_named_actor

    stop_named_actor(REGISTRY_NAME)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("mtp")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


@pytest.mark.ray
def test_cli_run_with_a_corrupt_database_exits_2_with_one_line(
        tmp_path: Path, ray_session: None, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from consistency.actors import REGISTRY_NAME
    from mtp.cli import main

    _no_registry_actor()
    path = _corrupt_database(tmp_path)
    task = {"name": "corrupt-registry", "model": {"type": "linear"},
            "dataset": {"source": "sklearn", "name": "iris"},
            "training": {"epochs": 1, "batch_size": 16},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "consistency": {"cache": {"enabled": True}, "sharing": {"enabled": True}}}
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(task))
    assert main(["run", str(cfg), "--storage-path", str(tmp_path), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"mtp: error: platform database {path} is not a readable SQLite "
                           "database"), line
    assert f"mv {path} {path}.corrupt" in line
    assert not (tmp_path / "corrupt-registry").exists()  # nothing was trained
    with pytest.raises(ValueError):  # the driver checked the database before the actor
        ray.get_actor(REGISTRY_NAME, namespace="mtp")


@pytest.mark.ray
def test_registry_stats_against_a_registry_whose_database_went_corrupt(
        tmp_path: Path, ray_session: None) -> None:
    """The actor restarts (as after a node loss) and finds its database corrupt: ``mtp
    registry stats`` from another process is one line and exit 2; once the file is moved
    aside, the same actor serves an empty registry."""
    import os
    import subprocess
    import sys

    import ray

    from consistency.actors import get_result_registry
    from database import DatabaseCorruptError, default_sqlite_path
    from tests.conftest import REPO
    from tests.support.wait import wait_for

    _no_registry_actor()
    registry = get_result_registry(tmp_path)
    try:
        assert ray.get(registry.stats.remote(), timeout=60)["entries"] == 0
        path = default_sqlite_path(tmp_path)
        ray.kill(registry, no_restart=False)
        for f in path.parent.glob("mtp.db*"):
            f.unlink()
        path.write_bytes(b"garbage" * 1000)

        def restarted_and_broken() -> bool:
            try:
                ray.get(registry.stats.remote(), timeout=5)
            except DatabaseCorruptError:
                return True
            except Exception:  # noqa: BLE001 - still restarting
                return False
            return False

        wait_for(restarted_and_broken, 60, interval_s=0.5,
                 what="the registry to restart over its corrupt database")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = str(REPO)
        cmd = [sys.executable, "-m", "mtp.cli", "registry", "stats", "--address",
               ray.get_runtime_context().gcs_address]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=90, check=False)
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc.stderr)
        assert line == proc.stderr.strip(), proc.stderr
        assert line.startswith(f"mtp: error: platform database {path} is not a readable"), line

        path.rename(path.with_name("mtp.db.corrupt"))  # what the line says to do
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=90, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "entries          0" in proc.stdout
    finally:
        ray.kill(registry, no_restart=True)


# -- the local result cache under <storage>/_cache: a bad entry file is set aside ----------


@pytest.mark.parametrize("data", [b"null", b"[]", b"7", b'"x"', b"{}", b'{"key": 1}'],
                         ids=["null", "array", "number", "string", "empty-object",
                              "missing-fields"])
def test_cache_entry_that_is_not_an_entry_is_moved_aside_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    from consistency.cache import ResultCache

    good = {"final_metrics": {"val_loss": 0.1}}
    ResultCache(tmp_path).put(K1, good)
    ResultCache(tmp_path).put(K2, good)
    (tmp_path / f"{K1}.json").write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="consistency.cache"):
        cache = ResultCache(tmp_path)
    assert cache.keys() == [K2] and cache.get(K2) == good
    assert (tmp_path / f"{K1}.json.corrupt").read_bytes() == data
    assert f"{K1}.json is corrupt" in caplog.text and "moved aside" in caplog.text
