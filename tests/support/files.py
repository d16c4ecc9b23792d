"""What a folder holds, to assert that a refused command changed nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["snapshot"]


def snapshot(root: Path) -> dict[str, Any]:
    """Every entry under ``root``: a regular file's bytes, a link's target, else its type (a
    folder, a FIFO: never opened). Equal snapshots mean nothing changed, appeared or vanished."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = p.read_bytes() if st.st_mode & stat.S_IRUSR else ("unreadable",)
            else:
                out[rel] = ("type", stat.S_IFMT(st.st_mode))
    return out
