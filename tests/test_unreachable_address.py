"""A wrong or unreachable ``--address`` fails every cluster-joining command in bounded time,
with exit code 2 and one stderr line naming the address.

Each case runs ``mtp`` as a real process (no ``RAY_ADDRESS``, ``MTP_CONNECT_TIMEOUT_S=5``;
2 against a listener that never answers, which waits out the whole timeout whatever it is)
against: a TCP server on loopback that accepts and never answers, one that answers garbage, an
HTTP server, the same behind ``ray://``, a port out of range or not a number, a host name that
does not resolve, and ``auto`` with a stale ``ray start`` record. A closed port (127.0.0.1:1)
is covered for every command in ``tests/test_cli_errors.py``. Without the checks in
:func:`mtp_core.ray_env.connect`, ``ray.init`` retries such an address for many minutes (with
Ray 2.60 here: about 41 s per try against a silent listener, and 20 tries by default).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mtp_core.errors import ConfigError
from mtp_core.ray_env import CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S, connect_timeout_s
from tests.conftest import REPO, iris_task_dict

CONNECT_TIMEOUT_S = 5
# a silent listener is waited on for the whole timeout: a short one proves the bound as well
SILENT_TIMEOUT_S = 2
# start-up (the training commands import torch and load their data first) plus the check;
# the subprocess timeout (90 s) is the hard cap
BOUND_S = 45.0


class _FakeServer:
    """A TCP server on every interface (Ray dials this node's IP for a loopback address)
    that is not Ray: ``silent`` accepts and never answers, ``garbage`` writes bytes that are
    not HTTP/2, ``http`` answers as an HTTP/1.1 server."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("0.0.0.0", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"fake-{mode}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            try:
                if self.mode == "garbage":
                    conn.sendall(b"220 not a gRPC server\r\n" * 8)
                elif self.mode == "http":
                    conn.settimeout(2)
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, _FakeServer]]:
    started = {mode: _FakeServer(mode) for mode in ("silent", "garbage", "http")}
    try:
        yield started
    finally:
        for server in started.values():
            server.close()


def _task() -> dict[str, Any]:
    return iris_task_dict("unreachable")


def _config(d: Path, study: bool = False) -> str:
    task = _task()
    if study:
        task["search"] = {"space": {"training.learning_rate": {
            "type": "uniform", "low": 0.001, "high": 0.1}}, "num_samples": 1}
    path = d / ("study.json" if study else "task.json")
    path.write_text(json.dumps(task))
    return str(path)


Command = Callable[[Path, str], list[str]]

COMMANDS: dict[str, Command] = {
    "run": lambda d, a: ["run", _config(d), "--storage-path", str(d), "--address", a],
    "tune": lambda d, a: ["tune", _config(d, study=True), "--storage-path", str(d),
                          "--address", a],
    "verify": lambda d, a: ["verify", _config(d), "--storage-path", str(d), "--address", a],
    "registry-stats": lambda d, a: ["registry", "stats", "--address", a],
    "cluster-status": lambda d, a: ["cluster", "status", "--address", a],
}


def _mtp(args: list[str], cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str],
                                                          float]:
    full = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")])
    full[CONNECT_TIMEOUT_ENV] = str(CONNECT_TIMEOUT_S)
    full.update(env)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mtp.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=90, check=False)
    return proc, time.monotonic() - t0


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mtp: error: "), lines[0]
    return lines[0]


# (id, address builder from the fake servers, words the error line must contain)
Address = Callable[[dict[str, _FakeServer]], str]
KINDS: dict[str, tuple[Address, list[str]]] = {
    "listening-not-ray": (lambda s: f"127.0.0.1:{s['silent'].port}",
                          [f"no Ray cluster answers there within {SILENT_TIMEOUT_S} s",
                           "accepts TCP connections but does not answer as a Ray GCS does",
                           "check the head node's address"]),
    "port-out-of-range": (lambda s: "127.0.0.1:99999",
                          ["port 99999 is out of range", "1 to 65535"]),
    "host-does-not-resolve": (lambda s: "no-such-head.invalid:6379",
                              ["host name 'no-such-head.invalid' does not resolve"]),
}
# further kinds, on the two commands that start quickest
MORE_KINDS: dict[str, tuple[Address, list[str]]] = {
    "answers-garbage": (lambda s: f"127.0.0.1:{s['garbage'].port}",
                        ["no Ray cluster answers there", "speaks another protocol"]),
    "http-server": (lambda s: f"127.0.0.1:{s['http'].port}",
                    ["no Ray cluster answers there", "speaks another protocol"]),
    "ray-client-not-ray": (lambda s: f"ray://127.0.0.1:{s['silent'].port}",
                           [f"no Ray Client server answers there within {SILENT_TIMEOUT_S} s",
                            "Ray Client port"]),
    "ray-client-closed": (lambda s: "ray://127.0.0.1:1",
                          ["nothing answers at 127.0.0.1:1", "Ray Client port"]),
    "port-not-a-number": (lambda s: "127.0.0.1:abc",
                          ["port 'abc' is not a number"]),
    "no-port": (lambda s: "headnode", ["expected HOST:PORT"]),
    "dashboard-url": (lambda s: "http://127.0.0.1:8265",
                      ["the Ray dashboard's", "GCS address HOST:PORT"]),
}

CASES = ([(cmd, kind) for kind in KINDS for cmd in COMMANDS]
         + [(cmd, kind) for kind in MORE_KINDS for cmd in ("registry-stats", "cluster-status")])


@pytest.mark.parametrize(("command", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_unreachable_address_fails_fast_with_one_line(
        tmp_path: Path, servers: dict[str, _FakeServer], command: str, kind: str) -> None:
    address_of, words = {**KINDS, **MORE_KINDS}[kind]
    address = address_of(servers)
    timeout = SILENT_TIMEOUT_S if kind.endswith("-not-ray") else CONNECT_TIMEOUT_S
    proc, took = _mtp(COMMANDS[command](tmp_path, address), cwd=tmp_path,
                      **{CONNECT_TIMEOUT_ENV: str(timeout)})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = _one_error_line(proc)
    assert f"--address {address!r}" in line, line
    for word in words:
        assert word in line, (word, line)
    assert took < BOUND_S, f"took {took:.1f} s: {line}"


@pytest.mark.parametrize("others", [0, 2], ids=["alone", "among-other-instances"])
def test_auto_with_a_stale_ray_start_record(tmp_path: Path, servers: dict[str, _FakeServer],
                                            monkeypatch: pytest.MonkeyPatch,
                                            others: int) -> None:
    """'auto' takes the address of the latest ``ray start`` (``$RAY_TMPDIR/ray``); when what
    answers there is not Ray, the line says which cluster 'auto' meant. In-process, with Ray's
    search of this host's processes replaced: with exactly one other Ray instance running
    (another session's, on a shared machine) 'auto' would take that one instead."""
    from ray._private import services

    from mtp_core.ray_env import _check_address

    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text(f"127.0.0.1:{servers['silent'].port}\n")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    found = [f"192.0.2.1:{6379 + i}" for i in range(others)]
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: found)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as info:
        _check_address("auto", "--address 'auto'", SILENT_TIMEOUT_S)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("--address 'auto' (the cluster at "), msg
    assert f":{servers['silent'].port}" in msg and f"within {SILENT_TIMEOUT_S} s" in msg, msg
    assert ("of several Ray instances on this host" in msg) is (others > 1), msg
    assert time.monotonic() - t0 < SILENT_TIMEOUT_S + 5


def test_auto_without_a_cluster_on_this_host(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's own message comes through as one line. In-process, with Ray's search of this
    host's processes emptied, for the reason above."""
    from ray._private import services

    from mtp_core.ray_env import _check_address

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` record there
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    with pytest.raises(ConfigError) as info:
        _check_address("auto", "--address 'auto'", SILENT_TIMEOUT_S)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("--address 'auto': no Ray cluster found on this host ("), msg
    assert "Could not find any running Ray instance" in msg and "ray start --head" in msg


def test_ray_address_variable_is_named_when_it_is_the_source(
        tmp_path: Path, servers: dict[str, _FakeServer]) -> None:
    address = f"127.0.0.1:{servers['garbage'].port}"
    proc, _ = _mtp(["cluster", "status"], cwd=tmp_path, RAY_ADDRESS=address)
    assert proc.returncode == 2, proc.stderr
    assert f"RAY_ADDRESS={address!r}" in _one_error_line(proc)


@pytest.mark.parametrize("raw", ["0", "-3", "soon", "nan", "inf"])
def test_bad_connect_timeout_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                               raw: str) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, raw)
    with pytest.raises(ConfigError, match=f"{CONNECT_TIMEOUT_ENV}={raw!r}: expected a number"):
        connect_timeout_s()
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, "2.5")
    assert connect_timeout_s() == 2.5
    monkeypatch.delenv(CONNECT_TIMEOUT_ENV)
    assert connect_timeout_s() == DEFAULT_CONNECT_TIMEOUT_S == 15


@pytest.mark.ray
def test_a_real_cluster_passes_the_checks(tmp_path: Path, ray_session: None) -> None:
    """The checks must not turn away a Ray that answers (token authentication on, as by
    default): a second process joins this test's local Ray by its GCS address."""
    import ray

    gcs = ray.get_runtime_context().gcs_address
    loopback = "127.0.0.1:" + gcs.rsplit(":", 1)[1]
    for address in (gcs, loopback):
        proc, took = _mtp(["cluster", "status", "--address", address, "--json"],
                          cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "detector" in json.loads(proc.stdout), proc.stdout
        assert took < BOUND_S


# -- a cluster that answers, with a control-plane actor that does not ----------------------


@pytest.mark.ray
@pytest.mark.parametrize("failure", ["dies", "raises"])
def test_cluster_status_names_a_detector_that_cannot_answer(
        ray_session: None, capsys: pytest.CaptureFixture[str], failure: str) -> None:
    """``cluster status`` reports what it can and one line for the actor, never a
    traceback: here a stand-in under the detector's name whose snapshot kills its process
    (as a crash would) or raises (as a bug would)."""
    import ray

    from cluster.actors import DETECTOR_NAME
    from mtp.cli import main
    from tests.support.actors import stop_named_actor

    class Broken:
        def snapshot(self) -> dict[str, Any]:
            if failure == "dies":
                os._exit(1)
            raise KeyError("health")

    stop_named_actor(DETECTOR_NAME)
    stand_in = ray.remote(Broken).options(name=DETECTOR_NAME, namespace="mtp",
                                          max_restarts=0, num_cpus=0).remote()
    try:
        assert main(["cluster", "status"]) == 0
        # this process owns the stand-in, so Ray's own notice of its death may come first
        out = capsys.readouterr().out
        lines = out[out.index("fault detector:"):].splitlines()
        expected = ("The actor died unexpectedly before finishing this task."
                    if failure == "dies" else "its snapshot raised KeyError: 'health'")
        assert lines[0] == (f"fault detector: not answering ({expected}); nodes from Ray's "
                            "node table:"), out
        assert "Traceback" not in out
        assert len(lines) >= 3 and lines[1].split() == ["node", "address", "alive",
                                                        "resources"], out
    finally:
        ray.kill(stand_in, no_restart=True)
