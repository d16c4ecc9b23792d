"""The model registry: versions on MLflow's registry, with lineage and alias history on top.

MLflow keeps the registered models, their numbered versions (tags, description, the source of
the files) and which version each alias points at now. What MLflow does not keep, the platform
database does: each version's parent and what changed on that edge (``mtp_model_versions``:
lineage), and every move of every alias, with the version it left, the time, the user and the
reason (``mtp_alias_moves``: history, and the stack rollback unwinds).

Lifecycle: ``ModelRegistry(target, db)`` → ``register`` a finished run directory (optionally
with a parent) → ``set_alias`` / ``rollback`` → ``resolve("NAME@champion")`` to the version and
its run directory (what ``load_model("models:/NAME@champion")`` loads). Bad references (an
unknown model, version or alias) raise :class:`ModelNotFoundError` naming what is missing and
what exists (exit 2).
"""

from __future__ import annotations

import enum
import getpass
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from database import Database
from database.schema import ALIAS_MOVES, MODEL_VERSIONS
from mtp_core.errors import InputError
from mtp_core.names import name_problem
from tracking._retry import retry_busy
from tracking.errors import TrackingError
from tracking.target import TrackingTarget

__all__ = ["VERIFIED_TAG", "AliasMove", "AliasMoveKind", "LineageRelation", "ModelNotFoundError",
           "ModelRegistry", "ModelRegistryError", "ModelVersion", "VersionRef",
           "format_history", "format_lineage"]

logger = logging.getLogger(__name__)

VERIFIED_TAG = "verified"
MODELS_SCHEME = "models:/"
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,254}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)


class ModelRegistryError(TrackingError, InputError):
    """A registry request that cannot be done as asked (exit 2): a bad name or alias, a
    rollback with nothing to roll back to."""


class ModelNotFoundError(ModelRegistryError):
    """An unknown model, version or alias; the message names it and what exists."""


class LineageRelation(enum.StrEnum):
    """How a version came from its parent."""

    ROOT = "root"  # registered from a run, no parent
    BRANCH = "branch"  # trained from the parent's weights with changed settings
    FINE_TUNE = "fine_tune"  # trained further from the parent's weights on other data
    COMPRESSION = "compression"  # the parent's weights, compressed


class AliasMoveKind(enum.StrEnum):
    SET = "set"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class VersionRef:
    """``NAME@VERSION``, ``NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str, what: str = "model reference") -> VersionRef:
        raw = text.strip()
        body = raw[len(MODELS_SCHEME):] if raw.startswith(MODELS_SCHEME) else raw
        if "@" in body:
            name, _, tail = body.partition("@")
        elif raw.startswith(MODELS_SCHEME) and "/" in body:
            name, _, tail = body.partition("/")
        else:
            raise ModelRegistryError(
                f"{what} {text!r} names no version; allowed: NAME@VERSION, NAME@ALIAS, "
                "models:/NAME/VERSION or models:/NAME@ALIAS (e.g. digits@3, digits@champion)")
        check_model_name(name, what)
        if tail.isdigit() and int(tail) > 0:
            return cls(name, version=int(tail))
        check_alias(tail, what)
        return cls(name, alias=tail)

    def __str__(self) -> str:
        return f"{self.name}@{self.version if self.version is not None else self.alias}"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: MLflow's record and the platform's lineage row."""

    name: str
    version: int
    run_dir: str
    run_id: str | None
    parent_version: int | None
    relation: LineageRelation
    changes: dict[str, list[Any]]  # dotted field: [parent value, this version's value]
    created_at: float
    created_by: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias (``to_version`` None: removed)."""

    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: float
    user: str
    reason: str
    kind: AliasMoveKind


def check_model_name(name: str, what: str = "model name") -> str:
    problem = name_problem(name)
    if problem is not None:
        raise ModelRegistryError(f"{what}: model name {problem}")
    return name


def check_alias(alias: str, what: str = "alias") -> str:
    if not _ALIAS.fullmatch(alias) or _RESERVED_ALIAS.fullmatch(alias):
        raise ModelRegistryError(
            f"{what}: alias {alias!r} is not allowed: use a letter, then letters, digits, '_' "
            "or '-' (not 'latest' or v<number>, which MLflow reserves), or a version number")
    return alias


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


class ModelRegistry:
    """Registered models of one tracking store and platform database (see module doc)."""

    def __init__(self, target: TrackingTarget, db: Database) -> None:
        from tracking.client import TrackingClient

        self.target = target
        self.db = db
        self.mlflow = TrackingClient(target).mlflow

    # -- versions ------------------------------------------------------------------------------

    def register(self, name: str, run_dir: str | Path, *, run_id: str | None = None,
                 tags: Mapping[str, str] | None = None, description: str = "",
                 parent: int | None = None,
                 relation: LineageRelation = LineageRelation.ROOT,
                 changes: Mapping[str, Sequence[Any]] | None = None,
                 cache_key: str | None = None, user: str | None = None) -> ModelVersion:
        """A new version of ``name`` (created when new) for the model in ``run_dir``; its
        lineage row records ``parent`` and the ``changes`` from it."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        if parent is not None:
            self._version(name, parent)  # the parent must exist
        if (parent is None) != (relation is LineageRelation.ROOT):
            raise ModelRegistryError(
                f"register {name}: relation {relation.value} "
                f"{'needs a parent version' if parent is None else 'has no parent'}")
        try:
            retry_busy(lambda: self.mlflow.create_registered_model(name), "model creation")
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        all_tags = {**(tags or {}), "mtp.run_dir": str(run_dir)}
        if parent is not None:
            all_tags.update({"mtp.parent_version": str(parent), "mtp.relation": relation.value})
        if self.target.is_server and run_id is None:
            raise ModelRegistryError(
                f"register {name}: {run_dir} was not tracked on {self.target.shown}, and an "
                "MLflow server only registers files of its own runs: train it with "
                "tracking.uri (or MLFLOW_TRACKING_URI) set to this server, or register it in "
                "the store it was tracked in (--tracking-uri)")
        # a server takes the files of one of its runs (runs:/ID, their artifacts); a database
        # store takes the run directory itself
        source = f"runs:/{run_id}" if self.target.is_server else Path(run_dir).resolve().as_uri()
        mv = retry_busy(lambda: self.mlflow.create_model_version(
            name, source=source, run_id=run_id, tags=all_tags, description=description),
            "model version creation")
        version = int(mv.version)
        who = user or _user()
        now = time.time()
        clean = {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in (changes or {}).items()}
        self.db.write(lambda conn: conn.execute(MODEL_VERSIONS.insert().values(
            model=name, version=version, run_dir=str(run_dir), run_id=run_id,
            cache_key=cache_key, parent_version=parent, relation=relation.value,
            changes=json.dumps(clean, sort_keys=True), created_at=now, created_by=who)),
            f"lineage of {name}@{version}")
        logger.info("model %s: version %d registered from %s%s", name, version, run_dir,
                    f" (parent {parent}, {relation.value})" if parent is not None else "")
        return self.get(name, version)

    def get(self, name: str, version: int) -> ModelVersion:
        mv = self._version(name, version)
        row = self.db.read(lambda conn: conn.execute(select(MODEL_VERSIONS).where(
            MODEL_VERSIONS.c.model == name, MODEL_VERSIONS.c.version == version)).first(),
            f"lineage of {name}@{version}")
        return _merge(name, mv, row)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        held = self._aliases(name)  # MLflow's version search returns no aliases
        found = self._all_versions(name)
        rows = self.db.read(lambda conn: {r.version: r for r in conn.execute(
            select(MODEL_VERSIONS).where(MODEL_VERSIONS.c.model == name))}, f"lineage of {name}")
        by_version: dict[int, list[str]] = {}
        for alias, version in held.items():
            by_version.setdefault(version, []).append(alias)
        return sorted((replace(v, aliases=tuple(sorted({*v.aliases,
                                                         *by_version.get(v.version, [])})))
                       for v in (_merge(name, mv, rows.get(int(mv.version))) for mv in found)),
                      key=lambda v: v.version)

    def models(self) -> list[str]:
        return sorted(m.name for m in _pages(
            lambda token: self.mlflow.search_registered_models(max_results=500,
                                                               page_token=token),
            "model search"))

    def _all_versions(self, name: str) -> list[Any]:
        escaped = name.replace("'", "\\'")
        return _pages(lambda token: self.mlflow.search_model_versions(
            f"name = '{escaped}'", max_results=1000, page_token=token), "version search")

    def resolve(self, ref: str | VersionRef) -> ModelVersion:
        """The version a reference names (an alias: the version it points at now)."""
        r = ref if isinstance(ref, VersionRef) else VersionRef.parse(ref)
        if r.version is not None:
            return self.get(r.name, r.version)
        assert r.alias is not None
        return self.get(r.name, self._alias_target(r.name, r.alias))

    def mark_verified(self, cache_key: str, verified: bool) -> list[str]:
        """Tag every version trained as ``cache_key`` ``verified=true|false`` (set by
        ``mtp verify``); returns the versions tagged."""
        rows = self.db.read(lambda conn: conn.execute(
            select(MODEL_VERSIONS.c.model, MODEL_VERSIONS.c.version)
            .where(MODEL_VERSIONS.c.cache_key == cache_key)).all(), "versions of a result")
        for r in rows:
            retry_busy(lambda r=r: self.mlflow.set_model_version_tag(  # type: ignore[misc]
                r.model, str(r.version), VERIFIED_TAG, "true" if verified else "false"),
                "verified tag")
        return [f"{r.model}@{r.version}" for r in rows]

    # -- aliases -------------------------------------------------------------------------------

    def set_alias(self, name: str, version: int, alias: str, *, reason: str = "",
                  user: str | None = None,
                  kind: AliasMoveKind = AliasMoveKind.SET) -> AliasMove:
        """Point ``alias`` at ``version`` and record the move (from the version it held)."""
        check_alias(alias)
        self._version(name, version)  # an alias on a missing version is refused
        before = self._alias_or_none(name, alias)
        move = AliasMove(model=name, alias=alias, from_version=before, to_version=version,
                         at=time.time(), user=user or _user(), reason=reason, kind=kind)
        retry_busy(lambda: self.mlflow.set_registered_model_alias(name, alias, str(version)),
                   "alias move")
        try:
            self.db.write(lambda conn: _record(conn, move), f"alias history of {name}")
        except Exception:
            # MLflow moved and the history did not: put MLflow back, so the two agree
            if before is None:
                self.mlflow.delete_registered_model_alias(name, alias)
            else:
                self.mlflow.set_registered_model_alias(name, alias, str(before))
            raise
        logger.info("model %s: alias %s %s -> %s (%s by %s%s)", name, alias,
                    before if before is not None else "(unset)", version, kind.value,
                    move.user, f": {reason}" if reason else "")
        return move

    def history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every alias move of ``name`` (of one ``alias``), oldest first."""
        self._model(name)
        q = select(ALIAS_MOVES).where(ALIAS_MOVES.c.model == name)
        if alias is not None:
            q = q.where(ALIAS_MOVES.c.alias == alias)
        rows = self.db.read(lambda conn: conn.execute(q.order_by(ALIAS_MOVES.c.id)).all(),
                            f"alias history of {name}")
        return [AliasMove(model=r.model, alias=r.alias, from_version=r.from_version,
                          to_version=r.to_version, at=r.at, user=r.user, reason=r.reason,
                          kind=AliasMoveKind(r.kind)) for r in rows]

    def rollback(self, name: str, alias: str, *, reason: str = "",
                 user: str | None = None) -> AliasMove:
        """Move ``alias`` back to the version it held before its current one.

        The history is a stack: each set pushes a version, each rollback pops one, so a
        second rollback goes one step further back (set 1, set 2, set 3, rollback → 2,
        rollback → 1), and the rollback is itself recorded as a move."""
        check_alias(alias)
        moves = self.history(name, alias)
        stack: list[int] = []
        for m in moves:
            if m.kind is AliasMoveKind.ROLLBACK:
                stack.pop()
            elif m.to_version is not None:
                stack.append(m.to_version)
        aliases = self._aliases(name)
        current = aliases.get(alias)
        if current is None:
            raise ModelNotFoundError(f"model {name} has no alias {alias!r}: nothing to roll "
                                     f"back{_aliases_hint(aliases)}")
        if len(stack) < 2 or stack[-1] != current:
            raise ModelRegistryError(
                f"model {name}: alias {alias!r} (version {current}) has no earlier version "
                "recorded to roll back to; set it with `mtp models alias` instead")
        return self.set_alias(name, stack[-2], alias, reason=reason or "rollback",
                              user=user, kind=AliasMoveKind.ROLLBACK)

    # -- internals -----------------------------------------------------------------------------

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            return retry_busy(lambda: self.mlflow.get_registered_model(name), "model lookup")
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = self.models()
        raise ModelNotFoundError(
            f"no registered model {name!r}; registered: {', '.join(known) or '(none)'} "
            "(register one with `mtp models register RUN_DIR --name NAME`)")

    def _version(self, name: str, version: int) -> Any:
        from mlflow.exceptions import MlflowException

        self._model(name)
        try:
            return retry_busy(lambda: self.mlflow.get_model_version(name, str(version)),
                              "version lookup")
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        have = [str(v.version) for v in self._all_versions(name)]
        raise ModelNotFoundError(f"model {name} has no version {version}; versions: "
                                 f"{', '.join(sorted(have, key=int)) or '(none)'}")

    def _aliases(self, name: str) -> dict[str, int]:
        """Each alias of ``name`` and the version it points at now (one MLflow read)."""
        held = getattr(self._model(name), "aliases", None) or {}
        return {a: int(v) for a, v in held.items()}

    def _alias_or_none(self, name: str, alias: str) -> int | None:
        return self._aliases(name).get(alias)

    def _alias_target(self, name: str, alias: str) -> int:
        aliases = self._aliases(name)
        if alias not in aliases:
            raise ModelNotFoundError(f"model {name} has no alias {alias!r}"
                                     f"{_aliases_hint(aliases)}")
        return aliases[alias]


def _pages(search: Any, what: str) -> list[Any]:
    """Every item of a paged MLflow search (``search(page_token)``)."""
    out: list[Any] = []
    token = None
    while True:
        page = retry_busy(lambda t=token: search(t), what)  # type: ignore[misc]
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def _aliases_hint(aliases: dict[str, int]) -> str:
    return f"; aliases: {', '.join(f'{a} -> {v}' for a, v in sorted(aliases.items()))}" \
        if aliases else "; it has no aliases"


def _record(conn: Connection, move: AliasMove) -> None:
    conn.execute(ALIAS_MOVES.insert().values(
        model=move.model, alias=move.alias, from_version=move.from_version,
        to_version=move.to_version, at=move.at, user=move.user, reason=move.reason,
        kind=move.kind.value))


def _merge(name: str, mv: Any, row: Any) -> ModelVersion:
    tags = dict(getattr(mv, "tags", None) or {})
    aliases = tuple(sorted(getattr(mv, "aliases", None) or ()))
    if row is None:  # a version registered by MLflow directly, not through mtp
        return ModelVersion(name=name, version=int(mv.version),
                            run_dir=tags.get("mtp.run_dir", str(mv.source)),
                            run_id=mv.run_id or None, parent_version=None,
                            relation=LineageRelation.ROOT, changes={},
                            created_at=float(mv.creation_timestamp or 0) / 1000.0,
                            created_by=str(getattr(mv, "user_id", None) or "unknown"),
                            tags=tags, aliases=aliases)
    return ModelVersion(name=name, version=int(row.version), run_dir=row.run_dir,
                        run_id=row.run_id, parent_version=row.parent_version,
                        relation=LineageRelation(row.relation), changes=json.loads(row.changes),
                        created_at=float(row.created_at), created_by=row.created_by,
                        tags=tags, aliases=aliases)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def format_lineage(name: str, versions: Sequence[ModelVersion]) -> str:
    """The version graph as a tree, each edge with what changed on it."""
    children: dict[int | None, list[ModelVersion]] = {}
    known = {v.version for v in versions}
    for v in versions:
        parent = v.parent_version if v.parent_version in known else None
        children.setdefault(parent, []).append(v)
    lines = [f"model {name}: {len(versions)} version{'s' if len(versions) != 1 else ''}"]

    def walk(v: ModelVersion, prefix: str, last: bool, depth: int) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        aliases = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        edge = "" if v.parent_version is None else f" {v.relation.value} of v{v.parent_version}"
        metric = v.tags.get("mtp.monitor_value", "")
        lines.append(f"{prefix}{branch}v{v.version}{aliases}{edge}  {v.run_dir}"
                     f"{'  ' + metric if metric else ''}")
        inner = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for key, (old, new) in sorted(v.changes.items()):
            lines.append(f"{inner}   {key}: {old!r} -> {new!r}")
        kids = children.get(v.version, [])
        for i, child in enumerate(kids):
            walk(child, inner, i == len(kids) - 1, depth + 1)

    for root in children.get(None, []):
        walk(root, "", True, 0)
    return "\n".join(lines)


def format_history(moves: Sequence[AliasMove]) -> str:
    if not moves:
        return "no alias moves recorded"
    rows = [f"{'when':<19}  {'alias':<12} {'from':>4} -> {'to':<4} {'kind':<8} {'user':<12} "
            "reason"]
    for m in moves:
        before = "-" if m.from_version is None else str(m.from_version)
        after = "-" if m.to_version is None else str(m.to_version)
        rows.append(f"{_when(m.at):<19}  {m.alias:<12} {before:>4} -> {after:<4} "
                    f"{m.kind.value:<8} {m.user:<12} {m.reason}")
    return "\n".join(rows)

