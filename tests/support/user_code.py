"""A user's model package, written to a folder that is not on the Python path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NETS = '''"""A user's networks."""
import torch
from torch import nn


def build(input_shape, num_outputs, task, hidden=32, depth=1):
    n_in = 1
    for d in input_shape:
        n_in *= d
    layers = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(n_in, hidden), nn.Tanh()]
        n_in = hidden
    layers.append(nn.Linear(n_in, num_outputs))
    return nn.Sequential(*layers)


def not_a_module(input_shape, num_outputs, task):
    return "a string"


def wrong_width(input_shape, num_outputs, task):
    return build(input_shape, num_outputs + 1, task)


def raises(input_shape, num_outputs, task):
    raise RuntimeError("the factory broke")


NOT_CALLABLE = 3
'''


def write_package(folder: Path, extra: str = "") -> Path:
    """``folder/user_nets/{__init__,nets}.py``; ``extra`` is appended to nets.py."""
    pkg = folder / "user_nets"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS + extra)
    return pkg


def custom_digits_task(name: str = "custom-digits", *, code_dir: Path, epochs: int = 6,
                       workers: int = 1, factory: str = "user_nets.nets:build",
                       **params: Any) -> dict[str, Any]:
    return {"name": name,
            "model": {"type": "custom", "factory": factory,
                      "params": params or {"hidden": 48}, "code_dir": str(code_dir)},
            "dataset": {"source": "sklearn", "name": "digits"},
            "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.003},
            "resources": {"num_workers": workers, "cpus_per_worker": 1},
            "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}
