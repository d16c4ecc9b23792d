"""Supervision: what happens after a training attempt fails, one decision at a time.

:class:`Supervisor` is the restart and placement policy of the platform, plain logic with an
injected clock. Its caller reports what happened (``attempt_failed``, ``observe``,
``no_capacity``, ``placed``) and calls :meth:`Supervisor.step`, which returns a
:class:`Decision`: RETRY (start the next attempt now, on ``node_ids`` when it was placed),
RETRY_ELSEWHERE (the next attempt needs new nodes: ask for a placement, then step again), WAIT
(nothing to do yet: step again after ``wait_s``) or FAIL (give up; ``limit`` and ``threshold``
say which limit was hit, ``reason`` why). The loops around it only sleep and do what it says:

- the DDP driver (``trainer.api``): with auto-recovery every retry is placed by the task
  migrator (``relocate``), up to ``fault_tolerance.max_retry_attempts`` retries, each after
  ``retry_backoff_s * 2**n`` (n: the failed attempt's number); without it Ray Train restarts
  the worker group itself and a failure that reaches the driver is final;
- the parameter-server driver (``trainer.parameter_server``): up to ``failure.max_failures``
  retries in place (-1: forever);
- the fault detector actor's verdict wait (``await_verdict``): after a failure, each suspect
  node either proves it is alive with a heartbeat newer than the failure, or is FAILED, or the
  verdict timeout passes; the plan is then made on what is known;
- the task migrator actor's placement (``await_placement``): when no healthy nodes can hold the
  task, it waits for Ray to release the failed attempt's reservations and for loaded nodes to
  answer again, as long as the live nodes could hold the task once settled and the settle
  deadline has not passed; otherwise it fails at once.

Lifecycle (:class:`Phase`)::

    RUNNING --attempt_failed--> FAILED                     (retries used up)
                           \\--> PLACING --placed--> BACKING_OFF --step--> RUNNING (RETRY)
                            \\---------------------> BACKING_OFF          (no relocation)
    AWAITING_VERDICT --step--> PLACING                      (verdict in, or its timeout)
    PLACING --no_capacity--> PLACING (WAIT, could fit once settled) | FAILED

Each process uses the part it owns: a driver keeps one supervisor for its run, the actors make
one per wait (starting at ``await_verdict`` or ``await_placement``).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cluster.detector import Health, NodeView
from cluster.migrator import Placement

__all__ = ["Action", "Decision", "Limit", "Phase", "RestartLimits", "Supervisor"]

logger = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    RUNNING = "RUNNING"  # an attempt runs (or is about to start)
    AWAITING_VERDICT = "AWAITING_VERDICT"  # are the failed attempt's nodes alive or FAILED?
    PLACING = "PLACING"  # the next attempt needs healthy nodes with room for it
    BACKING_OFF = "BACKING_OFF"  # a retry is decided; it starts when the backoff has passed
    FAILED = "FAILED"  # no more retries (terminal)


class Action(enum.StrEnum):
    RETRY = "RETRY"  # start the next attempt now (on Decision.node_ids when it was placed)
    RETRY_ELSEWHERE = "RETRY_ELSEWHERE"  # the next attempt needs new nodes: place it first
    WAIT = "WAIT"  # nothing to do yet: step again after Decision.wait_s
    FAIL = "FAIL"  # give up: Decision.limit and Decision.threshold say which limit was hit


class Limit(enum.StrEnum):
    RETRIES = "retries"  # the task's retry limit is used up
    CAPACITY = "capacity"  # the live nodes cannot hold the task, even once settled
    SETTLE_TIMEOUT = "settle_timeout"  # they could, but did not within settle_wait_s
    VERDICT_TIMEOUT = "verdict_timeout"  # not a failure: no verdict in time, plan on what is known


@dataclass(frozen=True)
class Decision:
    """What the supervisor's caller does next (see module docstring)."""

    action: Action
    reason: str
    limit: Limit | None = None
    threshold: str = ""  # the limit in words, e.g. "fault_tolerance.max_retry_attempts (now 3)"
    wait_s: float = 0.0  # WAIT: step again after this long
    attempt: int = 0  # RETRY / RETRY_ELSEWHERE: the attempt to start; otherwise the current one
    node_ids: tuple[str, ...] = ()  # RETRY after a placement: the node of each rank

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "action": self.action.value,
                "limit": None if self.limit is None else self.limit.value,
                "node_ids": list(self.node_ids)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(**{**d, "action": Action(d["action"]),
                      "limit": None if d.get("limit") is None else Limit(d["limit"]),
                      "node_ids": tuple(d.get("node_ids", ()))})


@dataclass(frozen=True)
class RestartLimits:
    """How many retries, how far apart, and how long to wait for verdicts and capacity."""

    max_retries: int = 0  # retries after failed attempts; -1: forever
    setting: str = "failure.max_failures"  # the task field users raise to allow more retries
    # the field's value when it is not max_retries: without auto-recovery Ray Train made its
    # restarts before the failure reached the driver, which then retries no more
    setting_value: int | None = None
    backoff_s: float = 0.0  # before the retry of attempt n: backoff_s * 2**n
    relocate: bool = False  # each retry is placed on healthy nodes first (RETRY_ELSEWHERE)
    # for reservations to be freed and loaded nodes to answer: a placement that could fit
    # once the live nodes settle is tried again every settle_poll_s until this deadline
    settle_wait_s: float = 20.0
    settle_poll_s: float = 0.25
    verdict_poll_s: float = 0.05

    @property
    def threshold(self) -> str:
        value = self.max_retries if self.setting_value is None else self.setting_value
        return f"{self.setting} (now {value})"

    def backoff(self, attempt: int) -> float:
        """The delay before the retry of (failed) attempt ``attempt``."""
        return self.backoff_s * (2 ** attempt)


class Supervisor:
    """The restart and placement policy of one run, or of one wait (see module docstring).

    ``clock`` returns seconds (wall-clock time by default: verdict waits compare it with
    heartbeat times); every deadline is measured on it, and tests drive it by hand.
    """

    def __init__(self, limits: RestartLimits | None = None, *, name: str = "",
                 attempt: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits or RestartLimits()
        self.name = name
        self.clock = clock
        self.phase = Phase.RUNNING
        self.attempt = attempt  # the running attempt, or the one that failed last
        self.cause = ""  # why the last attempt failed
        self.deadline: float | None = None  # of the verdict wait or of the settle wait
        self.resume_at: float | None = None  # the end of a WAIT (backoff, next placement try)
        self.node_ids: tuple[str, ...] = ()  # the next attempt's placement
        self.suspects: tuple[str, ...] = ()
        self.since = 0.0  # the failure: heartbeats after it prove a suspect alive
        self.verdict_timeout_s = 0.0
        self.views: dict[str, NodeView] = {}
        self.waiting_for = ""  # why the current WAIT (no capacity yet)
        self.failure: Decision | None = None

    # -- inputs ----------------------------------------------------------------------------------

    def attempt_failed(self, cause: str) -> None:
        """The running attempt failed: retry (placed anew, after the backoff) or give up."""
        now = self.clock()
        self.cause, self.node_ids = cause, ()
        lim = self.limits
        if lim.max_retries != -1 and self.attempt >= lim.max_retries:
            self._fail(cause, Limit.RETRIES, lim.threshold,
                       f"attempt {self.attempt} failed ({cause}); {self.attempt} retries used, "
                       f"limit {lim.threshold}")
        elif lim.relocate:
            logger.info("%s: attempt %d failed (%s); retry %d of %s on new nodes", self._who,
                        self.attempt, cause, self.attempt + 1, lim.threshold)
            self._enter_placing(now)
        else:
            logger.info("%s: attempt %d failed (%s); retry %d of %s", self._who, self.attempt,
                        cause, self.attempt + 1, lim.threshold)
            self._enter_backoff(now)

    def await_verdict(self, node_ids: Iterable[str], since: float, timeout_s: float) -> None:
        """Wait for a verdict on each of ``node_ids``: FAILED, or a heartbeat after ``since``
        (the failure), at most ``timeout_s``. Feed node views with :meth:`observe`."""
        self.phase = Phase.AWAITING_VERDICT
        self.suspects = tuple(node_ids)
        self.since, self.verdict_timeout_s = since, timeout_s
        self.deadline, self.resume_at = self.clock() + timeout_s, None
        self.views = {}

    def observe(self, views: Iterable[NodeView]) -> None:
        """The detector's current view of nodes (health and newest heartbeat)."""
        for view in views:
            self.views[view.node_id] = view

    def await_placement(self) -> None:
        """The next attempt needs nodes: place it (RETRY_ELSEWHERE) until placed or failed."""
        self._enter_placing(self.clock())

    def no_capacity(self, reason: str, could_fit_once_settled: bool) -> None:
        """A placement found no healthy nodes to hold the task (``reason``).

        ``could_fit_once_settled``: the nodes Ray still counts alive could hold it once they
        are healthy and their reservations are free; then it is worth trying again.
        """
        now = self.clock()
        lim = self.limits
        if not could_fit_once_settled:
            self._fail(reason, Limit.CAPACITY, "the live nodes' total resources",
                       f"{reason}; no retry: the nodes cannot hold the task")
        elif self.deadline is not None and now >= self.deadline:
            self._fail(reason, Limit.SETTLE_TIMEOUT, f"settle_wait_s={lim.settle_wait_s:g}",
                       f"{reason}; still so {lim.settle_wait_s:g} s later > "
                       f"settle_wait_s={lim.settle_wait_s:g}")
        else:
            if not self.waiting_for:
                logger.info("%s: %s; the live nodes could hold it once settled: trying again "
                            "every %g s for up to settle_wait_s=%g", self._who, reason,
                            lim.settle_poll_s, lim.settle_wait_s)
            self.waiting_for = reason
            self.resume_at = now + lim.settle_poll_s

    def placed(self, placement: Placement) -> None:
        """The next attempt has nodes; it starts once the backoff has passed."""
        self.node_ids = tuple(placement.node_ids)
        self._enter_backoff(self.clock())

    # -- the control step -------------------------------------------------------------------------

    def step(self) -> Decision:
        """What to do now."""
        now = self.clock()
        if self.phase is Phase.FAILED:
            assert self.failure is not None
            return self.failure
        if self.phase is Phase.RUNNING:
            return Decision(Action.WAIT, f"attempt {self.attempt} is running",
                            attempt=self.attempt)
        if self.phase is Phase.AWAITING_VERDICT:
            return self._verdict_step(now)
        if self.phase is Phase.PLACING:
            if self.resume_at is not None and now < self.resume_at:
                return Decision(Action.WAIT, self.waiting_for, Limit.SETTLE_TIMEOUT,
                                f"settle_wait_s={self.limits.settle_wait_s:g}",
                                wait_s=self.resume_at - now, attempt=self.attempt)
            self.resume_at = None
            return Decision(Action.RETRY_ELSEWHERE, f"place attempt {self.attempt + 1} on "
                            f"healthy nodes (attempt {self.attempt} failed: {self.cause})",
                            attempt=self.attempt + 1)
        # BACKING_OFF
        assert self.resume_at is not None
        if now < self.resume_at:
            return Decision(Action.WAIT, f"backoff before attempt {self.attempt + 1}",
                            threshold=f"retry_backoff_s={self.limits.backoff_s:g} doubled per "
                            "retry", wait_s=self.resume_at - now, attempt=self.attempt)
        self.phase, self.resume_at = Phase.RUNNING, None
        self.attempt += 1
        where = f" on {[n[:12] for n in self.node_ids]}" if self.node_ids else ""
        return Decision(Action.RETRY, f"start attempt {self.attempt}{where}",
                        attempt=self.attempt, node_ids=self.node_ids)

    def _verdict_step(self, now: float) -> Decision:
        pending = [n for n in self.suspects
                   if (v := self.views.get(n)) is not None and v.health is not Health.FAILED
                   and (v.last_heartbeat or 0.0) <= self.since]
        if pending and (self.deadline is None or now < self.deadline):
            poll = self.limits.verdict_poll_s
            return Decision(Action.WAIT, f"no verdict yet on {[n[:12] for n in pending]}",
                            Limit.VERDICT_TIMEOUT, f"verdict timeout {self.verdict_timeout_s:g} s",
                            wait_s=poll if self.deadline is None
                            else min(poll, self.deadline - now),
                            attempt=self.attempt)
        failed = [n[:12] for n in self.suspects
                  if (v := self.views.get(n)) is not None and v.health is Health.FAILED]
        self._enter_placing(now)
        if pending:
            reason = (f"no verdict on {[n[:12] for n in pending]} within "
                      f"{self.verdict_timeout_s:g} s: placing on what is known")
            logger.warning("%s: %s", self._who, reason)
            return Decision(Action.RETRY_ELSEWHERE, reason, Limit.VERDICT_TIMEOUT,
                            f"verdict timeout {self.verdict_timeout_s:g} s",
                            attempt=self.attempt + 1)
        reason = (f"verdict: FAILED {failed}, the other suspects sent heartbeats after the "
                  "failure" if failed else "verdict: every suspect sent a heartbeat after the "
                  "failure")
        logger.info("%s: %s", self._who, reason)
        return Decision(Action.RETRY_ELSEWHERE, reason, attempt=self.attempt + 1)

    # -- transitions ------------------------------------------------------------------------------

    @property
    def _who(self) -> str:
        return f"task {self.name}" if self.name else "supervisor"

    def _enter_placing(self, now: float) -> None:
        self.phase = Phase.PLACING
        self.deadline, self.resume_at, self.waiting_for = (now + self.limits.settle_wait_s,
                                                           None, "")

    def _enter_backoff(self, now: float) -> None:
        self.phase = Phase.BACKING_OFF
        self.resume_at = now + self.limits.backoff(self.attempt)

    def _fail(self, reason: str, limit: Limit, threshold: str, log: str) -> None:
        self.phase = Phase.FAILED
        self.failure = Decision(Action.FAIL, reason, limit, threshold, attempt=self.attempt)
        logger.warning("%s: FAIL: %s", self._who, log)

    # -- persistence ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "phase": self.phase.value,
            "attempt": self.attempt,
            "cause": self.cause,
            "deadline": self.deadline,
            "resume_at": self.resume_at,
            "node_ids": list(self.node_ids),
            "suspects": list(self.suspects),
            "since": self.since,
            "verdict_timeout_s": self.verdict_timeout_s,
            "waiting_for": self.waiting_for,
            "failure": None if self.failure is None else self.failure.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a supervisor's phase and deadlines (measured on the same clock); node views
        are not kept: observe them again."""
        self.phase = Phase(state["phase"])
        self.attempt = int(state["attempt"])
        self.cause = str(state.get("cause", ""))
        self.deadline = state.get("deadline")
        self.resume_at = state.get("resume_at")
        self.node_ids = tuple(state.get("node_ids", ()))
        self.suspects = tuple(state.get("suspects", ()))
        self.since = float(state.get("since", 0.0))
        self.verdict_timeout_s = float(state.get("verdict_timeout_s", 0.0))
        self.waiting_for = str(state.get("waiting_for", ""))
        failure = state.get("failure")
        self.failure = None if failure is None else Decision.from_dict(failure)
        self.views = {}
