"""Content hashes and the seeds derived from them.

All hashes are sha256 over canonical bytes: arrays as a small JSON header (dtype in
little-endian form, shape) followed by their C-order buffer, streamed without copying when the
array is already contiguous and little-endian. Python's ``hash()`` is never used: it is salted
per process. Model weights are hashed by ``consistency.hashing.state_dict_hash`` (it needs
torch) with the same array encoding.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

__all__ = ["SEED_LIMIT", "canonical_json", "columns_hash", "data_hash", "deterministic_seed",
           "hash_array_into", "json_checksum", "mixed_seed", "rank_seed"]

SEED_LIMIT = 2**63  # seeds are 63-bit: torch and numpy take them
_CHUNK = 1 << 24  # 16 MiB slices keep hashlib's working set small on huge arrays


def canonical_json(obj: Any) -> bytes:
    """Sorted-key, whitespace-free JSON: equal mappings give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def json_checksum(obj: Any) -> str:
    """sha256 (hex) of ``obj`` as canonical JSON; the checksum stored next to cached entries."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def _canonical_array(arr: np.ndarray) -> np.ndarray:
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    return np.ascontiguousarray(arr, dtype=dt)


def hash_array_into(h: Any, name: str, arr: np.ndarray) -> None:
    """Feed ``arr`` (header, then its little-endian C-order bytes) into the hash ``h``."""
    arr = _canonical_array(arr)
    header = {"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    h.update(canonical_json(header))
    view = arr.reshape(-1).view(np.uint8).data  # memoryview over the buffer, no copy
    for start in range(0, len(view), _CHUNK):
        h.update(view[start : start + _CHUNK])


def data_hash(features: np.ndarray, targets: np.ndarray) -> str:
    """sha256 of the dataset's content: features and targets with dtype and shape, in order."""
    h = hashlib.sha256(b"mtp-data-v1\0")
    hash_array_into(h, "features", features)
    hash_array_into(h, "targets", targets)
    return h.hexdigest()


def columns_hash(columns: list[tuple[str, np.ndarray]], targets: np.ndarray) -> str:
    """sha256 of a table's content before preprocessing: each column (name, then values:
    numbers as float64 with NaN for missing, text as its JSON list with null for missing),
    in order, then the targets. Data with text or missing values is hashed this way."""
    h = hashlib.sha256(b"mtp-columns-v1\0")
    for name, values in columns:
        if values.dtype.kind in "biuf":
            hash_array_into(h, name, np.asarray(values, np.float64))
        else:
            text = [None if v is None or (isinstance(v, float) and v != v) else str(v)
                    for v in values.tolist()]
            h.update(name.encode() + b"\0" + canonical_json(text))
    hash_array_into(h, "targets", targets)
    return h.hexdigest()


def _seed_of(payload: Any) -> int:
    return int.from_bytes(hashlib.sha256(canonical_json(payload)).digest()[:8], "little") & (
        SEED_LIMIT - 1)


def deterministic_seed(task_id: str, data_digest: str) -> int:
    """A 63-bit seed from the task identity and the data hash (stable across processes)."""
    return _seed_of({"task_id": task_id, "data": data_digest})


def mixed_seed(task_id: str, data_digest: str, global_seed: int) -> int:
    """The task-based seed with a user's ``global_seed`` mixed in."""
    return _seed_of({"task_id": task_id, "data": data_digest, "global_seed": global_seed})


def rank_seed(seed: int, rank: int) -> int:
    """Independent per-rank seed (sha256, so neighbouring ranks get unrelated streams)."""
    digest = hashlib.sha256(f"{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (SEED_LIMIT - 1)
