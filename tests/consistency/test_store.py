from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest

from consistency.errors import ConsistencyError, EntryNotFoundError, RegistryCorruptError
from consistency.store import ClaimOutcome, RegistryStore

K1, K2, K3 = ("a" * 64, "b" * 64, "c" * 64)
T0 = 1_000_000.0


def _entry(i: int, **extra: Any) -> dict[str, Any]:
    return {"task_id": f"task-{i}", "result": {"final_metrics": {"val_loss": 0.1 * i}},
            "model_path": f"/shared/run{i}/model.pt", "run_dir": f"/shared/run{i}",
            "node_id": f"node-{i}", **extra}


def _store(**kw: Any) -> RegistryStore:
    return RegistryStore(clock=lambda: T0, **kw)


def test_register_and_lookup_fill_defaults_and_count() -> None:
    store = _store(ttl_s=100)
    stored = store.register(K1, _entry(1))
    assert stored["key"] == K1 and stored["shared_at"] == T0 and stored["expires_at"] == T0 + 100
    assert stored["verified"] is False and stored["verifications"] == []
    got = store.lookup(K1)
    assert got is not None and got["result"] == {"final_metrics": {"val_loss": 0.1}}
    assert store.lookup(K2) is None
    s = store.stats()
    assert (s.entries, s.lookups, s.hits, s.shared, s.verified) == (1, 2, 1, 1, 0)


def test_expired_entries_are_not_served() -> None:
    store = _store(ttl_s=100)
    store.register(K1, _entry(1))
    store.register(K2, _entry(2, expires_at=None))  # never expires
    assert store.lookup(K1, now=T0 + 99) is not None
    assert store.lookup(K1, now=T0 + 100) is None
    assert store.lookup(K2, now=T0 + 10**9) is not None
    assert store.stats().expired == 1 and store.keys() == [K2]


def test_register_rejects_bad_entries_with_clear_errors() -> None:
    store = _store()
    with pytest.raises(ConsistencyError, match="does not match key"):
        store.register(K1, _entry(1, key=K2))
    with pytest.raises(ConsistencyError, match="model_path"):
        store.register(K1, {k: v for k, v in _entry(1).items() if k != "model_path"})


def test_mark_verified_follows_latest_report() -> None:
    store = _store(max_verifications=2)
    store.register(K1, _entry(1))
    out = store.mark_verified(K1, {"is_consistent": True, "confidence": 1.0})
    assert out["verified"] is True and store.stats().verified == 1
    store.mark_verified(K1, {"is_consistent": True, "confidence": 0.9})
    out = store.mark_verified(K1, {"is_consistent": False, "confidence": 0.3})
    assert out["verified"] is False
    assert [r["confidence"] for r in out["verifications"]] == [0.9, 0.3]  # newest 2 kept
    with pytest.raises(EntryNotFoundError, match=f"no live registry entry for key {K2}"):
        store.mark_verified(K2, {"is_consistent": True})
    with pytest.raises(ConsistencyError, match="bool 'is_consistent'"):
        store.mark_verified(K1, {"confidence": 1.0})


def test_claims_first_wins_renew_release_and_stale_takeover() -> None:
    store = _store(claim_timeout_s=60)
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


def test_a_waiter_sees_a_dead_drivers_claim_go_stale() -> None:
    store = _store(claim_timeout_s=60)
    assert store.claim(K1, "driver-a", now=T0)
    assert store.is_claimed(K1, now=T0 + 59)
    assert not store.is_claimed(K1, now=T0 + 61)  # never renewed: its driver is gone
    assert not store.is_claimed(K2, now=T0)
    assert store.try_claim(K1, "driver-b", now=T0 + 61) is ClaimOutcome.TAKEN_OVER


def test_register_ends_the_claim() -> None:
    store = _store()
    assert store.claim(K1, "driver-a")
    store.register(K1, _entry(1))
    assert store.in_flight() == {}
    assert store.stats().in_flight == 0


def test_save_load_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    store = _store()
    store.register(K1, _entry(1))
    store.register(K2, _entry(2))
    store.mark_verified(K2, {"is_consistent": True})
    store.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == 1 and len(doc["entries"]) == 2
    assert set(doc["entries"][0]) == {"entry", "checksum"}
    fresh = _store()
    assert fresh.load(path) == 2
    assert fresh.lookup(K2) == store.lookup(K2)
    assert fresh.stats().verified == 1


def test_load_skips_a_tampered_entry_and_keeps_the_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "registry.json"
    store = _store()
    for i, k in enumerate((K1, K2, K3)):
        store.register(k, _entry(i))
    store.save(path)
    doc = json.loads(path.read_text())
    doc["entries"][1]["entry"]["model_path"] = "/evil/model.pt"
    path.write_text(json.dumps(doc))
    fresh = _store()
    with caplog.at_level(logging.WARNING, logger="consistency.store"):
        assert fresh.load(path) == 2
    assert fresh.keys() == [K1, K3]
    assert f"checksum mismatch for key '{K2}'" in caplog.text


def test_truncated_file_without_backup_raises_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    store = _store()
    store.register(K1, _entry(1))
    store.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryCorruptError) as info:
        _store().load(path)
    msg = str(info.value)
    assert str(path) in msg and "not valid JSON" in msg
    assert "move registry.json and registry.json.bak out of" in msg
    assert isinstance(info.value, ConsistencyError)
    again = pickle.loads(pickle.dumps(info.value))  # crosses actor boundaries
    assert str(again) == msg


def test_corrupt_main_file_falls_back_to_backup(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "registry.json"
    store = _store()
    store.register(K1, _entry(1))
    store.save(path)  # first good file
    store.register(K2, _entry(2))
    store.save(path)  # .bak now holds the first file (K1 only)
    assert json.loads((tmp_path / "registry.json.bak").read_text())["entries"][0]["entry"][
        "key"] == K1
    path.write_text('{"format": 1, "entr')
    fresh = _store()
    with caplog.at_level(logging.WARNING, logger="consistency.store"):
        assert fresh.load(path) == 1
    assert fresh.keys() == [K1]
    assert "loaded from backup" in caplog.text

    # a save over the corrupt main file must not replace the good backup with it
    fresh.register(K3, _entry(3))
    fresh.save(path)
    assert json.loads((tmp_path / "registry.json.bak").read_text())["entries"][0]["entry"][
        "key"] == K1
    assert _store().load(path) == 2


def test_both_files_unusable_raise_error_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("[1, 2]")
    (tmp_path / "registry.json.bak").write_text('{"format": 99, "entries": []}')
    with pytest.raises(RegistryCorruptError) as info:
        _store().load(path)
    msg = str(info.value)
    assert "expected a JSON object, got array" in msg
    assert "registry.json.bak: unsupported format 99" in msg


def test_missing_file(tmp_path: Path) -> None:
    assert _store().load(tmp_path / "none.json") == 0
    with pytest.raises(ConsistencyError, match="does not exist"):
        _store().load(tmp_path / "none.json", missing_ok=False)


def test_load_drops_expired_entries(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    store = _store(ttl_s=10)
    store.register(K1, _entry(1))
    store.register(K2, _entry(2), now=T0 + 5)
    store.save(path)
    fresh = _store()
    assert fresh.load(path, now=T0 + 12) == 1 and fresh.keys() == [K2]


def test_state_dict_roundtrip_includes_claims_and_counters() -> None:
    store = _store()
    store.register(K1, _entry(1))
    store.lookup(K1)
    store.claim(K2, "driver-a")
    state = json.loads(json.dumps(store.state_dict()))
    fresh = _store()
    fresh.load_state_dict(state)
    assert fresh.stats() == store.stats()
    assert fresh.claim(K2, "driver-b") is False


# -- a registry file with no good backup: one line, exit 2, at every boundary ------------------

# (id, bytes of a main file that cannot be used, words the error must contain)
UNUSABLE: list[tuple[str, bytes, str]] = [
    ("null", b"null", "expected a JSON object, got null"),
    ("array", b"[]", "expected a JSON object, got array"),
    ("number", b"42", "expected a JSON object, got number"),
    ("string", b'"registry"', "expected a JSON object, got string"),
    ("empty-file", b"", "not valid JSON"),
    ("truncated", b'{"format": 1, "entr', "not valid JSON"),
    ("not-utf8", b"\xff\xfe{}", "not valid JSON"),
    ("no-format", b'{"entries": []}', "unsupported format None"),
    ("future-format", b'{"format": 2, "entries": []}', "unsupported format 2"),
    ("entries-not-a-list", b'{"format": 1, "entries": {}}', "'entries' is missing or not a list"),
]


@pytest.mark.parametrize(("data", "words"), [c[1:] for c in UNUSABLE],
                         ids=[c[0] for c in UNUSABLE])
def test_unusable_file_without_backup_is_one_line_naming_file_and_recovery(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, words: str) -> None:
    path = tmp_path / "_registry" / "registry.json"
    path.parent.mkdir()
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING), pytest.raises(RegistryCorruptError) as info:
        _store().load(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"result registry {path} is corrupt and has no good backup ("), msg
    assert f"registry.json: {words}" in msg and "registry.json.bak does not exist" in msg
    assert "move registry.json and registry.json.bak out of" in msg
    assert "to start an empty registry" in msg
    assert str(pickle.loads(pickle.dumps(info.value))) == msg  # crosses actor boundaries
    assert not caplog.records  # the error says it all: no warnings before it
    with pytest.raises(RegistryCorruptError, match="is corrupt and has no good backup"):
        RegistryStore.check_file(path)  # what a driver runs before it starts the actor
    assert path.read_bytes() == data  # left for the user to inspect


def test_directory_in_place_of_the_file_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.mkdir()
    with pytest.raises(RegistryCorruptError, match="registry.json: .*Is a directory"):
        _store().load(path)


def test_check_file_is_quiet_when_load_would_succeed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "registry.json"
    with caplog.at_level(logging.DEBUG):
        RegistryStore.check_file(path)  # neither file: an empty registry
        store = _store()
        store.register(K1, _entry(1))
        store.save(path)
        store.save(path)  # a .bak now
        path.write_bytes(b"null")  # the backup is good
        caplog.clear()
        RegistryStore.check_file(path)
    assert not caplog.records


def test_missing_main_file_with_a_corrupt_backup_says_missing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    (tmp_path / "registry.json.bak").write_text("[")
    with pytest.raises(RegistryCorruptError) as info:
        _store().load(path)
    msg = str(info.value)
    assert msg.startswith(f"result registry {path} is missing and has no good backup ("), msg
    assert "registry.json does not exist; registry.json.bak: not valid JSON" in msg


def test_actor_with_an_unusable_file_answers_with_the_error_then_heals(
        tmp_path: Path) -> None:
    """The actor class, without Ray: a restart over a corrupt file must not fail the
    constructor (Ray would show a dead actor and a traceback); every call raises the error
    instead, until the file is moved aside."""
    from consistency.actors import ResultRegistryActor, registry_path

    path = registry_path(tmp_path)
    path.parent.mkdir()
    path.write_bytes(b"null")
    actor = ResultRegistryActor(str(path))
    for call in (actor.stats, lambda: actor.lookup(K1), lambda: actor.claim(K1, "d"),
                 lambda: actor.claimed(K1),
                 lambda: actor.register(K1, _entry(1)),
                 lambda: actor.mark_verified(K1, {"is_consistent": True})):
        with pytest.raises(RegistryCorruptError, match="is corrupt and has no good backup"):
            call()
    assert path.read_bytes() == b"null"  # never overwritten by a save
    actor.note_cache(False)  # fire-and-forget calls do not raise
    assert actor.release(K1, "d") is False
    path.rename(path.with_name("registry.json.aside"))
    assert actor.stats()["entries"] == 0
    actor.register(K1, _entry(1))
    assert _store().load(path) == 1


# -- the same through the CLI, on a real Ray -----------------------------------------------


def _corrupt_storage(d: Path) -> Path:
    from consistency.actors import registry_path

    path = registry_path(d)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"null")
    return path


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
def test_cli_run_with_a_corrupt_registry_exits_2_with_one_line(
        tmp_path: Path, ray_session: None, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from consistency.actors import REGISTRY_NAME
    from mtp.cli import main

    _no_registry_actor()
    path = _corrupt_storage(tmp_path)
    task = {"name": "corrupt-registry", "model": {"type": "linear"},
            "dataset": {"source": "sklearn", "name": "iris"},
            "training": {"epochs": 1, "batch_size": 16},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "consistency": {"cache": {"enabled": True}, "sharing": {"enabled": True}}}
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(task))
    assert main(["run", str(cfg), "--storage-path", str(tmp_path), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"mtp: error: result registry {path} is corrupt and has no good "
                           "backup (registry.json: expected a JSON object, got null;"), line
    assert "move registry.json and registry.json.bak out of" in line
    assert not (tmp_path / "corrupt-registry").exists()  # nothing was trained
    with pytest.raises(ValueError):  # the driver checked the file before starting the actor
        ray.get_actor(REGISTRY_NAME, namespace="mtp")


@pytest.mark.ray
def test_registry_stats_against_a_registry_restarted_over_a_corrupt_file(
        tmp_path: Path, ray_session: None) -> None:
    """The actor restarts (as after a node loss) and finds its file corrupt: ``mtp registry
    stats`` from another process is one line and exit 2; once the file is moved aside, the
    same actor serves an empty registry."""
    import os
    import subprocess
    import sys

    import ray

    from consistency.actors import get_result_registry, registry_path
    from tests.conftest import REPO
    from tests.support.wait import wait_for

    _no_registry_actor()
    registry = get_result_registry(tmp_path)
    try:
        assert ray.get(registry.stats.remote(), timeout=60)["entries"] == 0
        path = registry_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"[1, 2]")
        ray.kill(registry, no_restart=False)

        def restarted_and_broken() -> bool:
            try:
                ray.get(registry.stats.remote(), timeout=5)
            except RegistryCorruptError:
                return True
            except Exception:  # noqa: BLE001 - still restarting
                return False
            return False

        wait_for(restarted_and_broken, 60, interval_s=0.5,
                 what="the registry to restart over its corrupt file")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = str(REPO)
        cmd = [sys.executable, "-m", "mtp.cli", "registry", "stats", "--address",
               ray.get_runtime_context().gcs_address]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=90, check=False)
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc.stderr)
        assert line == proc.stderr.strip(), proc.stderr
        assert line.startswith(f"mtp: error: result registry {path} is corrupt"), line
        assert "got array" in line and "to start an empty registry" in line

        path.rename(path.with_name("registry.json.aside"))  # what the line says to do
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
