"""A client nobody here wrote: Node.js with ``@grpc/grpc-js`` and ``@grpc/proto-loader`` (from
npm, ``tests/api/node``) loads ``proto/mtp/v1`` at run time, submits a task that registers a
model version, watches it to its end and reads the version, against the API server of
``tests/api/conftest.py``'s cluster on loopback.

Without ``node``/``npm`` on the machine the test is skipped, unless ``MTP_TEST_REQUIRE_NODE`` is
set (CI sets it): then it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import RUN_TIMEOUT_S, ApiCluster

NODE_DIR = Path(__file__).resolve().parent / "node"
REQUIRE_ENV = "MTP_TEST_REQUIRE_NODE"
MODEL = "node-digits"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """``tests/api/node`` with its packages installed (``npm ci`` once, from the lock file)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{missing} not found on PATH, and {REQUIRE_ENV} is set")
        pytest.skip(f"{missing} not found on PATH (set {REQUIRE_ENV} to make this a failure)")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        tried = []
        for cmd in ([npm, "ci", "--no-audit", "--no-fund"],
                    [npm, "install", "--no-audit", "--no-fund"]):
            done = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True,
                                  timeout=300)
            if done.returncode == 0:
                break
            tried.append(f"`{' '.join(cmd[1:])}` exited {done.returncode}: "
                         f"{done.stderr.strip()[-1500:]}")
        else:
            pytest.fail("cannot install the Node client's packages in tests/api/node: "
                        + " | ".join(tried))
    return NODE_DIR / "client.js"


@pytest.fixture(scope="module")
def node_run(api_cluster: ApiCluster, node_client: Path) -> dict[str, Any]:
    """``node client.js TARGET TOKEN MODEL`` once: the JSON object it printed."""
    done = subprocess.run(["node", str(node_client), api_cluster.target, api_cluster.token,
                           MODEL], cwd=node_client.parent, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S + 60)
    assert done.returncode == 0, f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}"
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


@pytest.mark.ray
@pytest.mark.slow
def test_a_node_client_submits_watches_and_reads_the_registered_version(
        api_cluster: ApiCluster, node_run: dict[str, Any]) -> None:
    seen = node_run
    assert seen["submitted"]["created"] is True
    assert seen["submitted"]["state"] == "TASK_STATE_PENDING"
    assert seen["stream_status"]["code"] == "OK", seen["stream_status"]
    events = seen["events"]
    states = [e["state"] for e in events if e["type"] == "task"]
    assert "RUNNING" in states, states
    assert states[-1] == "SUCCEEDED" and events[-1]["type"] == "task", events[-3:]
    assert states.count("SUCCEEDED") == 1, states
    progress = [e for e in events if e["type"] == "progress"]
    assert any(p["epoch"] == 3 and p["epochs"] == 3 for p in progress), progress
    assert all(p["epochs"] == 3 and 1 <= p["epoch"] <= 3 for p in progress), progress
    # the epochs arrive in order, and the last one before the task's end
    assert [p["epoch"] for p in progress] == sorted(p["epoch"] for p in progress)
    assert events.index(progress[-1]) < len(events) - 1

    task = seen["task"]
    assert task["state"] == "TASK_STATE_SUCCEEDED", task
    run_dir = Path(task["run_dir"])
    assert run_dir.parent.resolve() == api_cluster.storage.resolve(), run_dir
    result = task["result"]
    assert result["epochs_completed"] == 3 and result["run_dir"] == task["run_dir"], result
    assert len(result["weights_hash"]) >= 16

    version = seen["version"]
    assert (version["name"], version["version"]) == (MODEL, 1), version
    assert Path(version["run_dir"]).resolve() == run_dir.resolve(), (version, task)
    assert version["metrics"]["val_accuracy"] > 0.5, version["metrics"]
    assert version["tags"]["mtp.weights_hash"] == result["weights_hash"], version["tags"]
    assert version["run_id"], version  # tracked: the version names its MLflow run
    assert seen["versions"] == [{"name": MODEL, "version": 1,
                                 "run_dir": version["run_dir"]}], seen["versions"]


@pytest.mark.ray
@pytest.mark.slow
def test_the_registry_calls_on_the_version_the_node_client_registered(
        api_cluster: ApiCluster, node_run: dict[str, Any]) -> None:
    import grpc

    from mtp.client import ApiError

    version = node_run["version"]
    with api_cluster.client() as api:
        mine = api.version(f"{MODEL}/1")
        assert mine.tags["mtp.weights_hash"] == node_run["task"]["result"]["weights_hash"]
        assert mine.run_dir == version["run_dir"]
        moved = api.set_alias(MODEL, "champion", 1, reason="the Node client's model")
        assert list(moved.aliases) == ["champion"] and moved.version == 1
        assert api.version(f"{MODEL}@champion").run_dir == version["run_dir"]
        assert api.version(f"{MODEL}@1").version == 1
        assert api.version(f"models:/{MODEL}/1").version == 1
        [model] = [m for m in api.models() if m.name == MODEL]
        assert (model.versions, model.latest_version) == (1, 1), model
        with pytest.raises(ApiError) as missing:
            api.version(f"{MODEL}/2")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND, missing.value
        assert "has no version 2" in missing.value.details, missing.value.details
        with pytest.raises(ApiError) as bad:
            api.version(MODEL)
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT, bad.value
        assert "names no version" in bad.value.details, bad.value.details


@pytest.mark.ray
@pytest.mark.slow
def test_list_models_and_list_versions_show_the_aliases(
        api_cluster: ApiCluster, node_run: dict[str, Any]) -> None:
    with api_cluster.client() as api:
        api.set_alias(MODEL, "champion", 1, reason="the Node client's model")
        assert list(api.version(f"{MODEL}/1").aliases) == ["champion"]
        [model] = [m for m in api.models() if m.name == MODEL]
        listed = api.versions(MODEL)
    assert [list(v.aliases) for v in listed] == [["champion"]]
    assert dict(model.aliases) == {"champion": 1}
