"""The restart and placement policy, driven by a hand-moved clock (no Ray, no sleeps)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import (
    Action,
    Decision,
    Health,
    Limit,
    NodeView,
    Phase,
    Placement,
    RestartLimits,
    Supervisor,
)

ROOT = Path(__file__).resolve().parents[2]
MIGRATOR = RestartLimits(3, "fault_tolerance.max_retry_attempts", backoff_s=1.0, relocate=True)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _until_decided(sup: Supervisor, clock: Clock) -> Decision:
    """Steps, letting each WAIT pass on the clock; returns the first other decision."""
    for _ in range(10_000):
        d = sup.step()
        if d.action is not Action.WAIT:
            return d
        assert d.wait_s > 0
        clock.advance(d.wait_s)
    raise AssertionError("the supervisor never decided")


def test_retries_in_place_up_to_the_limit_then_fails_with_reason_and_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sup = Supervisor(RestartLimits(2, "failure.max_failures"), name="ps", clock=clock)
    for attempt in (0, 1):
        assert sup.attempt == attempt
        sup.attempt_failed(f"boom {attempt}")
        d = sup.step()  # no backoff: at once
        assert (d.action, d.attempt, d.node_ids) == (Action.RETRY, attempt + 1, ())
        assert sup.phase is Phase.RUNNING
    with caplog.at_level(logging.WARNING, logger="cluster.supervision"):
        sup.attempt_failed("boom 2")
    d = sup.step()
    assert d == Decision(Action.FAIL, "boom 2", Limit.RETRIES, "failure.max_failures (now 2)",
                         attempt=2)
    assert sup.phase is Phase.FAILED and sup.step() == d  # terminal
    assert ("task ps: FAIL: attempt 2 failed (boom 2); 2 retries used, limit "
            "failure.max_failures (now 2)") in caplog.text


def test_minus_one_retries_forever() -> None:
    clock = Clock()
    sup = Supervisor(RestartLimits(-1, "failure.max_failures"), clock=clock)
    for attempt in range(200):
        sup.attempt_failed("again")
        d = sup.step()
        assert d.action is Action.RETRY and d.attempt == attempt + 1


def test_zero_retries_fails_at_once_naming_the_setting_users_raise() -> None:
    """Without auto-recovery Ray Train restarted the group before the failure reached the
    driver: the driver retries no more, and the message names Ray Train's limit."""
    sup = Supervisor(RestartLimits(0, "failure.max_failures", setting_value=3), clock=Clock())
    sup.attempt_failed("RuntimeError: worker died")
    d = sup.step()
    assert (d.action, d.limit, d.threshold, d.reason) == (
        Action.FAIL, Limit.RETRIES, "failure.max_failures (now 3)", "RuntimeError: worker died")


def test_relocated_retries_back_off_exponentially_and_run_where_placed() -> None:
    clock = Clock()
    sup = Supervisor(MIGRATOR, name="t", clock=clock)
    for attempt, backoff in ((0, 1.0), (1, 2.0), (2, 4.0)):
        sup.attempt_failed("node lost")
        d = sup.step()
        assert (d.action, d.attempt) == (Action.RETRY_ELSEWHERE, attempt + 1)
        assert sup.step().action is Action.RETRY_ELSEWHERE  # until a placement comes
        sup.placed(Placement((f"n{attempt}a", f"n{attempt}b"), "load_balanced"))
        d = sup.step()
        assert (d.action, d.wait_s) == (Action.WAIT, backoff)
        assert d.threshold == "retry_backoff_s=1 doubled per retry"
        clock.advance(backoff / 4)
        assert sup.step().wait_s == pytest.approx(backoff * 3 / 4)
        clock.advance(backoff * 3 / 4)
        d = sup.step()
        assert (d.action, d.attempt, d.node_ids) == (
            Action.RETRY, attempt + 1, (f"n{attempt}a", f"n{attempt}b"))
    sup.attempt_failed("node lost")  # the fourth failure: three retries were allowed
    assert sup.step().limit is Limit.RETRIES


def test_cannot_place_fails_at_once_with_the_placement_reason() -> None:
    sup = Supervisor(MIGRATOR, clock=Clock())
    sup.attempt_failed("node lost")
    assert sup.step().action is Action.RETRY_ELSEWHERE
    sup.no_capacity("no healthy capacity for task 't': it needs 2 workers x 1 CPU",
                    could_fit_once_settled=False)
    d = sup.step()
    assert (d.action, d.limit) == (Action.FAIL, Limit.CAPACITY)
    assert d.reason == "no healthy capacity for task 't': it needs 2 workers x 1 CPU"


def test_could_fit_once_settled_waits_until_the_settle_deadline() -> None:
    clock = Clock()
    limits = RestartLimits(settle_wait_s=20.0, settle_poll_s=0.25)
    sup = Supervisor(limits, clock=clock)
    sup.await_placement()
    tries = 0
    while True:
        d = sup.step()
        if d.action is Action.WAIT:
            assert (d.wait_s, d.limit) == (0.25, Limit.SETTLE_TIMEOUT)
            clock.advance(d.wait_s)
            continue
        if d.action is Action.FAIL:
            break
        assert d.action is Action.RETRY_ELSEWHERE
        tries += 1
        clock.advance(0.01)  # the try itself
        sup.no_capacity("no room yet", could_fit_once_settled=True)
    assert (d.limit, d.threshold, d.reason) == (Limit.SETTLE_TIMEOUT, "settle_wait_s=20",
                                                "no room yet")
    assert 70 <= tries <= 80  # one try per 0.26 s for 20 s
    assert clock.now - 1000.0 >= 20.0


def test_capacity_that_settles_in_time_is_placed() -> None:
    clock = Clock()
    sup = Supervisor(RestartLimits(settle_wait_s=20.0), clock=clock)
    sup.await_placement()
    assert sup.step().action is Action.RETRY_ELSEWHERE
    sup.no_capacity("reservations not freed yet", could_fit_once_settled=True)
    assert sup.step().action is Action.WAIT
    clock.advance(3.0)
    assert sup.step().action is Action.RETRY_ELSEWHERE
    sup.placed(Placement(("a", "b"), "load_balanced over 2 healthy nodes"))
    d = sup.step()  # no backoff configured: at once
    assert (d.action, d.node_ids) == (Action.RETRY, ("a", "b"))


def test_verdict_a_heartbeat_after_the_failure_proves_a_node_alive() -> None:
    clock = Clock(100.0)
    sup = Supervisor(clock=clock)
    sup.await_verdict(["a", "b"], since=99.0, timeout_s=7.0)
    sup.observe([NodeView("a", Health.WARNING, last_heartbeat=98.5),
                 NodeView("b", Health.HEALTHY, last_heartbeat=99.5)])
    d = sup.step()
    assert (d.action, d.wait_s, d.limit) == (Action.WAIT, 0.05, Limit.VERDICT_TIMEOUT)
    assert "'a'" in d.reason and "'b'" not in d.reason
    clock.advance(0.8)
    sup.observe([NodeView("a", Health.HEALTHY, last_heartbeat=100.7)])
    d = sup.step()
    assert (d.action, d.limit) == (Action.RETRY_ELSEWHERE, None)
    assert sup.phase is Phase.PLACING


def test_verdict_a_failed_node_needs_no_heartbeat_and_unknown_nodes_do_not_hold_it() -> None:
    clock = Clock(100.0)
    sup = Supervisor(clock=clock)
    sup.await_verdict(["a", "b", "never-seen"], since=99.0, timeout_s=7.0)
    sup.observe([NodeView("a", Health.FAILED, last_heartbeat=90.0),
                 NodeView("b", Health.HEALTHY, last_heartbeat=99.9)])
    d = sup.step()
    assert d.action is Action.RETRY_ELSEWHERE and "FAILED ['a']" in d.reason


def test_verdict_timeout_plans_on_what_is_known(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(100.0)
    sup = Supervisor(clock=clock)
    sup.await_verdict(["a"], since=99.0, timeout_s=7.0)
    sup.observe([NodeView("a", Health.CRITICAL, last_heartbeat=96.0)])
    with caplog.at_level(logging.WARNING, logger="cluster.supervision"):
        d = _until_decided(sup, clock)
    assert (d.action, d.limit, d.threshold) == (Action.RETRY_ELSEWHERE, Limit.VERDICT_TIMEOUT,
                                                "verdict timeout 7 s")
    assert clock.now == pytest.approx(107.0)
    assert "no verdict on ['a'] within 7 s" in caplog.text


def test_state_roundtrips_through_json() -> None:
    clock = Clock()
    sup = Supervisor(MIGRATOR, name="t", clock=clock)
    sup.attempt_failed("node lost")
    sup.step()
    sup.placed(Placement(("b",), "x"))
    again = Supervisor(MIGRATOR, name="t", clock=clock)
    again.load_state_dict(json.loads(json.dumps(sup.state_dict())))
    assert again.state_dict() == sup.state_dict() and again.phase is Phase.BACKING_OFF
    clock.advance(1.0)
    assert again.step() == sup.step() == Decision(Action.RETRY, "start attempt 1 on ['b']",
                                                   attempt=1, node_ids=("b",))
    failed = Supervisor(RestartLimits(0), clock=clock)
    failed.attempt_failed("x")
    restored = Supervisor(clock=clock)
    restored.load_state_dict(json.loads(json.dumps(failed.state_dict())))
    assert restored.step() == failed.step() and restored.phase is Phase.FAILED


def test_the_policy_loads_without_ray() -> None:
    code = "import sys, cluster.supervision; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout.strip()
    assert out == "False"
