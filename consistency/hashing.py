"""Content hashes and the seeds derived from them.

All hashes are sha256 over canonical bytes: arrays as a small JSON header (dtype in
little-endian form, shape) followed by their C-order buffer, streamed without copying when the
array is already contiguous and little-endian. Python's ``hash()`` is never used: it is salted
per process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["canonical_json", "data_hash", "deterministic_seed", "state_dict_hash"]

_CHUNK = 1 << 24  # 16 MiB slices keep hashlib's working set small on huge arrays


def canonical_json(obj: Any) -> bytes:
    """Sorted-key, whitespace-free JSON: equal mappings give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _canonical_array(arr: np.ndarray) -> np.ndarray:
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    return np.ascontiguousarray(arr, dtype=dt)


def _update_array(h: Any, name: str, arr: np.ndarray) -> None:
    arr = _canonical_array(arr)
    header = {"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    h.update(canonical_json(header))
    view = arr.reshape(-1).view(np.uint8).data  # memoryview over the buffer, no copy
    for start in range(0, len(view), _CHUNK):
        h.update(view[start : start + _CHUNK])


def data_hash(features: np.ndarray, targets: np.ndarray) -> str:
    """sha256 of the dataset's content: features and targets with dtype and shape, in order."""
    h = hashlib.sha256(b"mtp-data-v1\0")
    _update_array(h, "features", features)
    _update_array(h, "targets", targets)
    return h.hexdigest()


def deterministic_seed(task_id: str, data_digest: str) -> int:
    """A 63-bit seed from the task identity and the data hash (stable across processes)."""
    digest = hashlib.sha256(canonical_json({"task_id": task_id, "data": data_digest})).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a model's tensors in sorted key order (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256(b"mtp-weights-v1\0")
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        flat = tensor.reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        _update_array(h, name, raw)
        h.update(canonical_json({"dtype": str(tensor.dtype), "shape": list(tensor.shape)}))
    return h.hexdigest()
