"""Failure injection for tests: a node frozen mid-training, and the reaping of what is left.

The injection itself (:func:`freeze_node`, :func:`kill_frozen`, :func:`process_tree`) lives in
scripts/node_faults.py, which ``scripts/bench_recovery.py`` shares (a script run as
``python scripts/...`` cannot import ``tests``). Whoever freezes a node releases the pids
:func:`freeze_node` returned with :func:`kill_frozen` in a ``finally``; at the end of the
session :func:`kill_stopped_suite_processes` reaps whatever stopped process of the suite is
still there (tests/conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.node_faults import freeze_node, is_stopped, kill_frozen, process_tree

__all__ = ["SUITE_ENV", "StoppedProcess", "freeze_node", "kill_frozen",
           "kill_stopped_suite_processes", "process_tree"]

SUITE_ENV = "MTP_TEST_SUITE_PID"
"""Set by tests/conftest.py to the pytest process's pid: every process the suite starts (Ray
nodes, their workers) inherits it, which tells them from other Ray sessions on the host."""


@dataclass(frozen=True)
class StoppedProcess:
    pid: int
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} {self.cmdline[:120]!r}"


def kill_stopped_suite_processes(suite_tag: str) -> list[StoppedProcess]:
    """Kill every stopped (state ``T``) process whose environment has ``SUITE_ENV=suite_tag``
    (``ray::`` workers, raylets and anything else the suite started); returns them. Stopped
    processes of other sessions are left alone: on a shared host they may be another suite's
    frozen node, mid-test."""
    marker = f"{SUITE_ENV}={suite_tag}".encode()
    found: list[StoppedProcess] = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        if not is_stopped(pid_dir):
            continue
        try:
            if marker not in pid_dir.joinpath("environ").read_bytes().split(b"\0"):
                continue
            cmdline = pid_dir.joinpath("cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found.append(StoppedProcess(int(pid_dir.name), cmdline.decode(errors="replace").strip()))
    kill_frozen([p.pid for p in found])
    return found
