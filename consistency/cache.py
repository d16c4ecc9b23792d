"""The local result cache: an LRU with a time-to-live, persisted one JSON file per entry.

Each entry lives in ``<directory>/<key>.json``::

    {"key": ..., "stored_at": t, "expires_at": t + ttl_s, "last_access": t, "access_seq": n,
     "checksum": sha256(canonical_json(entry)), "entry": {...}}

Files are written atomically (temp file, then ``os.replace``), so a reader sees the old file or
the whole new one. ``last_access``/``access_seq`` are rewritten on every hit so the LRU order
survives a restart. A file that fails to parse or whose checksum does not match is moved aside
to ``<key>.json.corrupt`` and counted as a miss; the other entries are unaffected.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from consistency.errors import ConsistencyError
from mtp_core.atomic import atomic_write_bytes
from mtp_core.consistency_spec import CacheSpec
from mtp_core.hashing import canonical_json, json_checksum

__all__ = ["CacheStats", "ResultCache", "validate_key"]

logger = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SUFFIX = ".json"
_CORRUPT_SUFFIX = ".corrupt"
_STATE_FORMAT = 1


def validate_key(key: object) -> str:
    """Return ``key`` if it is usable as a file name (a cache key is 64 hex digits)."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ConsistencyError(
            f"invalid cache key {key!r}: use 1-128 letters, digits, '_' or '-' "
            "(keys from consistency.identity.cache_key are 64 hex digits)"
        )
    return key


def _json_copy(entry: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A deep, JSON-clean copy of ``entry``; raises ConsistencyError for non-JSON data."""
    if not isinstance(entry, Mapping):
        raise ConsistencyError(f"{what} must be a mapping, got {type(entry).__name__}")
    try:
        out: dict[str, Any] = json.loads(canonical_json(dict(entry)))
    except (TypeError, ValueError) as err:
        raise ConsistencyError(
            f"{what} must be JSON data (dicts, lists, str, numbers, bool, None): {err}"
        ) from None
    return out


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was created (or since ``load_state_dict``)."""

    hits: int
    misses: int
    hit_rate: float
    entries: int
    evictions: int
    expired: int
    corrupt: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Record:
    key: str
    stored_at: float
    expires_at: float
    last_access: float
    access_seq: int
    checksum: str
    entry: dict[str, Any] | None  # None when the entry is on disk

    def to_json(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {"key": self.key, "stored_at": self.stored_at, "expires_at": self.expires_at,
                "last_access": self.last_access, "access_seq": self.access_seq,
                "checksum": self.checksum, "entry": entry}


class _Corrupt(Exception):
    """A stored record failed a check; the message says which."""


def _parse_record(raw: object, expected_key: str) -> _Record:
    if not isinstance(raw, dict):
        raise _Corrupt(f"expected a JSON object, got {type(raw).__name__}")
    missing = {"key", "stored_at", "expires_at", "checksum", "entry"} - raw.keys()
    if missing:
        raise _Corrupt(f"missing fields {sorted(missing)}")
    if raw["key"] != expected_key:
        raise _Corrupt(f"holds key {raw['key']!r}, expected {expected_key!r}")
    entry = raw["entry"]
    if not isinstance(entry, dict):
        raise _Corrupt("'entry' is not a JSON object")
    actual = json_checksum(entry)
    if raw["checksum"] != actual:
        raise _Corrupt(f"checksum mismatch (stored {str(raw['checksum'])[:12]}..., "
                       f"computed {actual[:12]}...)")
    try:
        stored_at = float(raw["stored_at"])
        expires_at = float(raw["expires_at"])
        last_access = float(raw.get("last_access", stored_at))
        seq = int(raw.get("access_seq", 0))
    except (TypeError, ValueError) as err:
        raise _Corrupt(f"bad timestamp: {err}") from None
    return _Record(expected_key, stored_at, expires_at, last_access, seq, actual, entry)


class ResultCache:
    """Local LRU + TTL cache of training results, keyed by ``identity.cache_key``.

    Lifecycle: construct with a directory (or ``None`` for memory only); existing entry files
    are verified and indexed, expired ones deleted, corrupt ones moved aside. ``put`` stores an
    entry (a JSON dict, typically ``TrainingResult.model_dump(mode="json")`` plus where the
    model lives) and evicts expired, then least-recently-used, entries beyond ``max_entries``.
    ``get`` returns a fresh copy of the entry or ``None``. Time comes from ``clock`` (wall
    time, since it is persisted) unless a call passes ``now``; tests inject both.

    One process owns a directory; the methods are serialised with a lock so a threaded actor
    may share one instance.
    """

    def __init__(self, directory: str | Path | None, *, ttl_s: float = 168 * 3600.0,
                 max_entries: int = 1000, clock: Callable[[], float] = time.time) -> None:
        if not (isinstance(ttl_s, int | float) and math.isfinite(ttl_s) and ttl_s > 0):
            raise ConsistencyError(f"ResultCache: ttl_s must be a finite number > 0, got {ttl_s!r}")
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ConsistencyError(
                f"ResultCache: max_entries must be an integer >= 1, got {max_entries!r}")
        self.directory = Path(directory) if directory is not None else None
        self.ttl_s = float(ttl_s)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.RLock()
        self._index: OrderedDict[str, _Record] = OrderedDict()  # least recently used first
        self._seq = 0
        self._hits = self._misses = self._evictions = self._expired = self._corrupt = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._scan()

    @classmethod
    def from_spec(cls, spec: CacheSpec, directory: str | Path | None, *,
                  clock: Callable[[], float] = time.time) -> ResultCache:
        """Build from the task spec's ``consistency.cache`` section."""
        return cls(directory, ttl_s=spec.ttl_s, max_entries=spec.max_cache_size, clock=clock)

    # -- public API ----------------------------------------------------------------------------

    def get(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The entry stored under ``key``, or ``None`` (missing, expired or corrupt)."""
        validate_key(key)
        with self._lock:
            t = self._now(now)
            rec = self._index.get(key)
            if rec is None:
                self._misses += 1
                return None
            if t >= rec.expires_at:
                logger.info("cache entry %s expired at %.0f (now %.0f, ttl_s=%g); deleted",
                            key, rec.expires_at, t, self.ttl_s)
                self._drop(key)
                self._expired += 1
                self._misses += 1
                return None
            entry = self._load_entry(rec)
            if entry is None:
                self._misses += 1
                return None
            self._seq += 1
            rec.last_access, rec.access_seq = t, self._seq
            self._index.move_to_end(key)
            self._persist_access(rec, entry)
            self._hits += 1
            return entry

    def put(self, key: str, entry: Mapping[str, Any], now: float | None = None) -> None:
        """Store ``entry`` under ``key`` (replacing any older one) and evict beyond capacity."""
        validate_key(key)
        clean = _json_copy(entry, "cache entry")
        with self._lock:
            t = self._now(now)
            self._seq += 1
            rec = _Record(key, t, t + self.ttl_s, t, self._seq, json_checksum(clean), None)
            if self.directory is None:
                rec.entry = clean
            else:
                atomic_write_bytes(self._path(key), canonical_json(rec.to_json(clean)))
            self._index[key] = rec
            self._index.move_to_end(key)
            self._enforce_capacity(t)

    def purge_expired(self, now: float | None = None) -> int:
        """Delete every expired entry; returns how many."""
        with self._lock:
            t = self._now(now)
            stale = [k for k, r in self._index.items() if t >= r.expires_at]
            for k in stale:
                self._drop(k)
            self._expired += len(stale)
            if stale:
                logger.info("cache: purged %d expired entries (ttl_s=%g)", len(stale), self.ttl_s)
            return len(stale)

    def keys(self) -> list[str]:
        """Keys from least to most recently used (expired ones included until purged)."""
        with self._lock:
            return list(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def stats(self) -> CacheStats:
        with self._lock:
            lookups = self._hits + self._misses
            return CacheStats(
                hits=self._hits, misses=self._misses,
                hit_rate=self._hits / lookups if lookups else 0.0,
                entries=len(self._index), evictions=self._evictions, expired=self._expired,
                corrupt=self._corrupt,
            )

    def state_dict(self) -> dict[str, Any]:
        """Counters and the access sequence; also the entries when there is no directory
        (a directory-backed cache's entries are already persisted in their files)."""
        with self._lock:
            state: dict[str, Any] = {
                "format": _STATE_FORMAT,
                "counters": {"hits": self._hits, "misses": self._misses,
                             "evictions": self._evictions, "expired": self._expired,
                             "corrupt": self._corrupt},
                "access_seq": self._seq,
            }
            if self.directory is None:
                state["records"] = [r.to_json(r.entry or {}) for r in self._index.values()]
            return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore counters (and, memory-only, entries; records that fail their check are
        skipped with a warning)."""
        if state.get("format") != _STATE_FORMAT:
            raise ConsistencyError(
                f"ResultCache.load_state_dict: unsupported format {state.get('format')!r}, "
                f"expected {_STATE_FORMAT}")
        with self._lock:
            c = state.get("counters", {})
            self._hits = int(c.get("hits", 0))
            self._misses = int(c.get("misses", 0))
            self._evictions = int(c.get("evictions", 0))
            self._expired = int(c.get("expired", 0))
            self._corrupt = int(c.get("corrupt", 0))
            self._seq = max(self._seq, int(state.get("access_seq", 0)))
            records = state.get("records")
            if records is None:
                return
            if self.directory is not None:
                logger.warning("cache: state has records but this cache is backed by %s; "
                               "ignoring them (entries live in the directory)", self.directory)
                return
            loaded: list[_Record] = []
            for raw in records:
                key = raw.get("key") if isinstance(raw, dict) else None
                try:
                    rec = _parse_record(raw, validate_key(key))
                except (_Corrupt, ConsistencyError) as err:
                    logger.warning("cache: skipping state record %r: %s", key, err)
                    self._corrupt += 1
                    continue
                loaded.append(rec)
            self._index = OrderedDict((r.key, r) for r in sorted(loaded, key=_lru_order))
            self._seq = max([self._seq, *(r.access_seq for r in loaded)])

    # -- internals -----------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}{_SUFFIX}"

    def _scan(self) -> None:
        assert self.directory is not None
        t = self._now(None)
        found: list[_Record] = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            key = path.name[: -len(_SUFFIX)]
            if not _KEY_RE.match(key):
                continue  # not ours (our temp files start with '.')
            rec = self._read(path, key)
            if rec is None:
                continue
            if t >= rec.expires_at:
                path.unlink(missing_ok=True)
                self._expired += 1
                continue
            rec.entry = None
            found.append(rec)
        self._index = OrderedDict((r.key, r) for r in sorted(found, key=_lru_order))
        self._seq = max([0, *(r.access_seq for r in found)])
        if found or self._expired or self._corrupt:
            logger.info("cache %s: %d entries loaded, %d expired deleted, %d corrupt moved aside",
                        self.directory, len(found), self._expired, self._corrupt)
        self._enforce_capacity(t)

    def _read(self, path: Path, key: str) -> _Record | None:
        """Parse and verify one entry file; a bad file is quarantined and None returned."""
        try:
            raw = json.loads(path.read_bytes())
            return _parse_record(raw, key)
        except FileNotFoundError:
            logger.warning("cache entry file %s disappeared; treating %s as a miss", path, key)
            return None
        except (ValueError, _Corrupt) as err:  # JSONDecodeError and UnicodeDecodeError too
            self._quarantine(path, str(err))
            return None

    def _quarantine(self, path: Path, reason: str) -> None:
        aside = path.with_name(path.name + _CORRUPT_SUFFIX)
        logger.warning("cache entry file %s is corrupt (%s); moved aside to %s and treated "
                       "as a miss", path, reason, aside.name)
        self._corrupt += 1
        try:
            os.replace(path, aside)
        except OSError as err:
            logger.warning("could not move %s aside (%s); deleting it", path, err)
            path.unlink(missing_ok=True)

    def _load_entry(self, rec: _Record) -> dict[str, Any] | None:
        if self.directory is None:
            assert rec.entry is not None
            return _json_copy(rec.entry, "cache entry")
        read = self._read(self._path(rec.key), rec.key)
        if read is None:
            self._index.pop(rec.key, None)
            return None
        return read.entry

    def _persist_access(self, rec: _Record, entry: dict[str, Any]) -> None:
        if self.directory is None:
            return
        try:
            atomic_write_bytes(self._path(rec.key), canonical_json(rec.to_json(entry)))
        except OSError as err:  # the hit is still good; only the LRU order is not saved
            logger.warning("cache: could not record access to %s: %s", rec.key, err)

    def _drop(self, key: str) -> None:
        self._index.pop(key, None)
        if self.directory is not None:
            self._path(key).unlink(missing_ok=True)

    def _enforce_capacity(self, now: float) -> None:
        if len(self._index) <= self.max_entries:
            return
        self.purge_expired(now)
        while len(self._index) > self.max_entries:
            key = next(iter(self._index))
            logger.info("cache: evicted %s (least recently used; %d entries > max_entries=%d)",
                        key, len(self._index), self.max_entries)
            self._drop(key)
            self._evictions += 1


def _lru_order(rec: _Record) -> tuple[int, float, str]:
    return (rec.access_seq, rec.last_access, rec.key)
