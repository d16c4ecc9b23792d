"""Failure injection on a local multi-node ``ray.cluster_utils.Cluster`` (tests, benchmarks).

``remove_node(node, allow_graceful=False)`` kills a node's processes: its peers see refused
connections at once, so Ray notices within seconds. A machine that hangs, or sits behind a
network partition, is different: nothing answers and nothing is refused, and only timeouts
reveal the loss (Ray's own node health check gives up after about a minute here).
:func:`freeze_node` simulates that by stopping (SIGSTOP) the node's raylet and every process
it started. A frozen node is later removed with ``remove_node(node, allow_graceful=False)``
(SIGKILL works on stopped processes).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["freeze_node", "process_tree"]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
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
