"""The hash of a model's weights: what "the same result" means, bit for bit.

sha256 over the tensors in sorted key order (names, dtypes, shapes and bytes), with the array
encoding of :mod:`mtp_core.hashing` (content hashes and seeds live there).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from mtp_core.hashing import canonical_json, hash_array_into

if TYPE_CHECKING:  # imported by the hash itself: verifying a cached result needs no torch
    import torch

__all__ = ["array_dict_hash", "state_dict_hash"]


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a model's tensors in sorted key order (names, dtypes, shapes and bytes)."""
    import torch

    h = hashlib.sha256(b"mtp-weights-v1\0")
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        flat = tensor.reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        hash_array_into(h, name, raw)
        h.update(canonical_json({"dtype": str(tensor.dtype), "shape": list(tensor.shape)}))
    return h.hexdigest()


def array_dict_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """:func:`state_dict_hash` of the same weights read as numpy arrays (a safetensors file
    read with ``safetensors.numpy``), without torch: equal digests for equal tensors. Each
    dtype is named as torch names it (``torch.float32``); a dtype numpy cannot hold (bfloat16)
    cannot be read this way in the first place.
    """
    h = hashlib.sha256(b"mtp-weights-v1\0")
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # keeps 0-d arrays 0-d
        if arr.dtype.byteorder == ">":  # torch tensors are little-endian here
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        raw = arr.reshape(-1).view(np.uint8)
        hash_array_into(h, name, raw)
        h.update(canonical_json({"dtype": f"torch.{arr.dtype.name}", "shape": list(arr.shape)}))
    return h.hexdigest()
