"""The platform's place on a Ray cluster: its namespace, how drivers connect, and where the
control-plane actors live.

Every named actor of the platform lives in namespace :data:`NAMESPACE` (``mtp``). Ray is
imported inside the functions: this module is part of the vocabulary layer, which must load
without Ray.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from mtp_core.errors import ConfigError

__all__ = ["HEAD_RESOURCE", "NAMESPACE", "connect", "control_plane_options"]

NAMESPACE = "mtp"
HEAD_RESOURCE = "node:__internal_head__"  # Ray gives it to the head node only


def connect(address: str | None = None, *, require_cluster: str | None = None) -> None:
    """Join the Ray cluster at ``address`` / ``RAY_ADDRESS``, or start an embedded local one.

    With ``require_cluster`` (the command's name) there is no embedded fallback: without an
    address the call raises :class:`ConfigError` saying how to give one, and a cluster that
    cannot be reached is a :class:`ConfigError` naming the address. Already connected: no-op.
    """
    import ray

    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if require_cluster is not None and not target:
        raise ConfigError(f"mtp {require_cluster} needs a cluster: pass --address HOST:PORT "
                          "(or 'auto' for a `ray start` cluster on this host) or set RAY_ADDRESS")
    if target:
        _check_reachable(target)
    try:
        ray.init(address=target or "local", namespace=NAMESPACE,
                 logging_level=logging.WARNING, configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as err:
        if not target:
            raise
        raise ConfigError(f"--address {target!r}: cannot connect to a Ray cluster: {err}"
                          ) from None


def _check_reachable(target: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing listens at ``host:port``: Ray itself retries an unreachable
    GCS address for minutes before it gives up."""
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host or "/" in host:
        return  # 'auto', 'local' and other forms: Ray judges (and names) them
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(f"--address {target!r}: cannot connect to a Ray cluster: nothing "
                          f"answers at {host}:{port} ({err.strerror or err}); check the "
                          "head node's address and port (`ray start --head` prints them)"
                          ) from None


def control_plane_options() -> dict[str, Any]:
    """Where the platform's detached actors live: the head node, as Ray's own control plane.

    A detector or migrator on a worker node dies with that node, and Ray restarts it only once
    it has noticed the node is gone (a minute for a hung machine): exactly when it is needed.
    They ask for a sliver of the head's own resource (soft node affinity is not honoured for
    detached actors; hard affinity to a node id would strand them if the head came back with a
    new id). The explicit ``DEFAULT`` strategy keeps them out of the caller's placement group (a
    Tune trial's, say), where a detached actor would die, and never come back, when that group
    is removed. Without a head resource (never seen), anywhere.
    """
    import ray

    heads = [n for n in ray.nodes()
             if n.get("Alive") and HEAD_RESOURCE in n.get("Resources", {})]
    return {"scheduling_strategy": "DEFAULT",
            **({"resources": {HEAD_RESOURCE: 0.001}} if heads else {})}
