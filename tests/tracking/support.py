"""What the tracking tests share: tracking turned back on, a tiny tracked task, a client, a real
``mlflow server`` on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import iris_task_dict
from tests.support.wait import wait_for


def tracking_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's ``MTP_TRACKING=off`` (tests/conftest.py) for one test."""
    monkeypatch.setenv("MTP_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MTP_DATABASE_URL", raising=False)


def iris_tracked(name: str, epochs: int = 2, **tracking: Any) -> dict[str, Any]:
    """The smallest real task (iris, linear, one worker), ``epochs`` epochs, no reuse."""
    raw = iris_task_dict(name)
    raw["training"]["epochs"] = epochs
    if tracking:
        raw["tracking"] = tracking
    return raw


def default_store(storage: Path) -> str:
    return f"sqlite:///{(storage / '_db' / 'mtp.db').resolve()}"


# -- a real `mlflow server` on loopback ----------------------------------------------------------

MLFLOW = Path(sys.executable).with_name("mlflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rest_get(base: str, path: str, **query: str) -> Any:
    """GET ``base + path`` (JSON decoded when it is JSON)."""
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if body.startswith(("{", "[")) else body


def healthy(base: str) -> bool:
    try:
        return bool(rest_get(base, "/health") == "OK")
    except (urllib.error.URLError, OSError):
        return False


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the process group of ``proc`` (started with ``start_new_session``): ``proc`` and
    everything it started, also what outlives ``proc`` itself (a server a shell put in the
    background). SIGTERM, then SIGKILL after 20 s; returns once the group is gone, or after
    10 s more."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        deadline = time.monotonic() + grace
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def running_mlflow_server(workdir: Path) -> Iterator[str]:
    """``mlflow server`` with an SQLite backend and proxied artifacts in ``workdir`` on a free
    loopback port, up (``/health``) within a bounded wait; yields its base URL and stops its
    whole process group at the end. Its log is ``workdir/mlflow-server.log``."""
    port = free_port()
    log_path = workdir / "mlflow-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
             "--artifacts-destination", str(workdir / "server-artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # no job runner: its eight processes (GenAI judges, trace rollups; ~270 MB each)
            # slow the start on a small machine and leave a folder in /dev/shm behind
            env={**os.environ, "MLFLOW_TRACKING_URI": "",
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        base = f"http://127.0.0.1:{port}"
        try:
            def up() -> bool:
                assert proc.poll() is None, log_path.read_text()[-2000:]
                return healthy(base)

            wait_for(up, timeout_s=120, interval_s=0.5, what=f"mlflow server on {base}/health")
            yield base
        finally:
            stop_group(proc)
