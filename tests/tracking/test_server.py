"""A run logged through ``mtp`` to a real ``mlflow server`` on loopback reads back through
MLflow's REST API: its parameters and its metric history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mtp_core.spec import parse_task
from tests.tracking.support import iris_tracked, rest_get, running_mlflow_server, tracking_on
from trainer.api import Executor, train


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    with running_mlflow_server(tmp_path) as base:
        yield base


def test_a_run_logged_to_an_mlflow_server_reads_back_through_its_rest_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str) -> None:
    tracking_on(monkeypatch)
    raw = iris_tracked("served-iris", epochs=3, uri=mlflow_server, experiment="served")
    r = train(parse_task(raw), storage_path=tmp_path / "storage", executor=Executor.IN_PROCESS)
    assert r.tracking is not None and r.tracking.uri == mlflow_server

    run = rest_get(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=r.tracking.run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["training.epochs"] == "3" and params["dataset.name"] == "iris"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mtp.data_hash"] == r.data_hash and tags["mtp.weights_hash"] == r.weights_hash
    history = rest_get(mlflow_server, "/api/2.0/mlflow/metrics/get-history",
                   run_id=r.tracking.run_id, metric_key="val_loss")["metrics"]
    got = sorted((m["step"], m["value"]) for m in history)
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([h.metrics["val_loss"] for h in r.history])
    exp = rest_get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name",
               experiment_name="served")["experiment"]
    assert exp["experiment_id"] == r.tracking.experiment_id
    artifacts = rest_get(mlflow_server, "/api/2.0/mlflow/artifacts/list",
                     run_id=r.tracking.run_id).get("files", [])
    assert {"result.json", "model.safetensors"} <= {a["path"] for a in artifacts}
