"""The hash of a model's weights: what "the same result" means, bit for bit.

sha256 over the tensors in sorted key order (names, dtypes, shapes and bytes), with the array
encoding of :mod:`mtp_core.hashing` (content hashes and seeds live there).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtp_core.hashing import canonical_json, hash_array_into

if TYPE_CHECKING:  # imported by the hash itself: verifying a cached result needs no torch
    import torch

__all__ = ["SERIALIZED_MODEL_SUFFIXES", "array_dict_hash", "model_file_hash", "state_dict_hash"]

#: Model files whose weights hash is the sha256 of their bytes (a scikit-learn pipeline saved
#: with skops, canonical bytes); any other model file is safetensors, hashed by its tensors.
SERIALIZED_MODEL_SUFFIXES = (".skops",)


def _weights_digest(entries: Iterable[tuple[str, np.ndarray, str, list[int]]]) -> str:
    """The one weights digest: for each ``(name, bytes, dtype name, shape)`` in sorted name
    order, the bytes (with the name) and then the dtype and shape."""
    h = hashlib.sha256(b"mtp-weights-v1\0")
    for name, raw, dtype, shape in sorted(entries, key=lambda e: e[0]):
        hash_array_into(h, name, raw)
        h.update(canonical_json({"dtype": dtype, "shape": shape}))
    return h.hexdigest()


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a model's tensors in sorted key order (names, dtypes, shapes and bytes)."""
    import torch

    def entry(name: str) -> tuple[str, np.ndarray, str, list[int]]:
        tensor = state_dict[name].detach().to("cpu").contiguous()
        flat = tensor.reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        return name, raw, str(tensor.dtype), list(tensor.shape)

    return _weights_digest(entry(name) for name in state_dict)


def array_dict_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """:func:`state_dict_hash` of the same weights read as numpy arrays (a safetensors file
    read with ``safetensors.numpy``), without torch: equal digests for equal tensors. Each
    dtype is named as torch names it (``torch.float32``); a dtype numpy cannot hold (bfloat16)
    cannot be read this way in the first place.
    """
    def entry(name: str) -> tuple[str, np.ndarray, str, list[int]]:
        arr = np.asarray(arrays[name])
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # keeps 0-d arrays 0-d
        if arr.dtype.byteorder == ">":  # torch tensors are little-endian here
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return name, arr.reshape(-1).view(np.uint8), f"torch.{arr.dtype.name}", list(arr.shape)

    return _weights_digest(entry(name) for name in arrays)


def model_file_hash(path: str | Path) -> str:
    """The weights hash of a stored model file, as its run's ``weights_hash`` records it: the
    tensors of a safetensors file (:func:`array_dict_hash`, no torch needed), the bytes of a
    serialized estimator. Raises OSError or the reader's error for an unreadable file."""
    p = Path(path)
    if p.suffix in SERIALIZED_MODEL_SUFFIXES:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    from safetensors.numpy import load_file

    return array_dict_hash(load_file(str(p)))
