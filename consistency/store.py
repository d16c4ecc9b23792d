"""State of the cluster-wide result registry, without Ray.

The ``ResultRegistry`` actor is a thin wrapper around :class:`RegistryStore`: it forwards calls
and saves the store to a file on shared storage. The registry maps a cache key
(``identity.cache_key``) to a :class:`RegistryEntry` describing a finished, shareable run, and
tracks which keys are being trained right now (claims), so that two drivers asking for the same
work at the same time train it once.

File format (written atomically; the previous good file is kept as ``<path>.bak``)::

    {"format": 1, "entries": [{"entry": {...}, "checksum": sha256(canonical_json(entry))}, ...]}

Claims and counters are not in the file: a restarted registry forgets who is training what,
which at worst lets a task be trained twice, never serves a wrong result.
"""

from __future__ import annotations

import enum
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

from consistency.cache import validate_key
from consistency.errors import ConsistencyError, EntryNotFoundError, RegistryCorruptError
from mtp_core.atomic import atomic_write_bytes
from mtp_core.hashing import canonical_json, json_checksum

__all__ = ["FILE_FORMAT", "Claim", "ClaimOutcome", "RegistryEntry", "RegistryStats",
           "RegistryStore"]

logger = logging.getLogger(__name__)

FILE_FORMAT = 1
BACKUP_SUFFIX = ".bak"
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
    """Entries by cache key, in-flight claims, counters, and file persistence.

    Lifecycle: create (optionally ``load(path)``), then ``claim`` before training a key,
    ``register`` the result when done (which also ends the claim), ``lookup`` from other
    drivers, ``mark_verified`` when a consensus report arrives, and ``save(path)`` after
    changes. Claims older than ``claim_timeout_s`` belong to a driver presumed dead and may be
    taken over; a live trainer keeps its claim by calling ``claim`` again (it renews).
    Time is wall time from ``clock`` unless a call passes ``now``.
    """

    def __init__(self, *, claim_timeout_s: float = 3600.0, ttl_s: float | None = None,
                 max_verifications: int = 20, clock: Callable[[], float] = time.time) -> None:
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
        self.claim_timeout_s = float(claim_timeout_s)
        self.ttl_s = ttl_s
        self.max_verifications = max_verifications
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, RegistryEntry] = {}
        self._claims: dict[str, Claim] = {}
        self._lookups = self._hits = self._shared = self._expired = 0

    # -- entries -------------------------------------------------------------------------------

    def register(self, key: str, entry: Mapping[str, Any] | RegistryEntry,
                 now: float | None = None) -> dict[str, Any]:
        """Store ``entry`` under ``key`` (replacing an older one) and end any claim on ``key``.

        ``key`` may be omitted from ``entry``; ``shared_at`` defaults to now and ``expires_at``
        to ``shared_at + ttl_s`` (never, when the store has no ttl). Returns the stored entry.
        """
        validate_key(key)
        raw = entry.model_dump(mode="json") if isinstance(entry, RegistryEntry) else dict(entry)
        if raw.setdefault("key", key) != key:
            raise ConsistencyError(
                f"register: entry['key']={raw['key']!r} does not match key {key!r}")
        with self._lock:
            t = self._now(now)
            raw.setdefault("shared_at", t)
            if "expires_at" not in raw and self.ttl_s is not None:
                raw["expires_at"] = float(raw["shared_at"]) + self.ttl_s
            try:
                model = RegistryEntry.model_validate(raw)
            except ValidationError as err:
                raise ConsistencyError(f"register {key}: invalid registry entry: {err}") from None
            try:
                canonical_json(model.model_dump(mode="json"))
            except (TypeError, ValueError) as err:
                raise ConsistencyError(f"register {key}: entry is not JSON data: {err}") from None
            if key in self._entries:
                logger.info("registry: %s re-registered by node %s (replacing node %s's result)",
                            key, model.node_id, self._entries[key].node_id)
            self._entries[key] = model
            self._shared += 1
            claim = self._claims.pop(key, None)
            if claim is not None:
                logger.debug("registry: claim on %s by %s ended by registration", key, claim.owner)
            return model.model_dump(mode="json")

    def lookup(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The entry for ``key`` as a JSON dict, or ``None`` (absent or expired; expired
        entries are removed)."""
        validate_key(key)
        with self._lock:
            self._lookups += 1
            model = self._live(key, self._now(now))
            if model is None:
                return None
            self._hits += 1
            return model.model_dump(mode="json")

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
            clean = json.loads(canonical_json(dict(report)))
        except (TypeError, ValueError) as err:
            raise ConsistencyError(f"mark_verified {key}: report is not JSON data: {err}") from None
        with self._lock:
            model = self._live(key, self._now(now))
            if model is None:
                raise EntryNotFoundError(
                    f"mark_verified: no live registry entry for key {key} (never registered, "
                    "or expired); register the result before verifying it")
            history = [*model.verifications, clean][-self.max_verifications:]
            updated = model.model_copy(update={"verified": consistent, "verifications": history})
            self._entries[key] = updated
            if not consistent and model.verified:
                logger.warning("registry: %s no longer verified: latest consensus report is "
                               "inconsistent", key)
            return updated.model_dump(mode="json")

    def purge_expired(self, now: float | None = None) -> int:
        with self._lock:
            t = self._now(now)
            stale = [k for k, e in self._entries.items() if _expired(e, t)]
            for k in stale:
                del self._entries[k]
            self._expired += len(stale)
            return len(stale)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # -- claims --------------------------------------------------------------------------------

    def try_claim(self, key: str, owner: str, now: float | None = None) -> ClaimOutcome:
        """Decide whether ``owner`` should train ``key`` now (see :class:`ClaimOutcome`)."""
        validate_key(key)
        if not owner:
            raise ConsistencyError("claim: owner must be a non-empty string (e.g. a driver id)")
        with self._lock:
            t = self._now(now)
            held = self._claims.get(key)
            if held is None:
                outcome = ClaimOutcome.GRANTED
            elif held.owner == owner:
                outcome = ClaimOutcome.RENEWED
            else:
                age = t - held.claimed_at
                if age <= self.claim_timeout_s:
                    return ClaimOutcome.HELD_BY_OTHER
                logger.warning("registry: claim on %s by %s is stale (%.1f s > claim_timeout_s="
                               "%g); taken over by %s", key, held.owner, age,
                               self.claim_timeout_s, owner)
                outcome = ClaimOutcome.TAKEN_OVER
            self._claims[key] = Claim(owner, t)
            return outcome

    def claim(self, key: str, owner: str, now: float | None = None) -> bool:
        """True if ``owner`` should train ``key`` (first claimant, renewal or stale takeover);
        False while another owner's claim is fresh."""
        return self.try_claim(key, owner, now).should_train

    def release(self, key: str, owner: str) -> bool:
        """End ``owner``'s claim on ``key`` (e.g. training failed); False if it held none."""
        with self._lock:
            held = self._claims.get(key)
            if held is None:
                return False
            if held.owner != owner:
                logger.warning("registry: %s tried to release %s, which is claimed by %s; "
                               "claim kept", owner, key, held.owner)
                return False
            del self._claims[key]
            return True

    def is_claimed(self, key: str, now: float | None = None) -> bool:
        """Whether a fresh claim (renewed within ``claim_timeout_s``) is on ``key``: a waiter
        stops waiting for a claim whose driver died, and takes it over."""
        with self._lock:
            held = self._claims.get(key)
            return held is not None and self._now(now) - held.claimed_at <= self.claim_timeout_s

    def in_flight(self) -> dict[str, Claim]:
        """Current claims by key (stale ones included until taken over)."""
        with self._lock:
            return dict(self._claims)

    # -- stats and state -----------------------------------------------------------------------

    def stats(self) -> RegistryStats:
        with self._lock:
            return RegistryStats(
                entries=len(self._entries),
                verified=sum(e.verified for e in self._entries.values()),
                lookups=self._lookups, hits=self._hits, shared=self._shared,
                expired=self._expired, in_flight=len(self._claims),
            )

    def state_dict(self) -> dict[str, Any]:
        """Entries, claims and counters (for an actor checkpoint; the file holds entries only)."""
        with self._lock:
            return {
                "format": FILE_FORMAT,
                "entries": [e.model_dump(mode="json") for e in self._entries.values()],
                "claims": {k: asdict(c) for k, c in self._claims.items()},
                "counters": {"lookups": self._lookups, "hits": self._hits,
                             "shared": self._shared, "expired": self._expired},
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != FILE_FORMAT:
            raise ConsistencyError(
                f"RegistryStore.load_state_dict: unsupported format {state.get('format')!r}, "
                f"expected {FILE_FORMAT}")
        try:
            entries = [RegistryEntry.model_validate(e) for e in state.get("entries", [])]
            claims = {k: Claim(str(c["owner"]), float(c["claimed_at"]))
                      for k, c in state.get("claims", {}).items()}
        except (ValidationError, KeyError, TypeError, ValueError) as err:
            raise ConsistencyError(f"RegistryStore.load_state_dict: bad state: {err}") from None
        c = state.get("counters", {})
        with self._lock:
            self._entries = {e.key: e for e in entries}
            self._claims = claims
            self._lookups = int(c.get("lookups", 0))
            self._hits = int(c.get("hits", 0))
            self._shared = int(c.get("shared", 0))
            self._expired = int(c.get("expired", 0))

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the entries to ``path`` atomically; the previous file, if it was readable,
        becomes ``<path>.bak`` first (an unreadable one is left alone, so a good ``.bak`` is
        never replaced by a corrupt file). Returns the path."""
        p = Path(path)
        with self._lock:  # held throughout, so two saves cannot interleave their renames
            entries = [self._entries[k].model_dump(mode="json") for k in sorted(self._entries)]
            doc = {"format": FILE_FORMAT,
                   "entries": [{"entry": e, "checksum": json_checksum(e)} for e in entries]}
            data = canonical_json(doc)
            if p.exists():
                try:
                    old = p.read_bytes()
                    _parse_document(old)
                except (OSError, _Unusable) as err:
                    logger.warning("registry: not backing up %s (%s); keeping %s", p, err,
                                   _backup_path(p).name)
                else:
                    atomic_write_bytes(_backup_path(p), old)
            atomic_write_bytes(p, data)
        return p

    def load(self, path: str | Path, *, missing_ok: bool = True,
             now: float | None = None) -> int:
        """Replace the entries with those in ``path``; returns how many were loaded.

        An unreadable main file falls back to ``<path>.bak`` with a warning; only when both are
        unusable is :class:`RegistryCorruptError` raised (one line: the files, what is wrong
        with each, and how to recover). Single entries whose checksum or fields are wrong are
        skipped with a warning while the rest load; expired ones are dropped. With neither
        file present: 0 entries if ``missing_ok``, else an error.
        """
        p = Path(path)
        found = _read_file(p)
        if found is None:
            if missing_ok:
                logger.info("registry: no file at %s (nor %s); starting empty", p,
                            _backup_path(p).name)
                with self._lock:
                    self._entries = {}
                return 0
            raise ConsistencyError(
                f"registry file {p} does not exist (nor its backup {_backup_path(p)})")
        items, source, main_problem = found
        if main_problem is not None:
            logger.warning("registry: loaded from backup %s because %s is unusable (%s); the "
                           "next save rewrites it", source, p.name, main_problem)
        return self._adopt(items, source, self._now(now))

    @staticmethod
    def check_file(path: str | Path) -> None:
        """Raise :class:`RegistryCorruptError` if :meth:`load` would (neither ``path`` nor its
        backup is usable, and one of them exists); quiet otherwise. A driver calls it before it
        starts the registry actor, so that the error reaches the user as itself."""
        _read_file(Path(path))

    # -- internals -----------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)

    def _live(self, key: str, now: float) -> RegistryEntry | None:
        model = self._entries.get(key)
        if model is None:
            return None
        if _expired(model, now):
            logger.info("registry: %s expired at %.0f (now %.0f); removed", key,
                        model.expires_at, now)
            del self._entries[key]
            self._expired += 1
            return None
        return model

    def _adopt(self, items: list[Any], source: Path, now: float) -> int:
        loaded: dict[str, RegistryEntry] = {}
        skipped = expired = 0
        for i, item in enumerate(items):
            try:
                model = _verify_item(item)
            except _Unusable as err:
                skipped += 1
                logger.warning("registry file %s: skipping entry #%d: %s", source, i, err)
                continue
            if _expired(model, now):
                expired += 1
                continue
            loaded[model.key] = model
        with self._lock:
            self._entries = loaded
            self._expired += expired
        logger.info("registry: loaded %d entries from %s (%d skipped as corrupt, %d expired)",
                    len(loaded), source, skipped, expired)
        return len(loaded)


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


def _expired(model: RegistryEntry, now: float) -> bool:
    return model.expires_at is not None and now >= model.expires_at


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
