"""Seeding, deterministic kernels, and capturing/restoring every RNG a rank uses.

The task seed (``consistency.deterministic_seed``) initialises the model identically on every
rank; each rank then draws its own stream (dropout masks) from ``rank_seed(seed, rank)``.
RNG states are converted to plain tensors and tuples so checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import platform
import random
import re
from typing import Any

import numpy as np
import torch

__all__ = [
    "capture_rng_state",
    "enable_deterministic_algorithms",
    "hardware_class",
    "restore_rng_state",
    "seed_everything",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def hardware_class(device: str = "cpu") -> str:
    """The hardware class a run's last bits depend on, as a file-name-safe string.

    The same task gives bit-identical weights on the same hardware class (and software
    versions), not across classes: torch's CPU kernels and MKL choose their code paths by the
    instruction set and the CPU's vendor (an Intel and an AMD machine, both with AVX-512, give
    different last bits), CUDA kernels by the device. So for the CPU: the architecture, the
    vendor and the SIMD level torch dispatches to (``cpu-x86_64-GenuineIntel-AVX512``); for a
    CUDA device: its name and compute capability (``cuda-NVIDIA_H200-sm90``).
    """
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        text = f"cuda-{torch.cuda.get_device_name(index)}-sm{major}{minor}"
    else:
        text = (f"cpu-{platform.machine() or 'unknown'}-{_cpu_vendor()}-"
                f"{torch.backends.cpu.get_cpu_capability()}")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("vendor_id", "CPU implementer"):
                    return value.strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or "unknown"


def enable_deterministic_algorithms() -> None:
    """Refuse nondeterministic kernels; cuBLAS needs a fixed workspace for that on GPUs."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True always returns the tuple form
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
