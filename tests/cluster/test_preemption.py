"""The migrator actor stops a task's attempt on a FAILED node verdict, unless the node answers.

A local Ray with stand-in actors: a "worker" of the attempt, and a node agent that either
answers its ping or never does (as on a node that is gone but not yet known dead to Ray).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

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

    migrator = ray.remote(TaskMigratorActor).options(max_concurrency=4).remote("load_balanced")
    worker = ray.remote(_Worker).options(num_cpus=0).remote()
    ray.get(migrator.register.remote("t", 1, 1.0, 0.0, preempt))
    ray.get(migrator.attempt_started.remote("t", 0, ["node-a"]))
    ray.get(migrator.attach_worker.remote("t", 0, 0, worker))
    return migrator, worker


def _event(agent: Any) -> dict[str, Any]:
    return {"kind": "node", "node_id": "node-a", "time": 123.0, "cause": "no heartbeat",
            "task_ids": ["t"], "rank": None, "agent": agent}


def _task(migrator: Any) -> dict[str, Any]:
    import ray

    return next(t for t in ray.get(migrator.snapshot.remote())["tasks"] if t["task_id"] == "t")


def test_a_silent_node_stops_the_attempt(ray_session: None) -> None:
    import ray

    migrator, worker = _setup(preempt=True)
    agent = ray.remote(_Agent).options(num_cpus=0).remote(False)
    # a silent rank is reported first (kind "worker"): marked, but nothing is stopped for it
    silent_rank = {**_event(None), "kind": "worker", "rank": 0}
    assert ray.get(migrator.on_failure.remote(silent_rank)) == ["t"]
    assert ray.get(worker.ping.remote(), timeout=30) == "alive"
    # then the node verdict, and the probe gets no answer: the attempt is stopped
    ray.get(migrator.on_failure.remote(_event(agent)))
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(worker.ping.remote(), timeout=30)
    assert _task(migrator)["preempted_at"] == 123.0 and _task(migrator)["state"] == "MIGRATING"


def test_a_node_that_answers_is_a_false_alarm(ray_session: None) -> None:
    import ray

    migrator, worker = _setup(preempt=True)
    agent = ray.remote(_Agent).options(num_cpus=0).remote(True)
    assert ray.get(migrator.on_failure.remote(_event(agent))) == []
    assert ray.get(worker.ping.remote(), timeout=30) == "alive"
    assert _task(migrator)["preempted_at"] is None and _task(migrator)["state"] == "RUNNING"


def test_without_preemption_the_attempt_is_left_to_ray_train(ray_session: None) -> None:
    import ray

    migrator, worker = _setup(preempt=False)
    assert ray.get(migrator.on_failure.remote(_event(None))) == ["t"]
    assert ray.get(worker.ping.remote(), timeout=30) == "alive"
    assert _task(migrator)["preempted_at"] is None
