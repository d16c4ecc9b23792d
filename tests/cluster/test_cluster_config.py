from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import ClusterConfigError, validate_cluster_config
from tests.conftest import REPO, wait_for
from tests.tracking.support import free_port, rest_get, stop_group
from tests.tracking.support import healthy as _healthy


def test_shipped_cluster_yaml_passes_rays_schema() -> None:
    cfg = validate_cluster_config(REPO / "ray-cluster.yaml")
    assert cfg["provider"]["type"] == "local"
    setup = " ".join(cfg["setup_commands"])
    assert "-c constraints.txt" in setup  # every node installs the tested pins


def test_schema_violations_are_reported(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    raw["idle_timeout_minutes"] = "soon"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ClusterConfigError, match="'soon' is not of type 'number'"):
        validate_cluster_config(bad)
    raw = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    raw["no_such_key"] = 1
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ClusterConfigError, match="no_such_key"):
        validate_cluster_config(bad)
    with pytest.raises(ClusterConfigError, match="does not exist"):
        validate_cluster_config(tmp_path / "missing.yaml")


def _mlflow_command(cfg: dict[str, Any]) -> str:
    found = [c for c in cfg["head_start_ray_commands"] if "mlflow server" in c]
    assert len(found) == 1, cfg["head_start_ray_commands"]
    return str(found[0])


def test_the_head_serves_mlflow_on_the_platform_database_and_every_node_points_at_it() -> None:
    cfg = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    cmd = _mlflow_command(cfg)
    assert "--host 0.0.0.0 --port 5000" in cmd
    assert '"${MTP_DATABASE_URL:-sqlite:////mnt/shared/mtp/_db/mtp.db}"' in cmd
    assert "--serve-artifacts --artifacts-destination /mnt/shared/mtp/_mlflow/artifacts" in cmd
    setup = "\n".join(cfg["setup_commands"])
    assert "MLFLOW_TRACKING_URI=http://${RAY_HEAD_IP:-" in setup and "}:5000" in setup
    assert "source ~/mtp-env.sh" in setup
    # the head starts Ray before the server: `ray stop` must not be what ends it
    assert cfg["head_start_ray_commands"].index(cmd) > 1


def test_the_head_starts_the_platform_services_after_ray() -> None:
    """`mtp cluster start` (tests/integration/test_scheduler.py runs it on a cluster) is a
    head start command, after `ray start`, on the shared storage path."""
    cmds = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())["head_start_ray_commands"]
    start = [i for i, c in enumerate(cmds) if "mtp cluster start" in c]
    ray_start = [i for i, c in enumerate(cmds) if "ray start --head" in c]
    assert len(start) == 1 and ray_start and start[0] > ray_start[0], cmds
    assert "--address 127.0.0.1:6379 --storage-path /mnt/shared/mtp" in cmds[start[0]]


def test_the_head_serves_the_api_on_loopback_with_a_token_made_once() -> None:
    cmds = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())["head_start_ray_commands"]
    serve = [c for c in cmds if "mtp serve" in c]
    assert len(serve) == 1 and cmds.index(serve[0]) > next(
        i for i, c in enumerate(cmds) if "mtp cluster start" in c)
    cmd = serve[0]
    assert "--token-file ~/.mtp/api-token" in cmd and "--host" not in cmd  # loopback
    assert "test -s ~/.mtp/api-token ||" in cmd and "umask 077" in cmd
    assert "HealthStub" in cmd  # started once: a serving API is left alone


def test_the_node_environment_names_the_heads_server(tmp_path: Path) -> None:
    """The setup line run as Ray runs it on a worker (RAY_HEAD_IP exported) and on the head."""
    cfg = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    line = next(c for c in cfg["setup_commands"] if "MLFLOW_TRACKING_URI" in c)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    subprocess.run(["bash", "-c", f"export RAY_HEAD_IP=192.0.2.10; {line}"], env=env,
                   check=True, timeout=30)
    assert (tmp_path / "mtp-env.sh").read_text() == (
        "export MLFLOW_TRACKING_URI=http://192.0.2.10:5000\n")
    subprocess.run(["bash", "-c", line], env=env, check=True, timeout=30)
    own = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=30)
    assert (tmp_path / "mtp-env.sh").read_text() == (
        f"export MLFLOW_TRACKING_URI=http://{own.stdout.split()[0]}:5000\n")


def test_the_heads_mlflow_server_starts_once(tmp_path: Path) -> None:
    """The head's command, run twice as `ray up` twice would (the venv, the shared storage and
    the port replaced by this test's): one server, up, on the SQLite file and artifacts under the
    storage path; the second run starts nothing."""
    port = free_port()
    shared = tmp_path / "shared"
    cmd = (_mlflow_command(yaml.safe_load((REPO / "ray-cluster.yaml").read_text()))
           .replace("~/mtp-venv/bin/", f"{Path(sys.executable).parent}/")
           .replace("/mnt/shared/mtp", str(shared))
           .replace("5000", str(port)).replace("0.0.0.0", "127.0.0.1"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("MTP_DATABASE_URL", "MLFLOW_TRACKING_URI")}
    env["HOME"] = str(tmp_path)
    first = subprocess.Popen(["bash", "-c", cmd], env=env, start_new_session=True)
    second: subprocess.Popen[bytes] | None = None
    try:
        assert first.wait(timeout=60) == 0
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(base), timeout_s=120, interval_s=0.5,
                 what=f"the head's mlflow server on {base}/health "
                      f"({tmp_path / 'mlflow-server.log'})")
        second = subprocess.Popen(["bash", "-c", cmd], env=env, start_new_session=True)
        assert second.wait(timeout=60) == 0
        with pytest.raises(ProcessLookupError):  # nothing of the second run is left running
            os.killpg(second.pid, 0)
        assert (shared / "_db" / "mtp.db").is_file()
        assert (shared / "_mlflow" / "artifacts").is_dir()
        exp = rest_get(base, "/api/2.0/mlflow/experiments/get-by-name",
                       experiment_name="Default")["experiment"]
        assert exp["artifact_location"] == "mlflow-artifacts:/0"  # served by the server
    finally:
        for started in (first, second):
            if started is not None:
                stop_group(started)
