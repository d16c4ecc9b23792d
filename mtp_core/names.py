"""Names a user gives that become folder names under the storage path: runs, studies, tasks.

A name is one plain path component, so a run or a study can never be written outside the
storage path or into one of the platform's own folders (``_cache``, ``_registry``, ``_studies``,
``_cluster``, all starting with ``_``, which a name cannot).
"""

from __future__ import annotations

import hashlib
import re

from mtp_core.errors import ConfigError

__all__ = ["MAX_NAME", "NAME_RULE", "RESERVED_NAMES", "check_name", "derived_name",
           "name_problem"]

MAX_NAME = 128
RESERVED_NAMES = frozenset({"_cache", "_registry", "_studies", "_cluster", "_db", "_mlflow"})
NAME_RULE = "1-128 letters, digits, '_', '.', '-' starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain name (None when it is)."""
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved for the platform's own folder"
    if not _NAME.fullmatch(name):
        what = "a path" if ("/" in name or "\\" in name or name in (".", "..")) else "not allowed"
        return f"{name!r} is {what}: use {NAME_RULE}"
    return None


def check_name(name: str, field: str) -> str:
    """``name`` when it is a plain name, else :class:`ConfigError` naming ``field``."""
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"{field}: {problem} (a folder name under the storage path)")
    return name


def derived_name(base: str, suffix: str, max_len: int = MAX_NAME) -> str:
    """``base + suffix`` within ``max_len`` characters: a ``base`` too long for that keeps its
    first characters and a digest of the whole of it, so two long bases never share a name."""
    name = base + suffix
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{base[:max_len - len(suffix) - 9]}-{digest}{suffix}"
