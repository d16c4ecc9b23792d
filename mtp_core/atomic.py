"""Atomic, verified file I/O: the one helper every writer of platform state uses.

A write goes to a temporary file in the same directory, is flushed and fsynced, then replaces
the target with ``os.replace``: a reader sees the old file or the whole new one, never a torn
write, also after a crash. :func:`read_json` is the checked read of a JSON state file: a missing
file is ``None``, an unreadable or non-object one raises :class:`CorruptFileError` naming the
file, unless the caller asked to tolerate it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from mtp_core.errors import MtpError

__all__ = ["CorruptFileError", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "read_json"]

logger = logging.getLogger(__name__)


class CorruptFileError(MtpError):
    """A state file exists but cannot be parsed; names the file."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide entries from other users of the share
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = None) -> None:
    """``data`` as JSON (NaN and infinity refused: they are not JSON)."""
    atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=False))


def read_json(path: str | Path, *, tolerate_corrupt: bool = False) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when the file does not exist.

    A file that cannot be read or is not a JSON object raises :class:`CorruptFileError`, or,
    with ``tolerate_corrupt``, is logged and read as ``None`` (state a component can rebuild).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        if tolerate_corrupt:
            logger.warning("ignoring unreadable state file %s: %s", p, err)
            return None
        raise CorruptFileError(f"state file {str(p)!r} cannot be read: {err}") from None
    if not isinstance(data, dict):
        if tolerate_corrupt:
            logger.warning("ignoring state file %s: not a JSON object", p)
            return None
        raise CorruptFileError(f"state file {str(p)!r} does not hold a JSON object")
    return data
