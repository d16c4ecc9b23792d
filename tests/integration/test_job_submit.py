"""The real job path: `ray start --head`, then `ray job submit` of the example driver script.

The job trains the golden reference ``digits_mlp_ws2`` (tests/golden/), so its numbers are
checked against the golden file too: the job path trains exactly what ``trainer.train`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.golden.reference import WS2, Numerics, check
from tests.support.wait import wait_for
from trainer import load_result

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_cluster(temp_dir: str) -> None:
    """Stop only this test's Ray processes (``ray stop`` would stop every Ray on the host)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if temp_dir in cmdline:
                try:
                    os.kill(int(proc.name), sig)
                except ProcessLookupError:
                    pass


def _dashboard_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as r:
            return bool(json.load(r).get("ray_version"))
    except OSError:
        return False


@pytest.fixture
def head_node() -> Iterator[tuple[str, dict[str, str]]]:
    temp_dir = tempfile.mkdtemp(prefix="mtpray", dir="/tmp")  # short: unix socket paths
    dash_port = _free_port()
    # token auth is on by default in Ray 2.60; this loopback-only test cluster turns it off
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [RAY, "start", "--head", f"--port={_free_port()}", "--num-cpus=2",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
         f"--dashboard-agent-listen-port={_free_port()}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, check=True, capture_output=True, timeout=120)
    url = f"http://127.0.0.1:{dash_port}"
    try:
        wait_for(lambda: _dashboard_up(url), 60, interval_s=0.5, what="the Ray dashboard")
        yield url, env
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_driver_script(
    head_node: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = head_node
    cmd = [RAY, "job", "submit", "--address", url, "--working-dir", str(REPO), "--",
           sys.executable, "scripts/train_driver.py", WS2.config,
           *(a for o in WS2.overrides for a in ("--set", o)), "--storage-path", str(tmp_path)]

    def submit() -> subprocess.CompletedProcess[str] | None:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        # the dashboard answers a few seconds before its job agent accepts submissions
        return None if "No available agent" in p.stderr else p

    proc = wait_for(submit, 90, interval_s=2, what="the job agent to accept the job")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr
    result = load_result(tmp_path / "digits-mlp")
    assert result.epochs_completed == 3 and result.world_size == 2
    assert f"weights sha256: {result.weights_hash}" in proc.stdout
    check(WS2, Numerics.from_result(result))
