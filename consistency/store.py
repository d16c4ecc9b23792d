"""The cluster-wide result registry, on the platform database, without Ray.

The registry maps a cache key (``identity.cache_key``) to a :class:`RegistryEntry` describing a
finished, shareable run, and tracks which keys are being trained right now (claims), so that two
drivers asking for the same work at the same time train it once. The ``mtp-result-registry``
actor is a thin shell around :class:`RegistryStore`; every state change is one database
transaction (``mtp_results``, ``mtp_verifications``, ``mtp_claims``), so a registration costs
the same at a million entries as at ten, the registry and its claims survive any restart, and
several stores (drivers, actors) may share one database.

Each entry row carries the sha256 of its JSON; a row that fails the check is skipped as a miss
and logged, never served. The JSON file of earlier versions (``_registry/registry.json``, its
format below) is imported once by :meth:`RegistryStore.import_file` and renamed::

    {"format": 1, "entries": [{"entry": {...}, "checksum": sha256(canonical_json(entry))}, ...]}
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, bindparam, delete, func, select, update

from consistency.cache import validate_key
from consistency.errors import ConsistencyError, EntryNotFoundError, RegistryCorruptError
from database import Database
from database.schema import CLAIMS, RESULTS, VERIFICATIONS
from database.sql import insert_ignoring_conflict
from mtp_core.hashing import canonical_json, json_checksum

__all__ = ["FILE_FORMAT", "Claim", "ClaimOutcome", "RegistryEntry", "RegistryStats",
           "RegistryStore"]

logger = logging.getLogger(__name__)

FILE_FORMAT = 1
BACKUP_SUFFIX = ".bak"
IMPORTED_SUFFIX = ".imported"
# a claim whose driver stopped renewing it for this long is taken over by a waiter
CLAIM_TIMEOUT_S = 120.0


class RegistryEntry(BaseModel):
    """One shared result. ``result`` is the JSON form of a ``TrainingResult``."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Cache key (identity.cache_key) the result answers.")
    task_id: str = Field(min_length=1)
    result: dict[str, Any] = Field(description="TrainingResult.model_dump(mode='json').")
    model_path: str = Field(description="Exported model on storage every node can read.")
    run_dir: str
    shared_at: float = Field(description="Wall time (epoch seconds) of registration.")
    expires_at: float | None = Field(None, description="Wall time it expires; None: never.")
    verified: bool = Field(False, description="The latest consensus report was consistent.")
    verifications: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Consensus reports (ConsistencyReport JSON), oldest first.")
    node_id: str = Field(description="Node that trained the result.")


class ClaimOutcome(enum.Enum):
    """What ``try_claim`` decided."""

    GRANTED = "granted"  # nobody was training the key: the caller trains it
    RENEWED = "renewed"  # the caller already held the claim; its time was refreshed
    TAKEN_OVER = "taken_over"  # another owner's claim was stale; the caller trains it now
    HELD_BY_OTHER = "held_by_other"  # another owner is training it: wait for its result

    @property
    def should_train(self) -> bool:
        return self is not ClaimOutcome.HELD_BY_OTHER


@dataclass(frozen=True)
class Claim:
    owner: str
    claimed_at: float


@dataclass(frozen=True)
class RegistryStats:
    entries: int
    verified: int
    lookups: int
    hits: int
    shared: int
    expired: int
    in_flight: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RegistryStore:
    """Entries by cache key and in-flight claims, in the platform database; counters per store.

    Lifecycle: create over an open :class:`database.Database`, then ``claim`` before training
    a key, ``register`` the result when done (which also ends the claim), ``lookup`` from other
    drivers, ``mark_verified`` when a consensus report arrives. Claims older than
    ``claim_timeout_s`` belong to a driver presumed dead and may be taken over; a live trainer
    keeps its claim by calling ``claim`` again (it renews). Time is wall time from ``clock``
    unless a call passes ``now``. Every method is one transaction, safe to call from many
    threads, processes and nodes at once.
    """

    def __init__(self, db: Database, *, claim_timeout_s: float = 3600.0,
                 ttl_s: float | None = None, max_verifications: int = 20,
                 clock: Callable[[], float] = time.time) -> None:
        if not (math.isfinite(claim_timeout_s) and claim_timeout_s > 0):
            raise ConsistencyError(
                "RegistryStore: claim_timeout_s must be a finite number > 0, "
                f"got {claim_timeout_s!r}")
        if ttl_s is not None and not (math.isfinite(ttl_s) and ttl_s > 0):
            raise ConsistencyError(
                f"RegistryStore: ttl_s must be None (never expire) or > 0, got {ttl_s!r}")
        if max_verifications < 1:
            raise ConsistencyError(
                f"RegistryStore: max_verifications must be >= 1, got {max_verifications!r}")
        self.db = db
        self.claim_timeout_s = float(claim_timeout_s)
        self.ttl_s = ttl_s
        self.max_verifications = max_verifications
        self._clock = clock
        self._lock = threading.Lock()  # the counters only: the database orders the rest
        self._lookups = self._hits = self._shared = self._expired = 0

    # -- entries -------------------------------------------------------------------------------

    def register(self, key: str, entry: Mapping[str, Any] | RegistryEntry,
                 now: float | None = None) -> dict[str, Any]:
        """Store ``entry`` under ``key`` (replacing an older one, and its consensus reports)
        and end any claim on ``key``.

        ``key`` may be omitted from ``entry``; ``shared_at`` defaults to now and ``expires_at``
        to ``shared_at + ttl_s`` (never, when the store has no ttl). Returns the stored entry.
        """
        validate_key(key)
        raw = entry.model_dump(mode="json") if isinstance(entry, RegistryEntry) else dict(entry)
        if raw.setdefault("key", key) != key:
            raise ConsistencyError(
                f"register: entry['key']={raw['key']!r} does not match key {key!r}")
        t = self._now(now)
        raw.setdefault("shared_at", t)
        if "expires_at" not in raw and self.ttl_s is not None:
            raw["expires_at"] = float(raw["shared_at"]) + self.ttl_s
        try:
            model = RegistryEntry.model_validate(raw)
        except ValidationError as err:
            raise ConsistencyError(f"register {key}: invalid registry entry: {err}") from None
        try:
            stored = json.loads(canonical_json(model.model_dump(mode="json")))
        except (TypeError, ValueError) as err:
            raise ConsistencyError(f"register {key}: entry is not JSON data: {err}") from None
        reports = stored["verifications"][-self.max_verifications:]

        def txn(conn: Connection) -> None:
            old = conn.execute(select(RESULTS.c.node_id).where(RESULTS.c.key == key)).first()
            if old is not None:
                logger.info("registry: %s re-registered by node %s (replacing node %s's "
                            "result)", key, model.node_id, old[0])
                conn.execute(delete(VERIFICATIONS).where(VERIFICATIONS.c.key == key))
                conn.execute(delete(RESULTS).where(RESULTS.c.key == key))
            conn.execute(RESULTS.insert().values(**_row(stored)))
            for report in reports:
                conn.execute(VERIFICATIONS.insert().values(
                    key=key, at=t, consistent=bool(report.get("is_consistent")),
                    report=canonical_json(report).decode()))
            conn.execute(delete(CLAIMS).where(CLAIMS.c.key == key))

        self.db.write(txn, f"register {key}")
        with self._lock:
            self._shared += 1
        return {**stored, "verifications": reports}

    def lookup(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The entry for ``key`` as a JSON dict, or ``None`` (absent, expired or failing its
        checksum; expired entries are removed)."""
        validate_key(key)
        t = self._now(now)
        found = self.db.read(lambda conn: self._read_entry(conn, key), f"lookup {key}")
        with self._lock:
            self._lookups += 1
        if found is None:
            return None
        if _expired(found, t):
            self._remove_expired(key, t)
            return None
        with self._lock:
            self._hits += 1
        return found

    def mark_verified(self, key: str, report: Mapping[str, Any],
                      now: float | None = None) -> dict[str, Any]:
        """Append a consensus report (``ConsistencyReport`` as a dict) to ``key``'s entry.

        ``verified`` follows the latest report's ``is_consistent``: a later inconsistent report
        withdraws an earlier verification. Only the newest ``max_verifications`` reports are
        kept. Raises :class:`EntryNotFoundError` for an absent or expired key.
        """
        validate_key(key)
        consistent = report.get("is_consistent")
        if not isinstance(consistent, bool):
            raise ConsistencyError(
                f"mark_verified {key}: report must have a bool 'is_consistent', got "
                f"{consistent!r}; pass ConsistencyReport.to_json_dict()")
        try:
            clean = canonical_json(dict(report)).decode()
        except (TypeError, ValueError) as err:
            raise ConsistencyError(f"mark_verified {key}: report is not JSON data: {err}") from None
        t = self._now(now)

        def txn(conn: Connection) -> dict[str, Any] | None:
            found = self._read_entry(conn, key)
            if found is None or _expired(found, t):
                return None
            conn.execute(VERIFICATIONS.insert().values(key=key, at=t, consistent=consistent,
                                                       report=clean))
            keep = (select(VERIFICATIONS.c.id).where(VERIFICATIONS.c.key == key)
                    .order_by(VERIFICATIONS.c.id.desc()).limit(self.max_verifications))
            conn.execute(delete(VERIFICATIONS).where(VERIFICATIONS.c.key == key,
                                                     VERIFICATIONS.c.id.not_in(keep)))
            entry = {k: v for k, v in found.items() if k != "verifications"}
            entry["verified"] = consistent
            conn.execute(update(RESULTS).where(RESULTS.c.key == key).values(**_row(entry)))
            if not consistent and found["verified"]:
                logger.warning("registry: %s no longer verified: latest consensus report is "
                               "inconsistent", key)
            return self._read_entry(conn, key)

        updated = self.db.write(txn, f"mark_verified {key}")
        if updated is None:
            raise EntryNotFoundError(
                f"mark_verified: no live registry entry for key {key} (never registered, "
                "or expired); register the result before verifying it")
        return updated

    def purge_expired(self, now: float | None = None) -> int:
        t = self._now(now)

        def txn(conn: Connection) -> int:
            stale = (RESULTS.c.expires_at.is_not(None)) & (RESULTS.c.expires_at <= t)
            keys = select(RESULTS.c.key).where(stale)
            conn.execute(delete(VERIFICATIONS).where(VERIFICATIONS.c.key.in_(keys)))
            return int(conn.execute(delete(RESULTS).where(stale)).rowcount or 0)

        n = self.db.write(txn, "purge expired entries")
        with self._lock:
            self._expired += n
        return n

    def keys(self) -> list[str]:
        return self.db.read(lambda conn: [str(k) for (k,) in conn.execute(
            select(RESULTS.c.key).order_by(RESULTS.c.key))], "list keys")

    def __len__(self) -> int:
        return int(self.db.read(lambda conn: conn.execute(
            select(func.count()).select_from(RESULTS)).scalar_one(), "count entries"))

    # -- claims --------------------------------------------------------------------------------

    def try_claim(self, key: str, owner: str, now: float | None = None) -> ClaimOutcome:
        """Decide whether ``owner`` should train ``key`` now (see :class:`ClaimOutcome`)."""
        validate_key(key)
        if not owner:
            raise ConsistencyError("claim: owner must be a non-empty string (e.g. a driver id)")
        t = self._now(now)

        def txn(conn: Connection) -> ClaimOutcome:
            held = None
            while held is None:  # (PostgreSQL) a claim ended between the two statements
                if insert_ignoring_conflict(conn, CLAIMS, {"key": key, "owner": owner,
                                                           "claimed_at": t}):
                    return ClaimOutcome.GRANTED
                held = conn.execute(select(CLAIMS.c.owner, CLAIMS.c.claimed_at)
                                    .where(CLAIMS.c.key == key).with_for_update()).first()
            if held.owner == owner:
                outcome = ClaimOutcome.RENEWED
            else:
                age = t - held.claimed_at
                if age <= self.claim_timeout_s:
                    return ClaimOutcome.HELD_BY_OTHER
                logger.warning("registry: claim on %s by %s is stale (%.1f s > claim_timeout_s="
                               "%g); taken over by %s", key, held.owner, age,
                               self.claim_timeout_s, owner)
                outcome = ClaimOutcome.TAKEN_OVER
            conn.execute(update(CLAIMS).where(CLAIMS.c.key == key)
                         .values(owner=owner, claimed_at=t))
            return outcome

        return self.db.write(txn, f"claim {key}")

    def claim(self, key: str, owner: str, now: float | None = None) -> bool:
        """True if ``owner`` should train ``key`` (first claimant, renewal or stale takeover);
        False while another owner's claim is fresh."""
        return self.try_claim(key, owner, now).should_train

    def release(self, key: str, owner: str) -> bool:
        """End ``owner``'s claim on ``key`` (e.g. training failed); False if it held none."""

        def txn(conn: Connection) -> bool:
            held = conn.execute(select(CLAIMS.c.owner).where(CLAIMS.c.key == key)).first()
            if held is None:
                return False
            if held.owner != owner:
                logger.warning("registry: %s tried to release %s, which is claimed by %s; "
                               "claim kept", owner, key, held.owner)
                return False
            conn.execute(delete(CLAIMS).where(CLAIMS.c.key == key, CLAIMS.c.owner == owner))
            return True

        return self.db.write(txn, f"release {key}")

    def is_claimed(self, key: str, now: float | None = None) -> bool:
        """Whether a fresh claim (renewed within ``claim_timeout_s``) is on ``key``: a waiter
        stops waiting for a claim whose driver died, and takes it over."""
        t = self._now(now)
        held = self.db.read(lambda conn: conn.execute(
            select(CLAIMS.c.claimed_at).where(CLAIMS.c.key == key)).first(), f"claimed {key}")
        return held is not None and t - held.claimed_at <= self.claim_timeout_s

    def in_flight(self) -> dict[str, Claim]:
        """Current claims by key (stale ones included until taken over)."""
        rows = self.db.read(lambda conn: conn.execute(
            select(CLAIMS.c.key, CLAIMS.c.owner, CLAIMS.c.claimed_at)).all(), "list claims")
        return {r.key: Claim(r.owner, float(r.claimed_at)) for r in rows}

    # -- stats ---------------------------------------------------------------------------------

    def stats(self) -> RegistryStats:
        def counts(conn: Connection) -> tuple[int, int, int]:
            entries = conn.execute(select(func.count()).select_from(RESULTS)).scalar_one()
            verified = conn.execute(select(func.count()).select_from(RESULTS)
                                    .where(RESULTS.c.verified.is_(True))).scalar_one()
            claims = conn.execute(select(func.count()).select_from(CLAIMS)).scalar_one()
            return int(entries), int(verified), int(claims)

        entries, verified, claims = self.db.read(counts, "registry stats")
        with self._lock:
            return RegistryStats(entries=entries, verified=verified, lookups=self._lookups,
                                 hits=self._hits, shared=self._shared, expired=self._expired,
                                 in_flight=claims)

    # -- the JSON file of earlier versions -----------------------------------------------------

    def import_file(self, path: str | Path, now: float | None = None) -> int:
        """Import the registry file an earlier ``mtp`` kept (``_registry/registry.json``, or
        its ``.bak`` when the file is unusable) and rename it ``<name>.imported``; returns how
        many entries were imported. Entries already in the database win; entries failing
        their checksum are skipped with a warning, expired ones dropped. Raises
        :class:`RegistryCorruptError` when the file and its backup both exist and neither
        is usable (nothing is imported or renamed)."""
        p = Path(path)
        found = _read_file(p)
        if found is None:
            return 0
        items, source, main_problem = found
        if main_problem is not None:
            logger.warning("registry: importing backup %s because %s is unusable (%s)",
                           source, p.name, main_problem)
        t = self._now(now)
        entries: list[RegistryEntry] = []
        for i, item in enumerate(items):
            try:
                model = _verify_item(item)
            except _Unusable as err:
                logger.warning("registry file %s: skipping entry #%d: %s", source, i, err)
                continue
            if not _expired(model, t):
                entries.append(model)

        n = self.add_missing(entries)
        for f in (p, _backup_path(p)):
            if f.exists():
                f.replace(f.with_name(f.name + IMPORTED_SUFFIX))
        logger.info("registry: imported %d of %d entries from %s into %s (file renamed "
                    "%s%s)", n, len(items), source, self.db.where, p.name, IMPORTED_SUFFIX)
        return n

    def add_missing(self, entries: list[RegistryEntry]) -> int:
        """Insert many complete entries in one transaction, keeping any key already present
        (an import; a bulk load). Returns how many were added."""

        def txn(conn: Connection) -> int:
            n = 0
            for model in entries:
                validate_key(model.key)
                stored = json.loads(canonical_json(model.model_dump(mode="json")))
                if insert_ignoring_conflict(conn, RESULTS, _row(stored)):
                    n += 1
                    for report in stored["verifications"][-self.max_verifications:]:
                        conn.execute(VERIFICATIONS.insert().values(
                            key=model.key, at=model.shared_at,
                            consistent=bool(report.get("is_consistent")),
                            report=canonical_json(report).decode()))
            return n

        return self.db.write(txn, f"add {len(entries)} entries")

    @staticmethod
    def check_file(path: str | Path) -> None:
        """Raise :class:`RegistryCorruptError` if :meth:`import_file` would (neither ``path``
        nor its backup is usable, and one of them exists); quiet otherwise."""
        _read_file(Path(path))

    # -- internals -----------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)

    def _read_entry(self, conn: Connection, key: str) -> dict[str, Any] | None:
        rows = conn.execute(_ENTRY_WITH_REPORTS, {"key": key}).all()  # one statement
        if not rows:
            return None
        # the stored text is canonical JSON: its sha256 is the entry's checksum
        if hashlib.sha256(rows[0].entry.encode()).hexdigest() != rows[0].checksum:
            logger.error("registry: entry %s in %s fails its checksum; treated as absent (a "
                         "new registration replaces it)", key, self.db.where)
            return None
        entry = json.loads(rows[0].entry)
        entry["verifications"] = [json.loads(r.report) for r in rows if r.report is not None]
        out: dict[str, Any] = entry
        return out

    def _remove_expired(self, key: str, t: float) -> None:
        def txn(conn: Connection) -> int:
            gone = delete(RESULTS).where(RESULTS.c.key == key, RESULTS.c.expires_at.is_not(None),
                                         RESULTS.c.expires_at <= t)
            conn.execute(delete(VERIFICATIONS).where(VERIFICATIONS.c.key == key))
            return int(conn.execute(gone).rowcount or 0)

        if self.db.write(txn, f"remove expired {key}"):
            logger.info("registry: %s expired (now %.0f); removed", key, t)
            with self._lock:
                self._expired += 1


# an entry and its consensus reports (oldest first) in one round trip; built once, so each
# lookup reuses its compiled form
_ENTRY_WITH_REPORTS = (
    select(RESULTS.c.entry, RESULTS.c.checksum, VERIFICATIONS.c.report)
    .select_from(RESULTS.outerjoin(VERIFICATIONS, VERIFICATIONS.c.key == RESULTS.c.key))
    .where(RESULTS.c.key == bindparam("key"))
    .order_by(VERIFICATIONS.c.id))


def _row(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mtp_results`` columns of an entry (its JSON without the consensus reports, which
    live in ``mtp_verifications``)."""
    bare = {k: v for k, v in entry.items() if k != "verifications"}
    return {"key": bare["key"], "task_id": bare["task_id"], "node_id": bare["node_id"],
            "run_dir": bare["run_dir"], "model_path": bare["model_path"],
            "shared_at": bare["shared_at"], "expires_at": bare.get("expires_at"),
            "verified": bool(bare.get("verified", False)),
            "entry": canonical_json(bare).decode(), "checksum": json_checksum(bare)}


class _Unusable(Exception):
    """A registry document or item failed a check; the message says which."""


def _read_file(p: Path) -> tuple[list[Any], Path, str | None] | None:
    """The items of the first usable file of ``p`` and its backup: ``(items, file, what was
    wrong with p or None)``; ``None`` when neither exists. Raises RegistryCorruptError when
    one exists and neither is usable."""
    bak = _backup_path(p)
    problems: list[str] = []
    main_problem = None
    for candidate in (p, bak):
        if not candidate.exists():
            problems.append(f"{candidate.name} does not exist")
            main_problem = main_problem or "it does not exist"
            continue
        try:
            items = _parse_document(candidate.read_bytes())
        except (OSError, _Unusable) as err:
            problems.append(f"{candidate.name}: {err}")
            main_problem = main_problem or str(err)
            continue
        return items, candidate, main_problem
    if not p.exists() and not bak.exists():
        return None
    raise RegistryCorruptError(
        f"result registry {p} is {'corrupt' if p.exists() else 'missing'} and has no good "
        f"backup ({'; '.join(problems)}): move {p.name} and {bak.name} out of {p.parent} to "
        "start an empty registry; trained runs and the local result cache are not affected "
        "(a task trained again is registered again)")


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _expired(entry: RegistryEntry | Mapping[str, Any], now: float) -> bool:
    expires = entry.get("expires_at") if isinstance(entry, Mapping) else entry.expires_at
    return expires is not None and now >= float(expires)


def _parse_document(data: bytes) -> list[Any]:
    try:
        doc = json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise _Unusable(f"not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise _Unusable(f"expected a JSON object, got {_json_type(doc)}")
    if doc.get("format") != FILE_FORMAT:
        raise _Unusable(f"unsupported format {doc.get('format')!r} (this code reads "
                        f"format {FILE_FORMAT})")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise _Unusable("'entries' is missing or not a list")
    return entries


def _json_type(value: object) -> str:
    """``value``'s JSON type name (``null``, ``array``...), as the file's reader sees it."""
    names = {type(None): "null", bool: "boolean", int: "number", float: "number",
             str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _verify_item(item: Any) -> RegistryEntry:
    if not isinstance(item, dict) or not isinstance(item.get("entry"), dict):
        raise _Unusable("not an {'entry': {...}, 'checksum': ...} object")
    entry = item["entry"]
    if item.get("checksum") != json_checksum(entry):
        raise _Unusable(f"checksum mismatch for key {entry.get('key')!r}")
    try:
        model = RegistryEntry.model_validate(entry)
        validate_key(model.key)
    except (ValidationError, ConsistencyError) as err:
        raise _Unusable(f"invalid entry: {err}") from None
    return model
