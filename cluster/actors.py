"""The platform's cluster actors: FaultDetector, its per-node agents, and TaskMigrator.

All live in Ray namespace ``mtp``: ``mtp-fault-detector`` and ``mtp-task-migrator`` are
detached, created with ``get_if_exists`` (any driver gets the running one) and restart
themselves (``max_restarts=-1``); their state is persisted as JSON under
``<storage_path>/_cluster/`` with atomic writes and reloaded on restart. The detector starts one
``mtp-node-agent-<node>`` per alive node (pinned with node affinity, no CPU) that sends a node
heartbeat every interval; an agent dies with its node, which is how a node that runs no training
worker is still noticed.

The actor classes are thin: every decision is in :mod:`cluster.detector`,
:mod:`cluster.migrator` and :mod:`cluster.supervision` (how long to wait for a verdict and for
capacity). What crosses their boundary is typed: :class:`~cluster.detector.HealthThresholds`,
:class:`~cluster.detector.FailureEvent`, :class:`~cluster.detector.NodeView`,
:class:`~cluster.detector.TaskProgress`, :class:`~mtp_core.resources.TaskResources`,
:class:`~cluster.migrator.Placement` (or :class:`~cluster.migrator.NoCapacityError`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import ray

from cluster.detector import (
    EventKind,
    FailureEvent,
    FaultDetector,
    Health,
    HealthThresholds,
    NodeView,
    TaskProgress,
)
from cluster.metrics import ClusterMetrics
from cluster.migrator import Migration, NoCapacityError, Placement, TaskMigrator
from cluster.supervision import Action, RestartLimits, Supervisor
from mtp_core.atomic import atomic_write_json, read_json
from mtp_core.ray_env import NAMESPACE, control_plane_options
from mtp_core.resources import TaskResources
from mtp_core.spec import MigrationStrategy

__all__ = [
    "DETECTOR_NAME",
    "MIGRATOR_NAME",
    "FaultDetectorActor",
    "NodeAgent",
    "TaskMigratorActor",
    "free_resources_per_node",
    "get_fault_detector",
    "get_task_migrator",
]

logger = logging.getLogger(__name__)

DETECTOR_NAME = "mtp-fault-detector"
MIGRATOR_NAME = "mtp-task-migrator"
_PERSIST_EVERY_S = 1.0
_SETTLE_WAIT_S = 20.0  # for reservations to be freed and loaded nodes to answer
_PROBE_TIMEOUT_S = 1.0  # a live node's agent answers a ping in milliseconds


def _live_totals() -> dict[str, dict[str, float]]:
    """Total CPU/GPU of every node Ray counts alive."""
    return {n["NodeID"]: {k: float(v) for k, v in n["Resources"].items() if k in ("CPU", "GPU")}
            for n in ray.nodes() if n.get("Alive")}


def free_resources_per_node() -> dict[str, dict[str, float]]:
    """Available resources of every alive node (Ray exposes this only as private API)."""
    from ray._private import state as _state

    try:
        raw = _state.available_resources_per_node()
    except Exception as err:  # noqa: BLE001 - fall back to totals from the public node table
        logger.debug("available_resources_per_node failed (%s); using totals", err)
        raw = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n.get("Alive")}
    return {nid: {k: float(v) for k, v in res.items() if k in ("CPU", "GPU")}
            for nid, res in raw.items()}


class NodeAgent:
    """Sends this node's heartbeat to the detector every interval, until the node dies."""

    def __init__(self, node_id: str, interval_s: float) -> None:
        self.node_id = node_id
        self.interval_s = interval_s
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="mtp-node-heartbeat", daemon=True).start()

    def _loop(self) -> None:
        detector = None
        while not self._stop.wait(self.interval_s):
            try:
                if detector is None:
                    detector = ray.get_actor(DETECTOR_NAME, namespace=NAMESPACE)
                detector.node_heartbeat.remote(self.node_id)
            except Exception as err:  # noqa: BLE001 - the detector may be restarting
                logger.debug("node heartbeat not sent: %s", err)
                detector = None

    def set_interval(self, interval_s: float) -> None:
        self.interval_s = interval_s

    def ping(self) -> str:
        return self.node_id


def _restore(path: Path, what: str, load: Callable[[], None]) -> bool:
    """Load a control-plane actor's saved state; a file that is JSON but not that state (a
    hand edit, another version) is moved aside to ``<name>.corrupt`` and the actor starts
    fresh, rather than dying in its constructor on every restart."""
    try:
        load()
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        aside = path.with_name(path.name + ".corrupt")
        logger.warning("%s is not a %s state (%s: %s); moved aside to %s, starting fresh",
                       path, what, type(err).__name__, err, aside.name)
        os.replace(path, aside)
        return False
    return True


class FaultDetectorActor:
    """Ray actor around :class:`FaultDetector`: heartbeats in, failure events out."""

    def __init__(self, thresholds: HealthThresholds, state_dir: str | None = None) -> None:
        t = thresholds
        # the loop steps every interval / 4: a gap of four ticks is the detector's own pause
        self.core = FaultDetector(t, max_pause_s=t.heartbeat_interval_s)
        self.lock = threading.Lock()
        self.state_path = Path(state_dir) / "fault_detector.json" if state_dir else None
        self.subscribers: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}
        self.metrics = ClusterMetrics()
        self.restored = False
        if self.state_path is not None:
            state = read_json(self.state_path, tolerate_corrupt=True)
            if state is not None and _restore(self.state_path, "fault detector",
                                              lambda: self.core.load_state_dict(state,
                                                                                time.time())):
                self.restored = True
                logger.warning("fault detector restored %d nodes, %d workers from %s",
                               len(self.core.nodes), len(self.core.workers), self.state_path)
        if not self.restored:  # a half-loaded state is not kept
            self.core = FaultDetector(t, max_pause_s=t.heartbeat_interval_s)
        self._last_persist = 0.0
        # agents fate-share with the detector that owns them; a fresh name per incarnation
        # keeps a restarted detector from getting a dying agent of its predecessor by name
        self._incarnation = os.urandom(3).hex()
        self._pings: dict[str, Any] = {}
        threading.Thread(target=self._loop, name="mtp-detector-loop", daemon=True).start()

    # -- calls from workers, agents and drivers ---------------------------------------------------

    def heartbeat(self, task_id: str, attempt: int, rank: int, node_id: str, step: int) -> None:
        # ages are measured on the detector's clock: senders' clocks may be skewed
        with self.lock:
            self.core.worker_heartbeat(task_id, attempt, rank, node_id, step, time.time())
        self.metrics.heartbeat()

    def node_heartbeat(self, node_id: str) -> None:
        with self.lock:
            self.core.node_heartbeat(node_id, time.time())
        self.metrics.heartbeat()

    def configure(self, thresholds: HealthThresholds) -> None:
        new = thresholds
        with self.lock:
            if new != self.core.thresholds:
                logger.warning("fault detector thresholds changed to %s", new)
                self.core.thresholds = new
                self.core.max_pause_s = new.heartbeat_interval_s
                for agent in self.agents.values():
                    agent.set_interval.remote(new.heartbeat_interval_s)

    def subscribe(self, name: str, handle: Any) -> None:
        self.subscribers[name] = handle

    def retire_task(self, task_id: str, attempt: int | None = None) -> None:
        with self.lock:
            self.core.retire_task(task_id, attempt)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            snap = self.core.snapshot(time.time())
        snap["restored"] = self.restored
        snap["thresholds"] = asdict(self.core.thresholds)
        return snap

    def node_views(self) -> list[NodeView]:
        """Every known node's health and newest heartbeat (no resources)."""
        with self.lock:
            return self.core.views()

    def wait_verdict(self, node_ids: list[str], since: float, timeout_s: float,
                     name: str = "") -> list[NodeView]:
        """Wait until each node is FAILED or has sent a heartbeat after ``since``; returns
        the known nodes' views then.

        Used after a run failed: a node that is alive proves it within one interval, a dead one
        is declared FAILED within the timeout, so no plan is made on a stale view.
        """
        supervisor = Supervisor(name=name)
        supervisor.await_verdict(node_ids, since, timeout_s)
        while True:
            with self.lock:
                views = self.core.views(node_ids)
            supervisor.observe(views)
            decision = supervisor.step()
            if decision.action is not Action.WAIT:
                return views
            time.sleep(decision.wait_s)

    def task_progress(self, task_id: str) -> TaskProgress:
        with self.lock:
            return self.core.task_progress(task_id)

    # -- the loop ---------------------------------------------------------------------------------

    def _ensure_agents(self, table: list[dict[str, Any]]) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = {n["NodeID"] for n in table if n.get("Alive")}
        for node_id in list(self.agents):
            if node_id not in alive:
                del self.agents[node_id]
                self._pings.pop(node_id, None)
        # an agent that died while its node lives (OOM kill, say) would silence a healthy
        # node: ping each agent, and replace one whose ping fails
        for node_id, ref in list(self._pings.items()):
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            del self._pings[node_id]
            try:
                ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - any failure means the agent is gone
                logger.warning("node agent on %s died (%s); starting a new one", node_id[:12],
                               type(err).__name__)
                self.agents.pop(node_id, None)
        for node_id in alive - set(self.agents):
            self.agents[node_id] = ray.remote(NodeAgent).options(
                name=f"mtp-node-agent-{node_id[:12]}-{self._incarnation}", namespace=NAMESPACE,
                num_cpus=0, max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(node_id, self.core.thresholds.heartbeat_interval_s)
        for node_id, agent in self.agents.items():
            if node_id not in self._pings:
                self._pings[node_id] = agent.ping.remote()

    def _publish(self, events: list[FailureEvent]) -> None:
        for event in events:
            self.metrics.failure(event.kind.value)
            # a node's agent lets a subscriber probe the node before acting on the verdict
            agent = self.agents.get(event.node_id) if event.kind is EventKind.NODE else None
            for name, handle in list(self.subscribers.items()):
                try:
                    handle.on_failure.remote(event, agent)
                except Exception as err:  # noqa: BLE001 - a dead subscriber must not stop us
                    logger.warning("dropping subscriber %s: %s", name, err)
                    self.subscribers.pop(name, None)

    def _loop(self) -> None:
        while True:
            interval = self.core.thresholds.heartbeat_interval_s
            try:
                table = ray.nodes()
                now = time.time()
                with self.lock:
                    self.core.observe_nodes(table, now)
                    events = self.core.step(now)
                    counts = self.core.counts()
                    state = self.core.state_dict()
                self._ensure_agents(table)
                self._publish(events)
                self.metrics.node_counts(counts)
                if self.state_path is not None and now - self._last_persist >= _PERSIST_EVERY_S:
                    atomic_write_json(self.state_path, state)
                    self._last_persist = now
            except Exception:  # noqa: BLE001 - the detector must outlive any one bad tick
                logger.exception("fault detector tick failed")
            time.sleep(interval / 4)


class TaskMigratorActor:
    """Ray actor around :class:`TaskMigrator`; subscribes to the detector's failure events."""

    def __init__(self, strategy: MigrationStrategy, state_dir: str | None = None) -> None:
        self.core = TaskMigrator(strategy)
        self.lock = threading.Lock()
        self.state_path = Path(state_dir) / "task_migrator.json" if state_dir else None
        self.metrics = ClusterMetrics()
        self.restored = False
        # in memory only: the running attempts' Ray Train worker actors (lost with a restart,
        # and then a lost node ends the attempt through Ray Train's own error)
        self._workers: dict[str, dict[int, tuple[int, Any]]] = {}
        if self.state_path is not None:
            state = read_json(self.state_path, tolerate_corrupt=True)
            if state is not None and _restore(self.state_path, "task migrator",
                                              lambda: self.core.load_state_dict(state)):
                self.restored = True
            else:  # a half-loaded state is not kept
                self.core = TaskMigrator(strategy)
        try:
            detector = ray.get_actor(DETECTOR_NAME, namespace=NAMESPACE)
            me = ray.get_runtime_context().current_actor
            detector.subscribe.remote(MIGRATOR_NAME, me)
        except ValueError:
            logger.warning("no fault detector running: migrations only on driver request")

    def _persist(self) -> None:
        if self.state_path is not None:
            atomic_write_json(self.state_path, self.core.state_dict())

    def on_failure(self, event: FailureEvent, agent: Any = None) -> list[str]:
        """A failure event from the detector; ``agent`` is the failed node's agent (to probe)."""
        node_id, task_ids = event.node_id, list(event.task_ids)
        preempt: list[str] = []
        if event.kind is EventKind.NODE:
            with self.lock:
                preempt = self.core.to_preempt(node_id, task_ids)
        if preempt and self._answers(agent):
            # late heartbeats from a live but overloaded node look like a dead node
            logger.warning("node %s was declared FAILED (%s) but its agent answers: tasks %s "
                           "keep running", node_id[:12], event.cause, preempt)
            return []
        with self.lock:
            hit = self.core.on_failure(node_id, task_ids)
            self._persist()
        for task_id in preempt:
            self._stop_attempt(task_id, node_id, event.time)
        return hit

    @staticmethod
    def _answers(agent: Any) -> bool:
        """Whether the node agent answers a ping within :data:`_PROBE_TIMEOUT_S`."""
        if agent is None:
            return False
        ref = agent.ping.remote()
        ready, _ = ray.wait([ref], timeout=_PROBE_TIMEOUT_S)
        if not ready:
            return False
        try:
            ray.get(ready[0])
        except Exception:  # noqa: BLE001 - any error means the node cannot answer
            return False
        return True

    def _stop_attempt(self, task_id: str, node_id: str, verdict_at: float) -> None:
        """Kill the running attempt's workers: Ray Train then ends the run at once."""
        with self.lock:
            rec = self.core.tasks.get(task_id)
            if rec is None:
                return
            handles = [h for a, h in self._workers.get(task_id, {}).values() if a == rec.attempt]
            if handles:
                self.core.preempted(task_id, verdict_at)
                self._persist()
            attempt = rec.attempt
        if not handles:
            return
        logger.warning("node %s FAILED: stopping attempt %d of task %s (%d workers) to resume "
                       "it elsewhere now", node_id[:12], attempt, task_id, len(handles))
        for handle in handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception as err:  # noqa: BLE001 - already gone is as good as killed
                logger.debug("kill of a worker of %s: %s", task_id, err)

    def register(self, task_id: str, resources: TaskResources,
                 preempt_on_detection: bool = False) -> None:
        with self.lock:
            self.core.register(task_id, resources, preempt_on_detection)
            self._workers.pop(task_id, None)
            self._persist()

    def attach_worker(self, task_id: str, attempt: int, rank: int, handle: Any) -> None:
        """A rank of a running attempt: its Ray Train worker actor, to stop it on a verdict."""
        with self.lock:
            self._workers.setdefault(task_id, {})[rank] = (attempt, handle)

    def attempt_started(self, task_id: str, attempt: int, nodes: list[str]) -> None:
        with self.lock:
            self.core.attempt_started(task_id, attempt, nodes)
            self._persist()

    def plan(self, task_id: str, failure_at: float, cause: str, verdict_timeout_s: float,
             strategy: MigrationStrategy | None = None) -> Placement:
        """After a failed attempt: wait for the detector's verdict, then choose nodes.

        Raises :class:`NoCapacityError` (the task is then FAILED) when no healthy nodes can
        hold the task, and will not once the live nodes settle (see :mod:`cluster.supervision`).
        """
        detector = ray.get_actor(DETECTOR_NAME, namespace=NAMESPACE)
        with self.lock:
            rec = self.core.tasks[task_id]
            suspects = list(rec.nodes)
            attempt = rec.attempt
        progress: TaskProgress = ray.get(detector.task_progress.remote(task_id))
        suspects = sorted(set(suspects) | set(progress.nodes.values()))
        ray.get(detector.wait_verdict.remote(suspects, failure_at, verdict_timeout_s, task_id))
        # Ray releases the failed attempt's reservations asynchronously, and a live node that
        # missed heartbeats under load is healthy again seconds later: the supervisor waits a
        # little for that, while the live nodes could hold the task once settled
        supervisor = Supervisor(RestartLimits(settle_wait_s=_SETTLE_WAIT_S), name=task_id,
                                attempt=attempt)
        supervisor.await_placement()
        placement: Placement | None = None
        while True:
            decision = supervisor.step()
            if decision.action is Action.WAIT:
                time.sleep(decision.wait_s)
                continue
            if decision.action is Action.FAIL:
                with self.lock:
                    self.core.finished(task_id, False, decision.reason)
                    self._persist()
                raise NoCapacityError(decision.reason)
            if decision.action is Action.RETRY:
                assert placement is not None
                self.metrics.migration_planned()
                return placement
            # RETRY_ELSEWHERE: one placement try on what the nodes look like now
            nodes = self._node_views(detector)
            try:
                with self.lock:
                    placement = self.core.plan(
                        task_id, nodes, now=time.time(), failure_at=failure_at, cause=cause,
                        last_step=progress.step, strategy=strategy)
                    self._persist()
            except NoCapacityError as err:
                totals = _live_totals()
                with self.lock:
                    could_fit = self.core.could_fit_once_settled(task_id, totals)
                supervisor.no_capacity(str(err), could_fit)
                continue
            supervisor.placed(placement)

    @staticmethod
    def _node_views(detector: Any) -> list[NodeView]:
        """Every node with the detector's verdict and Ray's free resources: nodes the detector
        does not know yet count as HEALTHY, nodes Ray lists no resources for have none."""
        known = {v.node_id: v for v in ray.get(detector.node_views.remote())}
        free = free_resources_per_node()
        views = [replace(known[nid], free=res) if nid in known
                 else NodeView(nid, Health.HEALTHY, res) for nid, res in free.items()]
        return views + [v for nid, v in known.items() if nid not in free]

    def resumed(self, task_id: str, attempt: int, checkpoint_epoch: int | None,
                checkpoint_step: int) -> Migration | None:
        with self.lock:
            m = self.core.resumed(task_id, attempt, checkpoint_epoch, checkpoint_step,
                                  time.time())
            self._persist()
        if m is not None and m.time_to_resume_s is not None:
            self.metrics.migration_done(m.time_to_resume_s)
            logger.warning("task %s resumed on %s from epoch %s, %s steps redone, %.1f s after "
                           "the failure", task_id, [n[:12] for n in m.to_nodes],
                           m.checkpoint_epoch, m.steps_redone, m.time_to_resume_s)
        return m

    def finished(self, task_id: str, ok: bool, message: str = "") -> None:
        with self.lock:
            self.core.finished(task_id, ok, message)
            self._workers.pop(task_id, None)
            self._persist()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            snap = self.core.snapshot()
        snap["restored"] = self.restored
        return snap


def _state_dir(storage_path: str | Path | None) -> str | None:
    return str(Path(storage_path) / "_cluster") if storage_path else None


def get_fault_detector(thresholds: HealthThresholds, storage_path: str | Path | None) -> Any:
    """The cluster's detector actor, created on first use (detached, self-restarting)."""
    handle = ray.remote(FaultDetectorActor).options(
        name=DETECTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=32,
        **control_plane_options(),
    ).remote(thresholds, _state_dir(storage_path))
    handle.configure.remote(thresholds)
    return handle


def get_task_migrator(strategy: MigrationStrategy, storage_path: str | Path | None) -> Any:
    return ray.remote(TaskMigratorActor).options(
        name=MIGRATOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=16,
        **control_plane_options(),
    ).remote(strategy, _state_dir(storage_path))
