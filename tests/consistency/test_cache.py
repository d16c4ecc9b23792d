from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from consistency.cache import ResultCache
from consistency.errors import ConsistencyError
from mtp_core.consistency_spec import CacheSpec
from mtp_core.hashing import json_checksum

K1, K2, K3, K4 = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
ENTRY = {"task_id": "t", "final_metrics": {"val_accuracy": 0.97}, "weights_hash": "f" * 64}


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _entry(i: int) -> dict[str, object]:
    return {**ENTRY, "run": i}


def test_put_get_roundtrip_and_file_layout(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, ttl_s=100, max_entries=10, clock=clock)
    assert cache.get(K1) is None
    cache.put(K1, ENTRY)
    got = cache.get(K1)
    assert got == ENTRY
    got["task_id"] = "mutated"  # callers get a copy
    assert cache.get(K1) == ENTRY
    on_disk = json.loads((tmp_path / f"{K1}.json").read_text())
    assert on_disk["key"] == K1 and on_disk["entry"] == ENTRY
    assert on_disk["checksum"] == json_checksum(ENTRY)
    assert on_disk["stored_at"] == clock.t and on_disk["expires_at"] == clock.t + 100
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files
    s = cache.stats()
    assert (s.hits, s.misses, s.entries) == (2, 1, 1)
    assert s.hit_rate == pytest.approx(2 / 3)


def test_entries_survive_a_reload(tmp_path: Path) -> None:
    ResultCache(tmp_path, clock=Clock()).put(K1, ENTRY)
    assert ResultCache(tmp_path, clock=Clock()).get(K1) == ENTRY


def test_expired_entries_are_not_served_and_are_deleted(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, ttl_s=60, clock=clock)
    cache.put(K1, ENTRY)
    assert cache.get(K1, now=clock.t + 59.9) == ENTRY
    assert cache.get(K1, now=clock.t + 60) is None
    assert not (tmp_path / f"{K1}.json").exists()
    s = cache.stats()
    assert (s.expired, s.entries, s.hits, s.misses) == (1, 0, 1, 1)


def test_expired_entries_are_dropped_on_reload(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, ttl_s=60, clock=clock)
    cache.put(K1, ENTRY)
    cache.put(K2, ENTRY, now=clock.t + 50)
    clock.t += 70
    reloaded = ResultCache(tmp_path, ttl_s=60, clock=clock)
    assert reloaded.keys() == [K2]
    assert reloaded.stats().expired == 1


def test_lru_eviction_and_order_survives_reload(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, max_entries=3, clock=clock)
    for i, k in enumerate((K1, K2, K3)):
        cache.put(k, _entry(i))
    assert cache.get(K1) is not None  # K1 becomes most recently used; K2 is now oldest
    cache.put(K4, _entry(4))
    assert cache.keys() == [K3, K1, K4]
    assert not (tmp_path / f"{K2}.json").exists()
    assert cache.stats().evictions == 1

    reloaded = ResultCache(tmp_path, max_entries=3, clock=clock)
    assert reloaded.keys() == [K3, K1, K4]
    assert reloaded.get(K3) is not None
    reloaded.put(K2, _entry(2))  # evicts K1, the least recently used after the reload
    assert reloaded.keys() == [K4, K3, K2]


def test_shrinking_max_entries_evicts_on_load(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, max_entries=3, clock=clock)
    for i, k in enumerate((K1, K2, K3)):
        cache.put(k, _entry(i))
    small = ResultCache(tmp_path, max_entries=1, clock=clock)
    assert small.keys() == [K3]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{K3}.json"]


def test_capacity_prefers_evicting_expired_entries(tmp_path: Path) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, ttl_s=10, max_entries=2, clock=clock)
    cache.put(K1, ENTRY, now=clock.t + 5)
    cache.put(K2, ENTRY)  # older store time: expires first
    cache.get(K2, now=clock.t + 6)  # ...but most recently used
    cache.put(K3, ENTRY, now=clock.t + 11)
    assert cache.keys() == [K1, K3]
    s = cache.stats()
    assert (s.expired, s.evictions) == (1, 0)


@pytest.mark.parametrize("damage", ["tamper", "truncate", "wrong_key"])
def test_corrupt_file_is_moved_aside_and_others_survive(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cache = ResultCache(tmp_path, clock=clock)
    cache.put(K1, _entry(1))
    cache.put(K2, _entry(2))
    path = tmp_path / f"{K1}.json"
    text = path.read_text()
    if damage == "tamper":
        doc = json.loads(text)
        doc["entry"]["final_metrics"]["val_accuracy"] = 0.5
        path.write_text(json.dumps(doc))
    elif damage == "truncate":
        path.write_text(text[: len(text) // 2])
    else:
        doc = json.loads(text)
        doc["key"] = K3
        path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="consistency.cache"):
        assert cache.get(K1) is None
    assert f"{K1}.json is corrupt" in caplog.text
    assert not path.exists()
    assert (tmp_path / f"{K1}.json.corrupt").read_text() != ""
    assert cache.get(K2) == _entry(2)
    s = cache.stats()
    assert (s.corrupt, s.entries, s.misses, s.hits) == (1, 1, 1, 1)


def test_corrupt_file_found_on_load_is_moved_aside(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path, clock=Clock())
    cache.put(K1, _entry(1))
    cache.put(K2, _entry(2))
    (tmp_path / f"{K2}.json").write_bytes(b"\xff\x00garbage")
    reloaded = ResultCache(tmp_path, clock=Clock())
    assert reloaded.keys() == [K1]
    assert reloaded.stats().corrupt == 1
    assert (tmp_path / f"{K2}.json.corrupt").exists()


def test_memory_only_cache_and_state_dict_roundtrip() -> None:
    clock = Clock()
    cache = ResultCache(None, ttl_s=100, max_entries=2, clock=clock)
    cache.put(K1, _entry(1))
    cache.put(K2, _entry(2))
    cache.get(K1)
    cache.get(K3)
    state = json.loads(json.dumps(cache.state_dict()))  # must be JSON-ready
    state["records"][0]["entry"]["run"] = 99  # tamper one record
    fresh = ResultCache(None, ttl_s=100, max_entries=2, clock=clock)
    fresh.load_state_dict(state)
    s = fresh.stats()
    assert (s.hits, s.misses, s.corrupt) == (1, 1, 1)
    assert fresh.keys() == [K1]  # K2's record failed its checksum
    assert fresh.get(K1) == _entry(1)


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConsistencyError, match="ttl_s must be a finite number > 0, got 0"):
        ResultCache(tmp_path, ttl_s=0)
    with pytest.raises(ConsistencyError, match="max_entries must be an integer >= 1"):
        ResultCache(tmp_path, max_entries=0)
    cache = ResultCache(tmp_path)
    with pytest.raises(ConsistencyError, match="invalid cache key '../x'"):
        cache.put("../x", ENTRY)
    with pytest.raises(ConsistencyError, match="cache entry must be JSON data"):
        cache.put(K1, {"x": {1, 2}})


def test_from_spec_uses_hours_and_size(tmp_path: Path) -> None:
    cache = ResultCache.from_spec(CacheSpec(ttl_hours=2, max_cache_size=5), tmp_path)
    assert (cache.ttl_s, cache.max_entries) == (7200.0, 5)
