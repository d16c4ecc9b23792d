"""The frozen-process cleanup of tests/support/simulate.py, on real stopped processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.simulate import (
    SUITE_ENV,
    kill_frozen,
    kill_stopped_suite_processes,
    process_tree,
)
from tests.support.wait import wait_for

# a parent with a child: a small tree, as a raylet and its workers
TREE = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
       "'import time; time.sleep(600)']); print('up', flush=True); time.sleep(600)"


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


Spawn = Callable[[str | None], subprocess.Popen[str]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts a two-process tree, optionally tagged; kills every process of it at the end."""
    pids: list[int] = []
    procs: list[subprocess.Popen[str]] = []

    def start(tag: str | None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != SUITE_ENV}
        if tag is not None:
            env[SUITE_ENV] = tag
        p = subprocess.Popen([sys.executable, "-c", TREE], env=env, stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        pids.extend(process_tree(p.pid))  # now: the child outlives a killed parent
        return p

    yield start
    for pid in pids:
        try:
            if "time.sleep(600)" not in Path(f"/proc/{pid}/cmdline").read_text():
                continue  # exited (and the pid perhaps reused): not ours any more
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
        except OSError:
            continue
    for p in procs:
        p.wait(timeout=30)


def _dead(pid: int) -> bool:
    return _state(pid) in (None, "Z")  # a killed child of ours stays a zombie until reaped


def test_kill_frozen_kills_a_stopped_tree_and_spares_running_pids(spawn: Spawn) -> None:
    p = spawn(None)
    pids = process_tree(p.pid)
    assert len(pids) == 2, pids  # the child is up before the parent prints
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: all(_state(pid) == "T" for pid in pids), 30, what="both stopped")
    running = spawn(None)
    kill_frozen([*pids, running.pid])
    wait_for(lambda: all(_dead(pid) for pid in pids), 30, what="the frozen tree to die")
    assert running.poll() is None and _state(running.pid) != "T"


def test_reaper_kills_only_stopped_processes_with_the_suite_tag(spawn: Spawn) -> None:
    tag = f"test-{uuid.uuid4().hex}"
    ours_stopped, ours_running, other_stopped = spawn(tag), spawn(tag), spawn("another-suite")
    for p in (ours_stopped, other_stopped):
        os.kill(p.pid, signal.SIGSTOP)
    wait_for(lambda: _state(ours_stopped.pid) == _state(other_stopped.pid) == "T", 30,
             what="the two processes to stop")

    reaped = kill_stopped_suite_processes(tag)

    assert [r.pid for r in reaped] == [ours_stopped.pid]
    assert "time.sleep(600)" in reaped[0].cmdline
    wait_for(lambda: ours_stopped.poll() is not None, 30, what="the reaped process to exit")
    assert ours_stopped.returncode == -signal.SIGKILL
    assert ours_running.poll() is None
    assert _state(other_stopped.pid) == "T"  # another session's frozen process: not ours
