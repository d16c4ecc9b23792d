"""Shared fixtures: a session-scoped local Ray, a bounded wait helper, small task configs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def digits_task_dict(**training: Any) -> dict[str, Any]:
    """A small digits MLP task (with dropout, so RNG state matters for determinism)."""
    base: dict[str, Any] = {
        "name": "digits-test",
        "model": {"type": "mlp", "hidden_sizes": [64], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": 6, "batch_size": 32, "learning_rate": 0.003,
                     "optimizer": "adam"},
        "resources": {"num_workers": 2, "cpus_per_worker": 1},
    }
    base["training"].update(training)
    return base


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for every Ray test in the session (2 CPUs: two 1-CPU workers)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        # "local": never join a cluster some other process left running on this host
        ray.init(address="local", num_cpus=2, namespace="mtp", logging_level="WARNING")
    yield
    ray.shutdown()
