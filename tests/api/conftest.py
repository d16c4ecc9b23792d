"""One real cluster for every API test (``tests/api``), shared by the package's modules.

A ``ray.cluster_utils.Cluster`` as in ``tests/integration/test_scheduler.py``: a head node with
no CPUs and its dashboard (the platform's services, the jobs' drivers) and one worker node
with one CPU, so one training runs at a time; the services start with ``mtp cluster start``.
Unlike there, the jobs track to MLflow (a task registers its model version only when it is
tracked): the cluster's processes inherit this process's environment as the cluster starts,
with ``MTP_TRACKING`` and ``MLFLOW_TRACKING_URI`` unset. The API server runs in this process
(``start_server`` on a free port); tests that need a separate ``mtp serve`` start their own.

The fixture is package-scoped: it starts on the first test that asks for it and stops after
the last test of ``tests/api``, so a session that runs other cluster tests afterwards finds
Ray disconnected, as after any module-scoped cluster.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.ray_head import free_port

TOKEN = "test-token-" + secrets.token_urlsafe(24)
RUN_TIMEOUT_S = 420.0  # one task from submit to its end on a loaded 2-core machine


def digits(name: str, epochs: int, **extra: Any) -> dict[str, Any]:
    """A digits MLP, one worker with one CPU, no result reuse (every task really trains)."""
    task: dict[str, Any] = {
        "name": name,
        "model": {"type": "mlp", "hidden_sizes": [32], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.003},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}},
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        task.setdefault(section, {})[field] = value
    return task


@dataclass
class ApiCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    storage: Path
    server: Any  # mtp.api.server.ApiServer
    token: str

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def client(self, token: str | None = None) -> Any:
        from mtp.client import Client

        return Client(self.target, token=self.token if token is None else token,
                      timeout_s=120.0)


_UNSET_FOR_JOBS = ("MTP_TRACKING", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="package")
def api_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiCluster]:
    import ray
    from ray.cluster_utils import Cluster

    from mtp.api.server import ServerConfig, start_server
    from mtp.cli import main

    if ray.is_initialized():
        ray.shutdown()
    storage = tmp_path_factory.mktemp("api")
    saved = {k: os.environ.pop(k, None) for k in _UNSET_FOR_JOBS}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": free_port(),
        # the head's job agent (Ray's default port, 52365, may be another cluster's on this
        # host: the agent then runs without its HTTP service and no job can be submitted)
        "dashboard_agent_listen_port": free_port()})
    server = None
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="mtp", logging_level="WARNING")
        assert main(["cluster", "start", "--storage-path", str(storage)]) == 0
        server = start_server(ServerConfig(port=0, token=TOKEN))
        assert server.port > 0
        yield ApiCluster(cluster, storage, server, TOKEN)
    finally:
        try:
            if server is not None:
                server.stop(grace_s=2.0)
            if ray.is_initialized():
                main(["cluster", "stop"])
        finally:
            ray.shutdown()
            cluster.shutdown()
            for k, v in saved.items():
                if v is not None:
                    os.environ[k] = v
