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
    assert str(path) in msg and "not valid JSON" in msg and "Move" in msg
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
    assert "expected a JSON object, got list" in msg
    assert "registry.json.bak is unusable: unsupported format 99" in msg


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
