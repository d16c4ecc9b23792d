"""Shared fixtures: a session-scoped local Ray, a bounded wait helper, small task configs."""

from __future__ import annotations

import os
import threading
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


# Tests that compare two trainings of one task must really train both: result reuse (local
# cache and cluster registry) is off unless a test turns it on (tests/integration/
# test_consistency.py does).
NO_REUSE: dict[str, Any] = {"cache": {"enabled": False}, "sharing": {"enabled": False}}


def train_in_thread(task: dict[str, Any], storage: Path) -> tuple[threading.Thread, dict]:
    """``trainer.train`` in a background thread; its result or error lands in the dict."""
    from trainer import parse_task, train

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = train(parse_task(task), storage_path=storage)
        except Exception as err:  # noqa: BLE001 - handed to the test thread
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def digits_task_dict(**training: Any) -> dict[str, Any]:
    """A small digits MLP task (with dropout, so RNG state matters for determinism)."""
    base: dict[str, Any] = {
        "name": "digits-test",
        "model": {"type": "mlp", "hidden_sizes": [64], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": 6, "batch_size": 32, "learning_rate": 0.003,
                     "optimizer": "adam"},
        "resources": {"num_workers": 2, "cpus_per_worker": 1},
        "consistency": NO_REUSE,
    }
    base["training"].update(training)
    return base


@pytest.fixture
def ray_session() -> Iterator[None]:
    """A local Ray with 2 CPUs (two 1-CPU workers), started once and shared by later tests.

    Function-scoped so that a multi-node test module, which shuts Ray down to connect to its
    own ``ray.cluster_utils.Cluster``, is followed by a fresh local Ray rather than none.
    """
    ensure_local_ray()
    yield


def ensure_local_ray() -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        # "local": never join a cluster some other process left running on this host
        ray.init(address="local", num_cpus=2, namespace="mtp", logging_level="WARNING")


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_exit() -> Iterator[None]:
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        ray.shutdown()


FAST_FAULT_TOLERANCE: dict[str, Any] = {
    # 1 s heartbeats, FAILED after 2 s: detection well inside three intervals
    "heartbeat_interval_s": 1.0, "node_failure_timeout_s": 2.0,
    "warning_missed_heartbeats": 1, "critical_missed_heartbeats": 1,
    "retry_backoff_s": 0.0, "max_retry_attempts": 3,
}
