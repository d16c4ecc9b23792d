"""The platform's place on a Ray cluster: its namespace, how drivers connect, and where the
control-plane actors live.

Every named actor of the platform lives in namespace :data:`NAMESPACE` (``mtp``). Ray is
imported inside the functions: this module is part of the vocabulary layer, which must load
without Ray.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from mtp_core.errors import ConfigError

__all__ = ["CONNECT_TIMEOUT_ENV", "DASHBOARD_ENV", "DEFAULT_CONNECT_TIMEOUT_S", "HEAD_RESOURCE",
           "NAMESPACE", "TRAIN_ENV", "WORKER_SETUP_HOOK", "apply_train_env", "connect",
           "connect_timeout_s", "control_plane_options", "embedded_dashboard",
           "mute_worker_logs", "own_cluster_options", "quiet_worker_stop",
           "reap_orphan_placement_groups", "train_env"]

logger = logging.getLogger(__name__)

NAMESPACE = "mtp"
HEAD_RESOURCE = "node:__internal_head__"  # Ray gives it to the head node only

#: Seconds a driver gives a cluster address to answer before it gives up (see :func:`connect`).
CONNECT_TIMEOUT_ENV = "MTP_CONNECT_TIMEOUT_S"
DEFAULT_CONNECT_TIMEOUT_S = 15.0

_CLIENT_SCHEME = "ray://"
_CHECK_GCS = ("check the head node's address and port (`ray start --head` prints them; the "
              "GCS port is 6379 unless --port says otherwise)")
_CHECK_CLIENT = ("check the head node's address and Ray Client port (10001 unless `ray start "
                 "--ray-client-server-port` says otherwise)")
# a GCS answers this with its cluster id; a Ray Client server answers a PING
_GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"
_CLIENT_PROBE = "/ray.rpc.RayletDriver/ClusterInfo"


def connect(address: str | None = None, *, require_cluster: str | None = None) -> None:
    """Join the Ray cluster at ``address`` / ``RAY_ADDRESS``, or start an embedded local one.

    With ``require_cluster`` (the command's name) there is no embedded fallback: without an
    address the call raises :class:`ConfigError` saying how to give one. Already connected:
    no-op.

    Joining a cluster takes bounded time. ``ray.init`` retries an address where no Ray
    answers for many minutes, so the address is checked first, within ``MTP_CONNECT_TIMEOUT_S``
    seconds (environment variable; default 15): its form (``HOST:PORT``, ``ray://HOST:PORT``
    for a Ray Client server, or ``auto`` for a cluster started with ``ray start`` on this host)
    and port (1-65535), that the host name resolves, that something accepts a TCP connection,
    and that it answers as a Ray GCS (or Ray Client server) does: one gRPC call with a
    deadline. Any failure, there or in ``ray.init``, is one line: a :class:`ConfigError` that
    names the address (and where it came from: ``--address`` or ``RAY_ADDRESS``) and what to
    check. Raise ``MTP_CONNECT_TIMEOUT_S`` for a head node that is far away or slow to answer.
    """
    import ray

    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if require_cluster is not None and not target:
        raise ConfigError(f"mtp {require_cluster} needs a cluster: pass --address HOST:PORT "
                          "(or 'auto' for a `ray start` cluster on this host) or set RAY_ADDRESS")
    given = f"--address {target!r}" if address else f"RAY_ADDRESS={target!r}"
    gcs = _check_address(target, given, connect_timeout_s()) if target else None
    # ray.init installs its own SIGTERM handler (sys.exit, or a crash dump from the core
    # worker): the caller's (the CLI's: "interrupted", exit 143) stays in place
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=target or "local", namespace=NAMESPACE,
                 logging_level=logging.WARNING, configure_logging=True,
                 **own_cluster_options(gcs, embedded=not target))
        if callable(sigterm) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    except Exception as err:  # noqa: BLE001 - whatever Ray raises, the user sees one line
        if not target:
            raise
        ray.shutdown()  # a half-made connection must not make the next call a no-op
        raise ConfigError(f"{given}: cannot connect to a Ray cluster: {_one_line(err)}"
                          ) from None


#: Ray Train settings for every process of a platform job (a value set in the environment
#: wins). The controller drains each worker's one-slot report queue once per health check (2 s
#: by default): every ``ray.train.report()`` could wait that long, and the end of a run is
#: noticed up to two intervals late. The preemption watcher is one more process per run,
#: polling for preemptible nodes a run cannot act on (the scheduler preempts by checkpoint,
#: not by node notice). Ray runs its workers at nice 15: a training run on a busy machine
#: would be starved by anything else there.
TRAIN_ENV: dict[str, str] = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_worker_niceness": "0",
}


def train_env() -> dict[str, str]:
    """:data:`TRAIN_ENV` with the values set in this process's environment."""
    return {k: os.environ.get(k, v) for k, v in TRAIN_ENV.items()}


def apply_train_env() -> None:
    """Put :data:`TRAIN_ENV` into this process's environment (where unset), for the process
    that calls ``TorchTrainer.fit()``: Ray Train reads some settings there and hands the rest
    to its controller and workers from there, also on a Ray that someone else started."""
    for k, v in TRAIN_ENV.items():
        os.environ.setdefault(k, v)


#: ``1`` gives an embedded Ray its dashboard (off by default: see :func:`own_cluster_options`).
DASHBOARD_ENV = "MTP_RAY_DASHBOARD"


def embedded_dashboard() -> bool:
    return os.environ.get(DASHBOARD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


#: What each worker process of a platform job runs first (Ray's ``worker_process_setup_hook``,
#: by module path: an environment variable, nothing uploaded).
WORKER_SETUP_HOOK = "mtp_core.ray_env.quiet_worker_stop"


def quiet_worker_stop() -> None:
    """Keep a Ray worker's stop from printing a traceback to the driver's terminal.

    Ray stops a worker with SIGTERM (``ray.kill``: Tune ending a trial's actor, Ray Train
    replacing its worker group, a job ending), and its handler raises ``SystemExit``. When the
    signal lands while the interpreter runs a finalizer or a weakref callback, Python cannot
    propagate the exception: it prints "Exception ignored in ... Traceback ... SystemExit: 1",
    which Ray relays to the driver (``mtp tune`` printed it in the middle of a study), and the
    worker goes on until Ray kills it. That case, and only that one, prints nothing now;
    every other unraisable exception is reported as before.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, SystemExit):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def own_cluster_options(gcs_address: str | None, *, embedded: bool,
                        dashboard: bool | None = None) -> dict[str, Any]:
    """``ray.init`` options that point every process of this job at its own cluster.

    Ray's helpers that look a cluster up by themselves (Ray Train's placement-group cleaner
    asks the state API whether the run's controller is alive) otherwise guess it from this
    host's Ray processes: with several Ray instances on one machine (a ``ray start`` cluster
    beside an embedded one) they fail with "Found multiple active Ray instances", and the
    placement groups of stopped runs are never freed. The job's runtime environment, which
    every task and actor of the job inherits, names the cluster: ``RAY_ADDRESS`` for a
    cluster joined by its GCS address, ``RAY_API_SERVER_ADDRESS`` for an embedded Ray, whose
    dashboard port is chosen here because its GCS port is only known once it runs. A value
    the user set in the environment wins.

    The job's environment also carries :data:`TRAIN_ENV`. An embedded Ray runs its workers
    at normal priority and starts no dashboard unless ``MTP_RAY_DASHBOARD=1``: its processes
    cost an embedded run seconds of CPU at start-up, for a page that closes when the run
    ends (a cluster started with ``ray start`` has its dashboard); ``dashboard`` overrides
    that.

    Every worker process of the job runs :func:`quiet_worker_stop` as it starts.
    """
    env = train_env()
    runtime_env: dict[str, Any] = {"env_vars": env, "worker_process_setup_hook": WORKER_SETUP_HOOK}
    if embedded:
        options: dict[str, Any] = {"_system_config": {"worker_niceness": 0}}
        if not (embedded_dashboard() if dashboard is None else dashboard):
            options["include_dashboard"] = False
        elif not os.environ.get("RAY_API_SERVER_ADDRESS"):
            port = _free_port()
            options["dashboard_port"] = port
            env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        return {**options, "runtime_env": runtime_env}
    if gcs_address is not None:  # a Ray Client (ray://) connection: the server knows its own
        env["RAY_ADDRESS"] = gcs_address
    return {"runtime_env": runtime_env}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mute_worker_logs() -> None:
    """Stop printing what the job's Ray processes write to their stdout/stderr.

    After the driver was interrupted its workers die with it, each with a traceback that Ray
    would relay to this terminal after the driver's own one-line message: noise. Ray keeps the
    relay in a private dispatcher; a Ray upgrade that moves it makes this a no-op (and
    tests/test_architecture.py fail).
    """
    worker = sys.modules.get("ray._private.worker")
    dispatcher = getattr(worker, "global_worker_stdstream_dispatcher", None)
    if dispatcher is not None:
        dispatcher.remove_handler("ray_print_logs")


_ORPHANS_SEEN: dict[bytes, float] = {}  # placement group id -> when first seen orphaned


def reap_orphan_placement_groups(grace_s: float = 10.0) -> list[str]:
    """Remove this job's placement groups whose creating actor has been dead for ``grace_s``
    seconds (as seen by earlier calls); returns their ids.

    Ray Train's controller creates its worker group's placement group and hands it to a
    cleaner only once it is ready. A controller that dies while the group is still pending (a
    stopped study trial whose workers were waiting for CPUs) leaves the group behind: Ray
    frees a non-detached group only when both its creating actor *and* its job have ended, so
    it holds its CPUs until the driver exits, and the next trials wait forever. Groups the
    driver itself created, detached ones and those of live actors are left alone; the grace
    lets a dying controller's process exit first (it would log the removal as an error). Reads
    Ray's
    placement-group table through its private state accessor (the one place this module does;
    tests/test_architecture.py fails when a Ray upgrade moves it).
    """
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    if not ray.is_initialized():
        return []
    job = ray.get_runtime_context().get_job_id()
    by_driver = ray.ActorID.nil().binary()  # a group the driver made has no creating actor
    removed: list[str] = []
    now = time.monotonic()
    orphans = set()
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        info = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (info.is_detached or info.state == gcs_pb2.PlacementGroupTableData.REMOVED
                or info.creator_job_id.hex() != job or not info.creator_actor_dead
                or info.creator_actor_id in (b"", by_driver)):
            continue
        orphans.add(info.placement_group_id)
        if now - _ORPHANS_SEEN.setdefault(info.placement_group_id, now) < grace_s:
            continue
        pg_id = ray.PlacementGroupID(info.placement_group_id)
        remove_placement_group(PlacementGroup(pg_id))
        removed.append(pg_id.hex())
    for gone in set(_ORPHANS_SEEN) - orphans:
        del _ORPHANS_SEEN[gone]
    if removed:
        logger.info("removed %d placement group(s) left by actors that died before "
                       "freeing them: %s", len(removed), ", ".join(i[:12] for i in removed))
    return removed


def connect_timeout_s() -> float:
    """``MTP_CONNECT_TIMEOUT_S`` as seconds (default 15); a bad value is a ConfigError."""
    raw = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{CONNECT_TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0 "
                          f"(default {DEFAULT_CONNECT_TIMEOUT_S:g})")
    return value


@dataclass(frozen=True)
class _Endpoint:
    """Where a check connects: ``host`` as given (brackets stripped from an IPv6 literal)."""

    host: str
    port: int
    client: bool  # a Ray Client server (ray://), not a GCS

    @property
    def grpc_target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.grpc_target


def _check_address(target: str, given: str, timeout_s: float) -> str | None:
    """Raise a one-line ConfigError unless a Ray cluster answers at ``target`` within
    ``timeout_s`` seconds (the whole check, name resolution included); returns the GCS
    address it checked (None for an embedded Ray, a Ray Client or another scheme)."""
    deadline = time.monotonic() + timeout_s
    if target == "local":
        return None  # not a cluster: ray.init starts an embedded one
    if target == "auto":
        found, several = _auto_address(given)
        given = (f"{given} (the cluster at {found}, the latest `ray start` of several Ray "
                 "instances on this host)" if several else f"{given} (the cluster at {found})")
        endpoint = _endpoint(found, given)
    else:
        endpoint = _endpoint(target, given)
    if endpoint is None:
        return None  # another scheme://: Ray judges it
    dialled = _as_ray_connects(endpoint, given)
    if dialled != endpoint:
        given = f"{given} (dialled as {dialled})"
    endpoint = dialled
    infos = _resolve(endpoint, given, deadline)
    _tcp_check(endpoint, infos, given, deadline, timeout_s)
    _protocol_check(endpoint, given, deadline, timeout_s)
    return None if endpoint.client else endpoint.grpc_target


def _endpoint(target: str, given: str) -> _Endpoint | None:
    """``target`` parsed; None for a scheme this module does not check (Ray's own business)."""
    client = target.startswith(_CLIENT_SCHEME)
    rest = target.removeprefix(_CLIENT_SCHEME)
    if "://" in rest:
        scheme = rest.split("://", 1)[0]
        if scheme in ("http", "https"):
            raise ConfigError(
                f"{given}: an {scheme}:// address is the Ray dashboard's (for `ray job "
                "submit`); mtp joins the cluster itself: give the head node's GCS address "
                "HOST:PORT (port 6379 by default) or ray://HOST:PORT")
        return None
    host, sep, port = rest.rpartition(":")
    form = ("expected HOST:PORT (the head node's GCS address), ray://HOST:PORT or 'auto'")
    if not sep or "/" in rest:
        raise ConfigError(f"{given}: {form}")
    if not host.strip("[]"):
        raise ConfigError(f"{given}: no host before ':{port}'; {form}")
    if not port.isdigit():
        raise ConfigError(f"{given}: port {port!r} is not a number; expected HOST:PORT with "
                          "a port from 1 to 65535")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{given}: port {int(port)} is out of range; expected a port from 1 "
                          "to 65535")
    return _Endpoint(host.strip("[]"), int(port), client)


def _auto_address(given: str) -> tuple[str, bool]:
    """The address 'auto' stands for, found the way ``ray.init`` finds it (the latest
    ``ray start`` on this host, else a GCS process running here), and whether Ray saw several
    instances. Ray's warning about several is held back: the one line of a failed check says
    it, and ``ray.init`` repeats it when the check passes."""
    from ray._private import services  # private: used here only

    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    services.logger.addFilter(hold)
    try:
        found = services.canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as err:
        raise ConfigError(f"{given}: no Ray cluster found on this host ({_one_line(err)}); "
                          "start one with `ray start --head`, or pass the head node's "
                          "HOST:PORT") from None
    finally:
        services.logger.removeFilter(hold)
    if not found:
        raise ConfigError(f"{given}: no Ray cluster found on this host; start one with "
                          "`ray start --head`, or pass the head node's HOST:PORT")
    for record in held:
        logger.debug("Ray, looking for 'auto': %s", record.getMessage())
    return str(found), any("multiple active Ray instances" in r.getMessage() for r in held)


def _as_ray_connects(endpoint: _Endpoint, given: str) -> _Endpoint:
    """The GCS endpoint ``ray.init`` will dial: it replaces a loopback host with this node's
    IP address, so that is the one to check (a Ray Client dials the address as given)."""
    if endpoint.client:
        return endpoint
    from ray._private import services  # private: used here only

    try:
        host = services.resolve_ip_for_localhost(endpoint.host)
    except Exception as err:  # noqa: BLE001 - cannot tell: the address as given is checked
        logger.debug("%s: cannot map the host as Ray does (%s)", given, err)
        return endpoint
    return _Endpoint(str(host).strip("[]"), endpoint.port, client=False)


def _resolve(endpoint: _Endpoint, given: str, deadline: float) -> list[Any]:
    """``getaddrinfo`` for the endpoint, bounded: a resolver that does not answer can block
    for many seconds per try, and the call cannot be interrupted, so it runs in a thread."""
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(endpoint.host, endpoint.port,
                                              type=socket.SOCK_STREAM)
        except OSError as err:
            box["error"] = err

    worker = threading.Thread(target=lookup, name="mtp-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise ConfigError(f"{given}: host name {endpoint.host!r} did not resolve in time (no "
                          "answer from the name service); check the name, or use the head "
                          "node's IP address")
    if "error" in box:
        err = box["error"]
        raise ConfigError(f"{given}: host name {endpoint.host!r} does not resolve "
                          f"({err.strerror or err}); check the name, or use the head node's "
                          "IP address") from None
    infos: list[Any] = box["infos"]
    return infos


def _tcp_check(endpoint: _Endpoint, infos: list[Any], given: str, deadline: float,
               timeout_s: float) -> None:
    """Fail at once when nothing listens (connection refused or no route)."""
    problem: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(remaining)
                sock.connect(sockaddr)
            return
        except OSError as err:
            problem = err
    check = _CHECK_CLIENT if endpoint.client else _CHECK_GCS
    if problem is None or isinstance(problem, TimeoutError):
        raise ConfigError(f"{given}: cannot connect to a Ray cluster: no answer from {endpoint} "
                          f"within {timeout_s:g} s (a firewall, or a host that is down); {check}")
    raise ConfigError(f"{given}: cannot connect to a Ray cluster: nothing answers at "
                      f"{endpoint} ({problem.strerror or problem}); {check}")


def _protocol_check(endpoint: _Endpoint, given: str, deadline: float,
                    timeout_s: float) -> None:
    """Something accepts TCP connections: ask it what a Ray GCS (or Ray Client server)
    answers, with a deadline. A plain TCP server that never answers, an HTTP server and a
    gRPC server of another kind all fail here, in bounded time."""
    import grpc
    from ray._private.grpc_utils import init_grpc_channel  # TLS and token auth, as Ray does

    if endpoint.client:
        from ray.core.generated import ray_client_pb2

        what, method = "Ray Client server", _CLIENT_PROBE
        request = ray_client_pb2.ClusterInfoRequest(
            type=ray_client_pb2.ClusterInfoType.PING).SerializeToString()
        check = _CHECK_CLIENT
    else:
        what, method, request = "Ray cluster", _GCS_PROBE, b""
        check = _CHECK_GCS
    channel = init_grpc_channel(endpoint.grpc_target, options=[("grpc.enable_retries", 0)])
    try:
        channel.unary_unary(method)(request, timeout=max(0.1, deadline - time.monotonic()))
        return
    except grpc.RpcError as err:
        code, details = err.code(), _one_line(err.details() or "")
    finally:
        channel.close()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        raise ConfigError(
            f"{given}: the Ray cluster at {endpoint} refuses this process's authentication "
            f"token ({details}); give it the cluster's token in RAY_AUTH_TOKEN or a file "
            "named by RAY_AUTH_TOKEN_PATH (`ray get-auth-token` on the head node prints it)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise ConfigError(f"{given}: no {what} answers there within {timeout_s:g} s "
                          f"({endpoint} accepts TCP connections but does not answer as a "
                          f"{'Ray Client server' if endpoint.client else 'Ray GCS'} does); "
                          f"{check}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        why = (f"a gRPC service of another kind answers at {endpoint}; "
               + ("a GCS address takes no ray:// prefix" if endpoint.client else
                  "a Ray Client address is ray://HOST:PORT"))
    else:
        why = f"{endpoint} accepts TCP connections but speaks another protocol: {details}"
    raise ConfigError(f"{given}: no {what} answers there ({why}); {check}")


def _one_line(err: BaseException | str) -> str:
    """One line of a message, at most 300 characters: its first line, or the last one when
    the message is a traceback (some of Ray's errors hold one)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return "" if isinstance(err, str) else type(err).__name__
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    if line.endswith(":") and len(lines) > 1:  # "Initialization failure from server:" + ...
        line = f"{line} {lines[-1]}"
    return line if len(line) <= 300 else line[:297] + "..."


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
