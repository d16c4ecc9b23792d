"""TaskMigrator placement and records (no Ray)."""

from __future__ import annotations

import json
import pickle

import pytest

from cluster import (
    ClusterError,
    Health,
    Migration,
    MigrationTrigger,
    NoCapacityError,
    NodeView,
    TaskMigrator,
    TaskState,
)
from mtp_core.resources import TaskResources
from mtp_core.spec import MigrationStrategy


def nodes(**spec: tuple[str, float]) -> list[NodeView]:
    return [NodeView(n, Health(h), {"CPU": cpu}) for n, (h, cpu) in spec.items()]


def workers(n: int, cpus: float = 1.0, gpus: float = 0.0) -> TaskResources:
    return TaskResources(num_workers=n, cpus_per_worker=cpus, gpus_per_worker=gpus)


def test_load_balanced_spreads_over_most_free_healthy_nodes() -> None:
    m = TaskMigrator(MigrationStrategy.LOAD_BALANCED)
    m.register("t", workers(2))
    m.attempt_started("t", 0, ["a", "b"])
    plan = m.plan("t", nodes(a=("FAILED", 0), b=("HEALTHY", 2), c=("HEALTHY", 4),
                             d=("WARNING", 8)), now=10.0, failure_at=9.0, cause="x", last_step=50)
    assert plan.node_ids in (("c", "c"), ("c", "b"))
    assert "d" not in plan.node_ids and "a" not in plan.node_ids
    rec = m.migrations[-1]
    assert rec.from_nodes == ["a", "b"] and rec.failed_nodes == ["a"] and rec.attempt == 1
    assert m.tasks["t"].state is TaskState.MIGRATING


def test_load_balanced_prefers_free_capacity() -> None:
    m = TaskMigrator()
    m.register("t", workers(2))
    plan = m.plan("t", nodes(b=("HEALTHY", 1), c=("HEALTHY", 3)), now=1, failure_at=0, cause="")
    assert plan.node_ids == ("c", "c")


def test_round_robin_rotates() -> None:
    m = TaskMigrator(MigrationStrategy.ROUND_ROBIN)
    m.register("t", workers(3))
    plan = m.plan("t", nodes(a=("HEALTHY", 4), b=("HEALTHY", 4), c=("HEALTHY", 4)), now=1,
                  failure_at=0, cause="")
    assert plan.node_ids == ("a", "b", "c")
    assert plan.reason == "round_robin over 3 healthy nodes"


def test_no_capacity_raises_the_reason_and_the_caller_gives_up() -> None:
    m = TaskMigrator()
    m.register("t", workers(2))
    with pytest.raises(NoCapacityError, match=r"needs 2 workers x 1 CPU; healthy nodes: 1 with "
                                              r"1 free CPUs; failed nodes: \['a'\]") as err:
        m.plan("t", nodes(a=("FAILED", 0), b=("HEALTHY", 1)), now=1, failure_at=0, cause="")
    assert m.tasks["t"].state is TaskState.MIGRATING  # whether to try again: the supervisor's
    m.finished("t", ok=False, message=str(err.value))
    assert m.tasks["t"].state is TaskState.FAILED
    assert m.tasks["t"].message.startswith("no healthy capacity for task 't'")


def test_gpu_tasks_need_gpus_on_the_node() -> None:
    m = TaskMigrator()
    m.register("t", workers(1, cpus=1.0, gpus=1.0))
    views = [NodeView("cpu-only", Health.HEALTHY, {"CPU": 8.0}),
             NodeView("gpu", Health.HEALTHY, {"CPU": 1.0, "GPU": 1.0})]
    assert m.plan("t", views, now=1, failure_at=0, cause="").node_ids == ("gpu",)
    with pytest.raises(NoCapacityError, match=r"1 workers x 1 CPU \+ 1 GPU"):
        m.plan("t", views[:1], now=1, failure_at=0, cause="")


def test_no_capacity_error_pickles_with_its_message() -> None:
    err = pickle.loads(pickle.dumps(NoCapacityError("no healthy capacity for task 't'")))
    assert isinstance(err, NoCapacityError) and isinstance(err, ClusterError)
    assert str(err) == "no healthy capacity for task 't'"


def test_state_files_keep_their_strings_and_old_ones_load() -> None:
    """Enums are StrEnums: the JSON under <storage>/_cluster/ reads as before, both ways."""
    m = TaskMigrator()
    m.register("t", workers(1))
    m.attempt_started("t", 0, ["a"])
    m.preempted("t", now=5.0)
    m.plan("t", nodes(b=("HEALTHY", 2)), now=9.0, failure_at=8.0, cause="worker died")
    state = json.loads(json.dumps(m.state_dict()))
    assert state["migrations"][0]["trigger"] == "detector"
    assert state["tasks"][0]["state"] == "MIGRATING"
    old = {"version": 1, "rr_cursor": 2,
           "tasks": [{"task_id": "t", "world_size": 2, "cpus_per_worker": 1.0,
                      "gpus_per_worker": 0.0, "state": "RUNNING", "attempt": 1,
                      "nodes": ["b", "c"], "last_step": 40, "message": "",
                      "preempt_on_detection": True, "preempted_at": None}],
           "migrations": [{"task_id": "t", "attempt": 1, "from_nodes": ["a", "b"],
                           "to_nodes": ["b", "c"], "failed_nodes": ["a"], "cause": "x",
                           "planned_at": 10.0, "failure_at": 8.0, "checkpoint_epoch": 2,
                           "steps_redone": 5, "resumed_at": 12.0, "trigger": "error",
                           "time_to_resume_s": 4.0}]}
    again = TaskMigrator()
    again.load_state_dict(old)
    assert again.migrations == [Migration("t", 1, ["a", "b"], ["b", "c"], ["a"], "x", 10.0, 8.0,
                                          2, 5, 12.0, MigrationTrigger.ERROR)]
    assert again.tasks["t"].state is TaskState.RUNNING and again.tasks["t"].world_size == 2
    assert again.state_dict() == old


def test_resumed_completes_the_record() -> None:
    m = TaskMigrator()
    m.register("t", workers(1))
    m.plan("t", nodes(b=("HEALTHY", 2)), now=10.0, failure_at=8.0, cause="node a", last_step=130)
    rec = m.resumed("t", attempt=1, checkpoint_epoch=3, checkpoint_step=120, now=14.5)
    assert rec is not None
    assert (rec.checkpoint_epoch, rec.steps_redone, rec.time_to_resume_s) == (3, 10, 6.5)
    assert m.tasks["t"].state is TaskState.RUNNING


def test_failure_event_marks_running_tasks_and_state_roundtrips() -> None:
    m = TaskMigrator()
    m.register("t", workers(1))
    m.register("u", workers(1))
    assert m.on_failure("a", ["t", "zzz"]) == ["t"]
    m.plan("t", nodes(b=("HEALTHY", 2)), now=1, failure_at=0, cause="a")
    again = TaskMigrator()
    again.load_state_dict(m.state_dict())
    assert again.snapshot() == m.snapshot()


def test_a_preempted_attempt_counts_its_migration_from_the_verdict() -> None:
    m = TaskMigrator()
    m.register("t", workers(1))
    m.attempt_started("t", 0, ["a"])
    m.preempted("t", now=5.0)
    m.plan("t", nodes(b=("HEALTHY", 2)), now=9.0, failure_at=8.0, cause="worker died")
    rec = m.resumed("t", attempt=1, checkpoint_epoch=1, checkpoint_step=0, now=12.0)
    assert rec is not None and rec.trigger is MigrationTrigger.DETECTOR
    assert (rec.failure_at, rec.time_to_resume_s) == (5.0, 7.0)
    # the next attempt starts clean: a later failure Ray Train raised is an "error"
    m.attempt_started("t", 1, ["b"])
    m.plan("t", nodes(c=("HEALTHY", 2)), now=20.0, failure_at=19.0, cause="worker died")
    assert m.migrations[-1].trigger is MigrationTrigger.ERROR
    assert m.migrations[-1].failure_at == 19.0


def test_a_dry_run_plan_changes_nothing() -> None:
    m = TaskMigrator(MigrationStrategy.ROUND_ROBIN)
    m.register("t", workers(2))
    m.attempt_started("t", 0, ["a", "b"])
    m.plan("t", nodes(a=("HEALTHY", 4), b=("HEALTHY", 4)), now=1, failure_at=0, cause="",
           record=False)
    with pytest.raises(NoCapacityError):
        m.plan("t", nodes(a=("HEALTHY", 1)), now=1, failure_at=0, cause="", record=False)
    assert m.tasks["t"].state is TaskState.RUNNING and m.migrations == []
    assert m.plan("t", nodes(a=("HEALTHY", 4), b=("HEALTHY", 4)), now=1, failure_at=0,
                  cause="").node_ids == ("a", "b")


def test_only_running_attempts_on_the_node_with_preemption_on_are_stopped() -> None:
    m = TaskMigrator()
    m.register("on", workers(1), preempt_on_detection=True)
    m.register("off", workers(1))
    m.register("elsewhere", workers(1), preempt_on_detection=True)
    m.attempt_started("on", 0, ["a"])
    m.attempt_started("off", 0, ["a"])
    m.attempt_started("elsewhere", 0, ["b"])
    m.on_failure("a", ["on"])  # a silent rank marked it MIGRATING first: still stopped
    assert m.to_preempt("a", ["on", "off", "elsewhere", "unknown"]) == ["on"]
    m.preempted("on", now=3.0)
    assert m.to_preempt("a", ["on"]) == []  # stopped once
    m.finished("elsewhere", ok=True)
    assert m.to_preempt("b", ["elsewhere"]) == []


def test_could_fit_once_settled_counts_live_nodes_whatever_their_verdict() -> None:
    """A survivor that missed heartbeats under load (WARNING) and reservations not yet
    released make a placement fail now, but the task could fit once they settle."""
    m = TaskMigrator()
    m.register("t", workers(2))
    now = nodes(head=("WARNING", 1), b=("HEALTHY", 0))
    with pytest.raises(NoCapacityError):
        m.plan("t", now, now=1, failure_at=0, cause="")
    assert m.tasks["t"].state is TaskState.MIGRATING  # the caller may try again
    assert m.could_fit_once_settled("t", {"head": {"CPU": 1.0}, "b": {"CPU": 1.0}})
    # the killed node is gone from Ray's live nodes: one CPU cannot hold two workers
    assert not m.could_fit_once_settled("t", {"head": {"CPU": 1.0}})
    assert not m.could_fit_once_settled("t", {"head": {"CPU": 1.0, "GPU": 0.0}, "b": {}})
    assert m.migrations == [] and m.tasks["t"].state is TaskState.MIGRATING
