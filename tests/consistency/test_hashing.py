from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from consistency.hashing import state_dict_hash
from mtp_core.hashing import canonical_json, data_hash, deterministic_seed


def test_data_hash_is_content_sensitive() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 0, 1], dtype=np.int64)
    h = data_hash(x, y)
    assert h == data_hash(x.copy(), y.copy())
    x2 = x.copy()
    x2.reshape(-1).view(np.uint8)[5] ^= 1  # one bit of one byte
    assert data_hash(x2, y) != h
    assert data_hash(x.reshape(2, 6), y) != h  # same bytes, other shape
    assert data_hash(x.astype(np.float64), y) != h  # same values, other dtype
    assert data_hash(x[::-1].copy(), y) != h  # order matters
    assert data_hash(x, y[::-1].copy()) != h


def test_data_hash_ignores_memory_layout_and_byte_order() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.arange(4)
    assert data_hash(np.asfortranarray(x), y) == data_hash(x, y)
    assert data_hash(x.astype(">f4"), y) == data_hash(x, y)


def test_seed_is_stable_across_processes() -> None:
    seed = deterministic_seed("task-a", "ab" * 32)
    code = ("from mtp_core.hashing import deterministic_seed; "
            "print(deterministic_seed('task-a', 'ab' * 32))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"})
    assert int(out.stdout) == seed
    assert 0 <= seed < 2**63
    assert deterministic_seed("task-b", "ab" * 32) != seed
    assert deterministic_seed("task-a", "ac" * 32) != seed


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]}) == canonical_json(
        {"a": [1, {"x": 1, "y": 2}], "b": 1})


def test_state_dict_hash() -> None:
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3)
    sd = m.state_dict()
    h = state_dict_hash(sd)
    assert h == state_dict_hash({k: v.clone() for k, v in reversed(list(sd.items()))})
    sd2 = {k: v.clone() for k, v in sd.items()}
    sd2["bias"][0] = torch.nextafter(sd2["bias"][0], torch.tensor(10.0))
    assert state_dict_hash(sd2) != h
    assert state_dict_hash({"x": torch.tensor(1.0)}) != state_dict_hash(
        {"x": torch.tensor(1.0, dtype=torch.float64)})


@pytest.mark.parametrize("tensor", [
    torch.randn(3, 4), torch.tensor(5, dtype=torch.int64), torch.zeros(0),
    torch.tensor([True, False]), torch.randn(2, dtype=torch.float64),
    torch.randint(0, 9, (3,), dtype=torch.uint8), torch.randn(4, 3).t(),
    torch.arange(6, dtype=torch.int32).reshape(2, 3)[:, ::2],
], ids=["float32", "int64-0d", "empty", "bool", "float64", "uint8", "transposed", "strided"])
def test_the_numpy_hash_of_weights_is_their_torch_hash(tensor: torch.Tensor,
                                                       tmp_path: Path) -> None:
    """A cache hit is verified from the safetensors file read as numpy (no torch import):
    the digest must be the one the run recorded from its torch tensors."""
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    from consistency.hashing import array_dict_hash

    state = {"w": tensor, "bias": torch.ones(2)}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "m.safetensors")
    assert array_dict_hash(load_file(tmp_path / "m.safetensors")) == state_dict_hash(state)
    assert array_dict_hash({k: v.numpy() for k, v in state.items()}) == state_dict_hash(state)
    other = {"w": tensor, "bias": torch.zeros(2)}
    assert array_dict_hash({k: v.numpy() for k, v in other.items()}) != state_dict_hash(state)


def test_the_torch_version_in_cache_keys_is_the_imported_torchs() -> None:
    from trainer.versions import torch_version

    assert torch_version() == torch.__version__
