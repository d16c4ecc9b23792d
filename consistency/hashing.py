"""The hash of a model's weights: what "the same result" means, bit for bit.

sha256 over the tensors in sorted key order (names, dtypes, shapes and bytes), with the array
encoding of :mod:`mtp_core.hashing` (content hashes and seeds live there).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import torch

from mtp_core.hashing import canonical_json, hash_array_into

__all__ = ["state_dict_hash"]


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a model's tensors in sorted key order (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256(b"mtp-weights-v1\0")
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        flat = tensor.reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        hash_array_into(h, name, raw)
        h.update(canonical_json({"dtype": str(tensor.dtype), "shape": list(tensor.shape)}))
    return h.hexdigest()
