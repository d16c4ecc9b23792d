"""Generated datasets kept on disk, so that loading them again needs no scikit-learn.

scikit-learn's built-in datasets and its generators (``make_classification``,
``make_regression``) cost an import of scikit-learn and SciPy (about 2 s) for data that is the
same every time for the same spec and versions. The arrays are kept, like scikit-learn's own
downloads, in ``$MTP_DATA_CACHE`` (default ``~/.cache/mtp/datasets``; ``off`` disables it), one
``.npz`` per spec, named by a hash of what the data depends on (the spec's fields, the
scikit-learn and numpy versions). A file is used only if its arrays still hash to the content
hash recorded in it: a damaged or edited file is ignored and rewritten. Writes are atomic; a
cache that cannot be written (a read-only home) only costs the next load its import.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mtp_core.atomic import atomic_write_bytes
from mtp_core.hashing import canonical_json, data_hash

__all__ = ["DATA_CACHE_ENV", "data_cache_dir", "memoized"]

logger = logging.getLogger(__name__)

DATA_CACHE_ENV = "MTP_DATA_CACHE"

Arrays = tuple[np.ndarray, np.ndarray, list[str]]


def data_cache_dir() -> Path | None:
    raw = os.environ.get(DATA_CACHE_ENV, "").strip()
    if raw.lower() in ("off", "0", "false", "none"):
        return None
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "mtp" / "datasets"


def memoized(key: dict[str, Any], build: Callable[[], Arrays]) -> Arrays:
    """``build()``'s features, targets and feature names, from the cache when it holds them."""
    root = data_cache_dir()
    if root is None:
        return build()
    full = {**key, "sklearn": metadata.version("scikit-learn"), "numpy": np.__version__}
    path = root / (hashlib.sha256(canonical_json(full)).hexdigest()[:32] + ".npz")
    cached = _read(path)
    if cached is not None:
        return cached
    x, y, names = build()
    try:
        import io

        buf = io.BytesIO()
        np.savez(buf, x=x, y=y, names=np.asarray(names, dtype=str),
                 digest=np.asarray(data_hash(x, y)))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except OSError as err:
        logger.debug("dataset cache %s not written: %s", path, err)
    return x, y, names


def _read(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y, names, digest = f["x"], f["y"], f["names"], str(f["digest"])
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - an unreadable file is rebuilt
        logger.warning("ignoring dataset cache file %s: %s", path, err)
        return None
    if data_hash(x, y) != digest:
        logger.warning("ignoring dataset cache file %s: its arrays do not match their hash",
                       path)
        return None
    return x, y, [str(n) for n in names]
