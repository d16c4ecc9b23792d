"""TaskMigrator placement and records (no Ray)."""

from __future__ import annotations

import pytest

from cluster import NoCapacityError, TaskMigrator, TaskState


def nodes(**spec: tuple[str, float]) -> list[dict]:
    return [{"node_id": n, "health": h, "free": {"CPU": cpu}} for n, (h, cpu) in spec.items()]


def test_load_balanced_spreads_over_most_free_healthy_nodes() -> None:
    m = TaskMigrator("load_balanced")
    m.register("t", world_size=2, cpus_per_worker=1)
    m.attempt_started("t", 0, ["a", "b"])
    plan = m.plan("t", nodes(a=("FAILED", 0), b=("HEALTHY", 2), c=("HEALTHY", 4),
                             d=("WARNING", 8)), now=10.0, failure_at=9.0, cause="x", last_step=50)
    assert plan.node_ids == ["c", "c"] or plan.node_ids == ["c", "b"]
    assert "d" not in plan.node_ids and "a" not in plan.node_ids
    rec = m.migrations[-1]
    assert rec.from_nodes == ["a", "b"] and rec.failed_nodes == ["a"] and rec.attempt == 1
    assert m.tasks["t"].state is TaskState.MIGRATING


def test_load_balanced_prefers_free_capacity() -> None:
    m = TaskMigrator()
    m.register("t", world_size=2, cpus_per_worker=1)
    plan = m.plan("t", nodes(b=("HEALTHY", 1), c=("HEALTHY", 3)), now=1, failure_at=0, cause="")
    assert plan.node_ids == ["c", "c"]


def test_round_robin_rotates() -> None:
    m = TaskMigrator("round_robin")
    m.register("t", world_size=3, cpus_per_worker=1)
    plan = m.plan("t", nodes(a=("HEALTHY", 4), b=("HEALTHY", 4), c=("HEALTHY", 4)), now=1,
                  failure_at=0, cause="")
    assert plan.node_ids == ["a", "b", "c"]


def test_no_capacity_fails_the_task_with_the_reason() -> None:
    m = TaskMigrator()
    m.register("t", world_size=2, cpus_per_worker=1)
    with pytest.raises(NoCapacityError, match=r"needs 2 workers x 1 CPU; healthy nodes: 1 with "
                                              r"1 free CPUs; failed nodes: \['a'\]"):
        m.plan("t", nodes(a=("FAILED", 0), b=("HEALTHY", 1)), now=1, failure_at=0, cause="")
    assert m.tasks["t"].state is TaskState.FAILED


def test_resumed_completes_the_record() -> None:
    m = TaskMigrator()
    m.register("t", world_size=1, cpus_per_worker=1)
    m.plan("t", nodes(b=("HEALTHY", 2)), now=10.0, failure_at=8.0, cause="node a", last_step=130)
    rec = m.resumed("t", attempt=1, checkpoint_epoch=3, checkpoint_step=120, now=14.5)
    assert rec is not None
    assert (rec.checkpoint_epoch, rec.steps_redone, rec.time_to_resume_s) == (3, 10, 6.5)
    assert m.tasks["t"].state is TaskState.RUNNING


def test_failure_event_marks_running_tasks_and_state_roundtrips() -> None:
    m = TaskMigrator()
    m.register("t", world_size=1, cpus_per_worker=1)
    m.register("u", world_size=1, cpus_per_worker=1)
    assert m.on_failure("a", ["t", "zzz"]) == ["t"]
    m.plan("t", nodes(b=("HEALTHY", 2)), now=1, failure_at=0, cause="a")
    again = TaskMigrator()
    again.load_state_dict(m.state_dict())
    assert again.snapshot() == m.snapshot()


def test_a_preempted_attempt_counts_its_migration_from_the_verdict() -> None:
    m = TaskMigrator()
    m.register("t", world_size=1, cpus_per_worker=1)
    m.attempt_started("t", 0, ["a"])
    m.preempted("t", now=5.0)
    m.plan("t", nodes(b=("HEALTHY", 2)), now=9.0, failure_at=8.0, cause="worker died")
    rec = m.resumed("t", attempt=1, checkpoint_epoch=1, checkpoint_step=0, now=12.0)
    assert rec is not None and rec.trigger == "detector"
    assert (rec.failure_at, rec.time_to_resume_s) == (5.0, 7.0)
    # the next attempt starts clean: a later failure Ray Train raised is an "error"
    m.attempt_started("t", 1, ["b"])
    m.plan("t", nodes(c=("HEALTHY", 2)), now=20.0, failure_at=19.0, cause="worker died")
    assert m.migrations[-1].trigger == "error" and m.migrations[-1].failure_at == 19.0


def test_a_dry_run_plan_changes_nothing() -> None:
    m = TaskMigrator("round_robin")
    m.register("t", world_size=2, cpus_per_worker=1)
    m.attempt_started("t", 0, ["a", "b"])
    m.plan("t", nodes(a=("HEALTHY", 4), b=("HEALTHY", 4)), now=1, failure_at=0, cause="",
           record=False)
    with pytest.raises(NoCapacityError):
        m.plan("t", nodes(a=("HEALTHY", 1)), now=1, failure_at=0, cause="", record=False)
    assert m.tasks["t"].state is TaskState.RUNNING and m.migrations == []
    assert m.plan("t", nodes(a=("HEALTHY", 4), b=("HEALTHY", 4)), now=1, failure_at=0,
                  cause="").node_ids == ["a", "b"]


def test_only_running_attempts_on_the_node_with_preemption_on_are_stopped() -> None:
    m = TaskMigrator()
    m.register("on", world_size=1, cpus_per_worker=1, preempt_on_detection=True)
    m.register("off", world_size=1, cpus_per_worker=1)
    m.register("elsewhere", world_size=1, cpus_per_worker=1, preempt_on_detection=True)
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
    m.register("t", world_size=2, cpus_per_worker=1)
    now = nodes(head=("WARNING", 1), b=("HEALTHY", 0))
    with pytest.raises(NoCapacityError):
        m.plan("t", now, now=1, failure_at=0, cause="", final=False)
    assert m.tasks["t"].state is TaskState.MIGRATING  # not final: the caller retries
    assert m.could_fit_once_settled("t", {"head": {"CPU": 1.0}, "b": {"CPU": 1.0}})
    # the killed node is gone from Ray's live nodes: one CPU cannot hold two workers
    assert not m.could_fit_once_settled("t", {"head": {"CPU": 1.0}})
    assert not m.could_fit_once_settled("t", {"head": {"CPU": 1.0, "GPU": 0.0}, "b": {}})
    assert m.migrations == [] and m.tasks["t"].state is TaskState.MIGRATING
