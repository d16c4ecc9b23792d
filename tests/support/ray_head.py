"""A real ``ray start --head`` cluster on loopback, private to one test: its own ports and temp
dir, stopped by killing only its own processes (``ray stop`` would stop every Ray on the host).
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.wait import wait_for

__all__ = ["RAY", "HeadNode", "free_port", "ray_head"]

RAY = str(Path(sys.executable).parent / "ray")


@dataclass(frozen=True)
class HeadNode:
    gcs_address: str  # host:port, for --address
    dashboard_url: str  # for `ray job submit --address`
    env: dict[str, str]  # the environment it was started with (token auth off)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ours(proc: Path, temp_dir: str) -> bool:
    """Whether a process belongs to the cluster of ``temp_dir``: its command line names the
    dir, or it holds a file there open. Ray renames some of its processes
    (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``), which overwrites both their command
    line and their environment; their log files under the temp dir stay open."""
    try:
        if temp_dir in (proc / "cmdline").read_bytes().decode(errors="replace"):
            return True
        for fd in (proc / "fd").iterdir():
            try:
                if os.readlink(fd).startswith(temp_dir):
                    return True
            except OSError:
                continue
    except OSError:  # gone, or not ours to read
        return False
    return False


def _kill_cluster(temp_dir: str) -> None:
    me = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == me or not _ours(proc, temp_dir):
                continue
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


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[HeadNode]:
    temp_dir = tempfile.mkdtemp(prefix="mtpray", dir="/tmp")  # short: unix socket paths
    dash_port, gcs_port = free_port(), free_port()
    # token auth is on by default in Ray 2.60; this loopback-only test cluster turns it off
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={gcs_port}", f"--num-cpus={num_cpus}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
             f"--dashboard-agent-listen-port={free_port()}",
             f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=env, check=True, capture_output=True, timeout=120)
        url = f"http://127.0.0.1:{dash_port}"
        wait_for(lambda: _dashboard_up(url), 60, interval_s=0.5, what="the Ray dashboard")
        yield HeadNode(f"127.0.0.1:{gcs_port}", url, env)
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
