"""The migrator actor stops a task's attempt on a FAILED node verdict, unless the node answers;
its plans cross the actor boundary typed (a Placement, or NoCapacityError).

A local Ray with stand-in actors: a "worker" of the attempt, and a node agent that either
answers its ping or never does (as on a node that is gone but not yet known dead to Ray).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from cluster.detector import EventKind, FailureEvent
from mtp_core.resources import TaskResources
from mtp_core.spec import MigrationStrategy

pytestmark = pytest.mark.ray


class _Worker:
    def ping(self) -> str:
        return "alive"


class _Agent:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    def ping(self) -> str:
        if not self.answers:
            time.sleep(60)
        return "node"


def _setup(preempt: bool) -> tuple[Any, Any]:
    import ray

    from cluster.actors import TaskMigratorActor

    migrator = ray.remote(TaskMigratorActor).options(max_concurrency=4).remote(
        MigrationStrategy.LOAD_BALANCED)
    worker = ray.remote(_Worker).options(num_cpus=0).remote()
    ray.get(migrator.register.remote("t", TaskResources(1, 1.0, 0.0), preempt))
    ray.get(migrator.attempt_started.remote("t", 0, ["node-a"]))
    ray.get(migrator.attach_worker.remote("t", 0, 0, worker))
    return migrator, worker


NODE_EVENT = FailureEvent(EventKind.NODE, "node-a", 123.0, "no heartbeat", ("t",))


def _task(migrator: Any, task_id: str = "t") -> dict[str, Any]:
    import ray

    return next(t for t in ray.get(migrator.snapshot.remote())["tasks"]
                if t["task_id"] == task_id)


def test_a_silent_node_stops_the_attempt(ray_session: None) -> None:
    import ray

    migrator, worker = _setup(preempt=True)
    agent = ray.remote(_Agent).options(num_cpus=0).remote(False)
    # a silent rank is reported first (kind "worker"): marked, but nothing is stopped for it
    silent_rank = FailureEvent(EventKind.WORKER, "node-a", 123.0, "no heartbeat", ("t",), 0)
    assert ray.get(migrator.on_failure.remote(silent_rank)) == ["t"]
    assert ray.get(worker.ping.remote(), timeout=30) == "alive"
    # then the node verdict, and the probe gets no answer: the attempt is stopped
    ray.get(migrator.on_failure.remote(NODE_EVENT, agent))
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(worker.ping.remote(), timeout=30)
    assert _task(migrator)["preempted_at"] == 123.0 and _task(migrator)["state"] == "MIGRATING"


def test_a_node_that_answers_is_a_false_alarm(ray_session: None) -> None:
    import ray

    migrator, worker = _setup(preempt=True)
    agent = ray.remote(_Agent).options(num_cpus=0).remote(True)
    # a real agent runs long before a verdict: its process start is not part of the probe
    assert ray.get(agent.ping.remote(), timeout=60) == "node"
    assert ray.get(migrator.on_failure.remote(NODE_EVENT, agent)) == []
    assert ray.get(worker.ping.remote(), timeout=30) == "alive"
    assert _task(migrator)["preempted_at"] is None and _task(migrator)["state"] == "RUNNING"


def test_without_preemption_the_attempt_is_left_to_ray_train(ray_session: None) -> None:
    import ray

    migrator, worker = _setup(preempt=False)
    assert ray.get(migrator.on_failure.remote(NODE_EVENT, None)) == ["t"]
    assert ray.get(worker.ping.remote(), timeout=30) == "alive"
    assert _task(migrator)["preempted_at"] is None


def test_a_plan_is_a_placement_or_no_capacity_error(ray_session: None) -> None:
    """On the one local node (2 CPUs): one worker is placed there; eight never fit, so the
    plan fails at once, without the settle wait, and the error reaches the caller typed."""
    import ray

    from cluster.actors import TaskMigratorActor, get_fault_detector
    from cluster.detector import HealthThresholds
    from cluster.migrator import NoCapacityError, Placement

    get_fault_detector(HealthThresholds(), None)
    node = ray.get_runtime_context().get_node_id()
    migrator = ray.remote(TaskMigratorActor).options(max_concurrency=4).remote(
        MigrationStrategy.LOAD_BALANCED)
    for task_id, workers in (("fits", 1), ("too-big", 8)):
        ray.get(migrator.register.remote(task_id, TaskResources(workers, 1.0, 0.0)))
        ray.get(migrator.attempt_started.remote(task_id, 0, [node]))
    placement = ray.get(migrator.plan.remote("fits", time.time(), "test", 5.0), timeout=60)
    assert isinstance(placement, Placement) and placement.node_ids == (node,)
    started = time.monotonic()
    with pytest.raises(NoCapacityError) as err:
        ray.get(migrator.plan.remote("too-big", time.time(), "test", 5.0), timeout=60)
    assert time.monotonic() - started < 15  # no 20 s settle wait for what can never fit
    message = str(getattr(err.value, "cause", err.value))
    assert message.startswith("no healthy capacity for task 'too-big': it needs 8 workers x 1 "
                              "CPU; healthy nodes: 1"), message
    assert _task(migrator, "too-big")["state"] == "FAILED"
    assert _task(migrator, "too-big")["message"] == message
