"""Shared fixtures: a local Ray, small task configs, and the end-of-session cleanup.

The bounded wait helper lives in :mod:`tests.support.wait` (re-exported here, where older
tests import it from).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresServer
from tests.support.simulate import SUITE_ENV, kill_stopped_suite_processes
from tests.support.wait import wait_for as wait_for

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


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


def iris_task_dict(name: str) -> dict[str, Any]:
    """The smallest real task: a linear model on iris, one epoch, one worker, no reuse."""
    return {"name": name, "model": {"type": "linear"},
            "dataset": {"source": "sklearn", "name": "iris"},
            "training": {"epochs": 1, "batch_size": 16},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}


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


@pytest.fixture(autouse=True)
def _tracking_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow tracking is off unless a test turns it on (tests/tracking do): importing
    MLflow (~2 s) and creating its tables (~3 s) is not for every test that trains; nor is a
    developer's own ``MLFLOW_TRACKING_URI``."""
    monkeypatch.setenv("MTP_TRACKING", "off")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


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

    from mtp_core.ray_env import own_cluster_options

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        # "local": never join a cluster some other process left running on this host; its
        # processes are told which cluster is theirs, as the platform's own connect() does
        # with its dashboard: tests find Ray Train's workers through the state API
        ray.init(address="local", num_cpus=2, namespace="mtp", logging_level="WARNING",
                 **own_cluster_options(None, embedded=True, dashboard=True))


@pytest.fixture(scope="session", autouse=True)
def _session_cleanup() -> Iterator[None]:
    """Tag this suite's processes, and at the end stop Ray and reap any frozen one.

    Every process the suite starts (Ray nodes and their workers included) inherits
    ``SUITE_ENV`` in its environment, which is how the reaper tells this suite's processes from
    those of other Ray sessions on the same host. A node frozen by
    :func:`tests.support.simulate.freeze_node` and not released would otherwise stay stopped
    forever (a stopped process never sees its raylet die).
    """
    os.environ[SUITE_ENV] = str(os.getpid())
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        ray.shutdown()
    reaped = kill_stopped_suite_processes(str(os.getpid()))
    for proc in reaped:
        logger.warning("killed a stopped process the suite left behind: %s", proc)
    assert not reaped, (
        "stopped (SIGSTOP) processes of this suite were left behind and are now killed: "
        + "; ".join(str(p) for p in reaped)
        + ". The test that froze them must release them in a finally (kill_frozen).")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1, started on first use (about 1-2 s) and stopped at the end
    of the session; ``postgres_server.create_database(name)`` makes more databases."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://...``) of a fresh, empty database."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def platform_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, migrated platform database on each backend (the contract suites' fixture):
    an SQLite file under ``tmp_path``, or a new database on the session's PostgreSQL."""
    from sqlalchemy.engine import make_url

    from database import Database, default_sqlite_path

    if request.param == "sqlite":
        url = make_url(f"sqlite:///{default_sqlite_path(tmp_path)}")
    else:
        url = make_url(request.getfixturevalue("postgres_url"))
    db = Database(url)
    try:
        yield db
    finally:
        db.close()


FAST_FAULT_TOLERANCE: dict[str, Any] = {
    # 1 s heartbeats, FAILED after 2 s: detection well inside three intervals
    "heartbeat_interval_s": 1.0, "node_failure_timeout_s": 2.0,
    "warning_missed_heartbeats": 1, "critical_missed_heartbeats": 1,
    "retry_backoff_s": 0.0, "max_retry_attempts": 3,
}

