"""Failure injection on a local multi-node ``ray.cluster_utils.Cluster`` (benchmarks, tests).

``remove_node(node, allow_graceful=False)`` kills a node's processes: its peers see refused
connections at once, so Ray notices within seconds. A machine that hangs, or sits behind a
network partition, is different: nothing answers and nothing is refused, and only timeouts
reveal the loss (Ray's own node health check gives up after about a minute here).
:func:`freeze_node` simulates that by stopping (SIGSTOP) the node's raylet and every process
it started. A frozen node is later removed with ``remove_node(node, allow_graceful=False)``,
but that kills only the node's own daemons: its stopped workers never run again to notice, so
whoever freezes a node releases the pids :func:`freeze_node` returned with :func:`kill_frozen`
in a ``finally``.

Here, not in a platform package (fault injection has no place there), and not under tests/
(``python scripts/bench_recovery.py`` cannot import ``tests``): benchmarks import it as
``node_faults``, tests through :mod:`tests.support.simulate`.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["freeze_node", "is_stopped", "kill_frozen", "process_tree"]


def _stat(pid_dir: Path) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after ``comm`` (which may hold spaces and
    parentheses): ``[state, ppid, ...]``."""
    return pid_dir.joinpath("stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(_stat(pid_dir)[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid_dir.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def freeze_node(node: Any) -> list[int]:
    """Stop a ``ray._private.node.Node``'s raylet and its descendants; returns their pids."""
    raylet = node.all_processes["raylet"][0].process.pid
    stopped = []
    for pid in process_tree(raylet):
        try:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    return stopped


def is_stopped(pid_dir: Path) -> bool:
    """Whether the process of ``/proc/<pid>`` is stopped (state ``T``)."""
    try:
        return _stat(pid_dir)[0] == "T"
    except (OSError, IndexError):  # gone meanwhile
        return False


def kill_frozen(pids: list[int]) -> None:
    """SIGKILL, then SIGCONT, those of ``pids`` that are still stopped (:func:`freeze_node`'s
    return value); a pid no longer stopped has died already or been reused, and is spared."""
    for pid in pids:
        if not is_stopped(Path(f"/proc/{pid}")):
            continue
        for sig in (signal.SIGKILL, signal.SIGCONT):  # a stopped process dies of SIGKILL too
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
