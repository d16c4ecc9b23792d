"""FaultDetector logic, driven with an explicit clock (no Ray)."""

from __future__ import annotations

import json
import logging

import pytest

from cluster import EventKind, FailureEvent, FaultDetector, Health, HealthThresholds, NodeView

T = HealthThresholds(heartbeat_interval_s=1.0, node_failure_timeout_s=3.5, warning_missed=2,
                     critical_missed=3)


def table(*alive: tuple[str, bool]) -> list[dict]:
    return [{"NodeID": n, "Alive": a, "NodeManagerAddress": "127.0.0.1",
             "Resources": {"CPU": 2.0, "node:127.0.0.1": 1.0}} for n, a in alive]


def test_health_levels_follow_missed_heartbeats() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True)), now=0.0)
    d.node_heartbeat("n1", now=0.0)
    levels = {}
    for now in (1.0, 2.5, 3.2, 3.6):
        d.step(now)
        levels[now] = d.health_of("n1")
    assert levels == {1.0: Health.HEALTHY, 2.5: Health.WARNING, 3.2: Health.CRITICAL,
                      3.6: Health.FAILED}


def test_failure_event_once_with_cause_and_affected_tasks(
    caplog: pytest.LogCaptureFixture
) -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True), ("n2", True)), now=0.0)
    d.worker_heartbeat("task-a", 0, 0, "n1", step=10, now=0.0)
    d.worker_heartbeat("task-a", 0, 1, "n2", step=10, now=0.0)
    d.node_heartbeat("n2", now=3.0)
    d.worker_heartbeat("task-a", 0, 1, "n2", step=40, now=3.0)
    with caplog.at_level(logging.WARNING):
        events = d.step(4.0)
    assert [(e.kind, e.node_id, e.task_ids) for e in events] == [
        (EventKind.NODE, "n1", ("task-a",))]
    assert "no heartbeat for 4.0 s > node_failure_timeout_s=3.5" in events[0].cause
    assert "node n1 FAILED: no heartbeat for 4.0 s > node_failure_timeout_s=3.5" in caplog.text
    assert d.step(4.5) == []  # reported once
    assert d.health_of("n2") is Health.HEALTHY
    assert d.task_nodes("task-a") == {0: "n1", 1: "n2"} and d.task_step("task-a") == 40


def test_node_table_death_is_failed_at_once() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True)), now=0.0)
    d.node_heartbeat("n1", now=0.0)
    d.observe_nodes(table(("n1", False)), now=0.2)
    events = d.step(0.2)
    assert d.health_of("n1") is Health.FAILED
    assert events and "node table reports the node dead" in events[0].cause


def test_worker_failure_on_a_healthy_node() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True)), now=0.0)
    d.worker_heartbeat("t", 0, 0, "n1", 5, now=0.0)
    d.worker_heartbeat("t", 0, 1, "n1", 5, now=0.0)
    for now in (1.0, 2.0, 3.0, 4.0):
        d.node_heartbeat("n1", now=now)
        d.worker_heartbeat("t", 0, 0, "n1", 5 + int(now), now=now)
    events = d.step(4.0)
    assert [(e.kind, e.rank) for e in events] == [(EventKind.WORKER, 1)]
    assert d.health_of("n1") is Health.HEALTHY


def test_recovered_node_and_retired_tasks() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True)), now=0.0)
    d.worker_heartbeat("t", 0, 0, "n1", 1, now=0.0)
    d.step(5.0)
    assert d.health_of("n1") is Health.FAILED
    d.node_heartbeat("n1", now=5.5)
    d.step(5.6)
    assert d.health_of("n1") is Health.HEALTHY
    d.retire_task("t")
    assert d.task_nodes("t") == {}


def test_new_node_gets_grace_until_first_heartbeat() -> None:
    """A node's agent may take seconds to start: until its first heartbeat the node is judged
    by Ray's node table, for up to first_heartbeat_grace_s; then by heartbeats as usual."""
    t = HealthThresholds(heartbeat_interval_s=1.0, node_failure_timeout_s=3.5,
                         warning_missed=2, critical_missed=3, first_heartbeat_grace_s=20.0)
    d = FaultDetector(t)
    d.observe_nodes(table(("slow", True), ("silent", True)), now=10.0)
    assert d.step(25.0) == []
    assert d.health_of("slow") is Health.HEALTHY and d.health_of("silent") is Health.HEALTHY
    d.node_heartbeat("slow", now=28.5)
    events = d.step(30.5)
    assert [e.node_id for e in events] == ["silent"]
    assert "no heartbeat in 20.5 s since it joined > first_heartbeat_grace_s=20" in events[0].cause
    assert d.health_of("slow") is Health.HEALTHY
    d.step(31.0)
    assert d.health_of("slow") is Health.WARNING  # heard from: judged by its heartbeats now
    assert [e.node_id for e in d.step(32.1)] == ["slow"]
    d.observe_nodes(table(("late", False)), now=32.5)  # the table still decides at once
    assert [e.node_id for e in d.step(32.5)] == ["late"]


def test_state_survives_restart_without_false_failures() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True), ("n2", True)), now=0.0)
    d.worker_heartbeat("t", 0, 0, "n1", 7, now=0.0)
    d.step(31.0)  # both FAILED (no heartbeats; n2 none since it joined, past the grace)
    assert d.health_of("n2") is Health.FAILED
    d.node_heartbeat("n1", now=31.5)
    d.step(31.6)
    state = d.state_dict()
    restored = FaultDetector(T)
    restored.load_state_dict(state, now=100.0)  # long outage of the detector itself
    restored.step(100.5)
    assert restored.health_of("n1") is Health.HEALTHY  # silence while away is no evidence
    assert restored.health_of("n2") is Health.FAILED  # already failed stays failed
    assert restored.task_step("t") == 7
    assert [e.node_id for e in restored.events] == [e.node_id for e in d.events]


def test_a_pause_of_the_detector_itself_fails_no_node(caplog: pytest.LogCaptureFixture) -> None:
    """Steps 0.25 s apart, then the detector stalls 3 s (longer than the failure timeout)
    while heartbeats queue up: no node is FAILED, and a node that stays silent after the
    pause still fails one timeout later."""
    d = FaultDetector(T, max_pause_s=1.0)
    d.observe_nodes(table(("n1", True), ("n2", True)), now=0.0)
    for now in (0.0, 0.25, 0.5):
        d.node_heartbeat("n1", now=now)
        d.node_heartbeat("n2", now=now)
        assert d.step(now) == []
    with caplog.at_level(logging.WARNING):
        assert d.step(4.5) == []  # 4 s after the last step and the last heartbeats
    assert "fault detector paused for 4.0 s" in caplog.text
    assert d.health_of("n1") is Health.HEALTHY and d.snapshot(4.5)["detector_pauses"] == 1
    now = 4.5
    while now < 9.0:  # n2 answers again, n1 stays silent
        now += 0.25
        d.node_heartbeat("n2", now=now)
        events = d.step(now)
        if events:
            break
    assert [e.node_id for e in events] == ["n1"] and 3.5 < now - 4.5 <= 3.75
    assert d.health_of("n2") is Health.HEALTHY


def test_without_max_pause_a_long_gap_between_steps_counts() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True)), now=0.0)
    d.node_heartbeat("n1", now=0.0)
    d.step(0.0)
    assert [e.node_id for e in d.step(4.0)] == ["n1"]


def test_views_carry_health_and_newest_heartbeat() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True), ("n2", False)), now=0.0)
    d.node_heartbeat("n1", now=3.0)
    d.step(4.0)
    assert d.views(["n1", "unknown"]) == [NodeView("n1", Health.HEALTHY, last_heartbeat=3.0)]
    assert {v.node_id: v.health for v in d.views()} == {"n1": Health.HEALTHY,
                                                        "n2": Health.FAILED}
    d.worker_heartbeat("t", 0, 1, "n2", step=12, now=4.5)
    progress = d.task_progress("t")
    assert (progress.nodes, progress.step) == ({1: "n2"}, 12)


def test_events_persist_as_the_same_strings() -> None:
    d = FaultDetector(T)
    d.observe_nodes(table(("n1", True)), now=0.0)
    d.worker_heartbeat("t", 0, 0, "n1", 1, now=0.0)
    d.step(5.0)
    state = json.loads(json.dumps(d.state_dict()))
    assert [e["kind"] for e in state["events"]] == ["node"]
    old_event = {"kind": "worker", "node_id": "n9", "time": 1.0, "cause": "silent",
                 "task_ids": ["t"], "rank": 2}
    restored = FaultDetector(T)
    restored.load_state_dict({**state, "events": [*state["events"], old_event]}, now=10.0)
    assert [e.kind for e in restored.events] == [EventKind.NODE, EventKind.WORKER]
    assert restored.events[1] == FailureEvent(EventKind.WORKER, "n9", 1.0, "silent", ("t",), 2)
    assert restored.snapshot(10.0)["events"][1] == old_event
