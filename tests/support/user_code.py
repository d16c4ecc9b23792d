"""A user's model package, written to a folder that is not on the Python path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


LOADERS = '''"""A user's data loaders."""
import numpy as np
import pyarrow as pa
from sklearn.datasets import load_iris


def iris(limit=None):
    bunch = load_iris()
    x, y = bunch.data, bunch.target
    return (x[:limit], y[:limit]) if limit else (x, y)


def iris_table():
    bunch = load_iris()
    cols = {f"f{i}": bunch.data[:, i] for i in range(bunch.data.shape[1])}
    cols["species"] = [str(bunch.target_names[t]) for t in bunch.target]
    return pa.table(cols), "species"


def raises():
    raise ValueError("no such table")


def one_thing():
    return np.zeros((3, 2))


def ragged_rows():
    return np.zeros((5, 2)), np.zeros(4)


def text_feature():
    return pa.table({"a": ["x", "y"], "t": [0, 1]}), "t"


def wrong_target():
    return pa.table({"a": [1.0, 2.0], "t": [0, 1]}), "label"
'''


def write_loaders(folder: Path) -> Path:
    """``folder/user_data.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user_data.py").write_text(LOADERS)
    return folder / "user_data.py"


@pytest.fixture
def fresh_user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test's code cache under its own folder, and none of the users' packages imported
    (another test may have installed the same bytes elsewhere)."""
    from trainer import user_code

    monkeypatch.setenv("MTP_CODE_CACHE", str(tmp_path / "code-cache"))
    user_code._INSTALLED.clear()
    for name in [m for m in sys.modules if m.split(".")[0] in ("user_nets", "user_data")]:
        del sys.modules[name]
    yield
