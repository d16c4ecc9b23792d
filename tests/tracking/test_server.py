"""A run logged through ``mtp`` to a real ``mlflow server`` on loopback reads back through
MLflow's REST API: its parameters and its metric history."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtp_core.spec import parse_task
from tests.conftest import wait_for
from tests.tracking.support import iris_tracked, tracking_on
from trainer.api import Executor, train

MLFLOW = Path(sys.executable).with_name("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(base: str, path: str, **query: str) -> Any:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if body.startswith(("{", "[")) else body


def _healthy(base: str) -> bool:
    try:
        return _get(base, "/health") == "OK"
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` with an SQLite backend in tmp_path on a free loopback port; stopped
    (its whole process group) at the end."""
    port = _free_port()
    log = open(tmp_path / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-2000:]
            return _healthy(base)

        wait_for(up, timeout_s=120, interval_s=0.5, what=f"mlflow server on {base}/health")
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_a_run_logged_to_an_mlflow_server_reads_back_through_its_rest_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str) -> None:
    tracking_on(monkeypatch)
    raw = iris_tracked("served-iris", epochs=3, uri=mlflow_server, experiment="served")
    r = train(parse_task(raw), storage_path=tmp_path / "storage", executor=Executor.IN_PROCESS)
    assert r.tracking is not None and r.tracking.uri == mlflow_server

    run = _get(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=r.tracking.run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["training.epochs"] == "3" and params["dataset.name"] == "iris"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mtp.data_hash"] == r.data_hash and tags["mtp.weights_hash"] == r.weights_hash
    history = _get(mlflow_server, "/api/2.0/mlflow/metrics/get-history",
                   run_id=r.tracking.run_id, metric_key="val_loss")["metrics"]
    got = sorted((m["step"], m["value"]) for m in history)
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([h.metrics["val_loss"] for h in r.history])
    exp = _get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name",
               experiment_name="served")["experiment"]
    assert exp["experiment_id"] == r.tracking.experiment_id
    artifacts = _get(mlflow_server, "/api/2.0/mlflow/artifacts/list",
                     run_id=r.tracking.run_id).get("files", [])
    assert {"result.json", "model.safetensors"} <= {a["path"] for a in artifacts}
